"""Fine-tuning learns, in every backend, and the three learn the same thing.

The data (tests/fixtures/finetune, scripts/make_finetune_fixtures.py): espeak-ng sentences with eight invented names
that tiny.en cannot spell; the test sentences differ from the training ones, the names are shared. tiny.en's test
WER before fine-tuning comes almost entirely from the names. The recipe: the encoder frozen, AdamW at 1e-4 with a
two-step warmup, batches of 8, four epochs (16 steps), the seed fixed; the same in every backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import installed_backend
from whisper_multi.backends import BACKENDS
from whisper_multi.training.options import TrainingOptions

DATA = Path(__file__).parent / "fixtures" / "finetune"
RECIPE = TrainingOptions(steps=16, batch_size=8, learning_rate=1e-4, warmup_steps=2, freeze_encoder=True, seed=0)
REQUIRED_CUT = 0.60  # the issue's bar: Transformers' PyTorch cuts the WER of such a set by about two thirds
BACKEND_AGREEMENT = 0.02  # WER points the three backends may end apart
_RUNS: dict[str, Any] = {}


def _tiny_en() -> Path:
    from whisper_multi.weights.packages import embedded_model_path

    try:
        return embedded_model_path()
    except Exception as error:
        pytest.skip(f"tiny.en weights not installed: {error}")


def _evaluate(model: Any, path: Path) -> Any:
    from whisper_multi import WhisperProcessor, evaluate

    return evaluate(model, WhisperProcessor.from_pretrained(path), DATA / "test")


@pytest.fixture(scope="module")
def baseline() -> Any:
    """tiny.en's test results before fine-tuning (any installed backend: they decode the same tokens)."""
    path = _tiny_en()
    key = next((key for key, spec in BACKENDS.items() if spec.available()), None)
    if key is None:
        pytest.skip("no backend installed")
    return _evaluate(BACKENDS[key].model_class().from_pretrained(path), path)


def finetuned(key: str, out: Path) -> Any:
    """The test results of tiny.en fine-tuned by backend ``key`` (made once per session)."""
    if key not in _RUNS:
        from whisper_multi import WhisperProcessor, finetune

        path, spec = _tiny_en(), installed_backend(key)
        model = spec.model_class().from_pretrained(path)
        finetune(model, WhisperProcessor.from_pretrained(path), DATA / "train", out / key, RECIPE)
        _RUNS[key] = (out / key, _evaluate(spec.model_class().from_pretrained(out / key), out / key))
    return _RUNS[key]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("finetuned")


def test_the_names_make_the_baseline_errors(baseline: Any) -> None:
    assert 0.15 <= baseline.wer <= 0.40
    wrong = [row for row in baseline.files if row.errors]
    assert len(wrong) >= 8  # each test sentence holds a name; tiny.en misspells them


@pytest.mark.parametrize("key", list(BACKENDS))
def test_finetuning_cuts_the_test_wer_by_at_least_sixty_percent(key: str, baseline: Any, runs_dir: Path) -> None:
    _, result = finetuned(key, runs_dir)
    cut = 1 - result.wer / baseline.wer
    assert cut >= REQUIRED_CUT, f"{key}: WER {baseline.wer:.4f} -> {result.wer:.4f} ({cut:.0%} cut)"


def test_the_three_backends_end_within_two_wer_points(baseline: Any, runs_dir: Path) -> None:
    wers = {key: finetuned(key, runs_dir)[1].wer for key in BACKENDS}
    assert max(wers.values()) - min(wers.values()) <= BACKEND_AGREEMENT, wers


def test_faster_whisper_transcribes_the_converted_checkpoint_as_our_pytorch_model(runs_dir: Path) -> None:
    """The PyTorch-trained checkpoint converted to CTranslate2: faster-whisper's greedy transcripts are ours."""
    faster_whisper = pytest.importorskip("faster_whisper")
    from whisper_multi.weights.convert import convert

    out, ours = finetuned("pt", runs_dir)
    converted = convert(out, runs_dir / "pt-ct2", "ct2", dtype="float32")
    model = faster_whisper.WhisperModel(str(converted), device="cpu", compute_type="float32")
    for row in ours.files:
        segments, _ = model.transcribe(str(DATA / "test" / row.file), beam_size=1, language="en")
        assert "".join(segment.text for segment in segments).strip() == row.hypothesis, row.file
