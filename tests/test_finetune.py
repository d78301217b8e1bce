"""The fine-tuning run over every backend: the loop, its output, checkpoints, resume, and the command line.

A tiny random model with tiny.en's vocabulary and the real 30-second input shape trains on clips of
tests/fixtures/finetune (espeak-ng speech, scripts/make_finetune_fixtures.py), so a run takes seconds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import installed_backend
from whisper_multi.backends import BACKENDS
from whisper_multi.configuration import WhisperConfig
from whisper_multi.finetuning import checkpoints
from whisper_multi.finetuning.loop import finetune, training_items
from whisper_multi.training.options import TrainingOptions

FINETUNE_DATA = Path(__file__).parent / "fixtures" / "finetune"
TINY_SHAPE = {
    "d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
    "decoder_attention_heads": 2, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32,
}  # fmt: skip
pytestmark = pytest.mark.parametrize("key", list(BACKENDS))


def _embedded_processor():
    from whisper_multi import WhisperProcessor
    from whisper_multi.weights.packages import embedded_model_path

    try:
        return WhisperProcessor.from_pretrained(embedded_model_path()), embedded_model_path()
    except Exception as error:
        pytest.skip(f"tiny.en weights not installed (its tokenizer is the test's): {error}")


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny model with tiny.en's vocabulary and 30-second inputs, saved with tiny.en's processor."""
    processor, embedded = _embedded_processor()
    config = WhisperConfig.from_dict({**WhisperConfig.from_pretrained(embedded).to_dict(), **TINY_SHAPE})
    directory = tmp_path_factory.mktemp("tiny-random")
    for key in BACKENDS:
        if BACKENDS[key].available():
            BACKENDS[key].model_class()(config).save_pretrained(directory)
            break
    processor.save_pretrained(directory)
    return directory


def _items(count: int) -> list:
    return training_items(FINETUNE_DATA / "train")[:count]


def _options(**values: object) -> TrainingOptions:
    settings = {"steps": 4, "batch_size": 2, "learning_rate": 1e-3, "warmup_steps": 1, "seed": 3, **values}
    return TrainingOptions(**settings)  # type: ignore[arg-type]


def _run(key: str, directory: Path, out: Path, options: TrainingOptions, **kwargs: object):
    from whisper_multi import WhisperProcessor

    model = installed_backend(key).model_class().from_pretrained(directory)
    return finetune(model, WhisperProcessor.from_pretrained(directory), _items(6), out, options, **kwargs)


def test_the_output_is_a_model_every_backend_loads(key: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    result = _run(key, tiny_model_dir, tmp_path / "out", _options())
    assert len(result.losses) == 4 and all(np.isfinite(result.losses))
    assert result.learning_rates == pytest.approx([0.0, 1e-3, 2e-3 / 3, 1e-3 / 3])
    saved = json.loads((tmp_path / "out" / checkpoints.STATE_FILE).read_text())
    assert saved["losses"] == result.losses and saved["step"] == 4
    for other in BACKENDS.values():
        if other.available():
            assert other.model_class().from_pretrained(tmp_path / "out").config.d_model == 16, other.key
    before, after = _saved_weights(tiny_model_dir), _saved_weights(tmp_path / "out")
    assert sorted(before) == sorted(after)
    assert not np.array_equal(before["model.decoder.layers.0.fc1.bias"], after["model.decoder.layers.0.fc1.bias"])
    assert np.array_equal(before["model.encoder.embed_positions.weight"], after["model.encoder.embed_positions.weight"])
    assert (tmp_path / "out" / "preprocessor_config.json").is_file()


def _saved_weights(directory: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(directory / "model.safetensors")


def test_a_frozen_encoder_is_encoded_once_and_trains_as_without_the_cache(
    key: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from whisper_multi.finetuning import loop

    options = _options(freeze_encoder=True)
    cached = _run(key, tiny_model_dir, tmp_path / "cached", options)
    saved_limit = loop.ENCODER_CACHE_BYTES
    loop.ENCODER_CACHE_BYTES = 0
    try:
        uncached = _run(key, tiny_model_dir, tmp_path / "uncached", options)
    finally:
        loop.ENCODER_CACHE_BYTES = saved_limit
    assert cached.losses == pytest.approx(uncached.losses, rel=1e-5)


def test_the_command_killed_at_a_random_step_resumes_with_the_same_losses(
    key: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """SIGKILL (no clean-up runs) at a random step, maybe while a checkpoint is written; --resume then gives the
    loss sequence of the uninterrupted run."""
    installed_backend(key)
    data = tmp_path / "data"
    _small_audiofolder(data, 6)
    command = [
        sys.executable, "-m", "whisper_multi", "finetune", str(tiny_model_dir), str(data), "", "--backend", key,
        "--steps", "6", "--batch-size", "2", "--learning-rate", "1e-3", "--checkpoint-every", "1", "--seed", "5",
    ]  # fmt: skip
    kill_at = random.Random(f"kill-{key}").randint(2, 5)
    out = tmp_path / "killed"
    command[6] = str(out)
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=_quiet_env())
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith(f"step {kill_at}/"):
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=300)
    assert process.returncode == -signal.SIGKILL, f"the run ended before step {kill_at}"
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=_quiet_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    whole_out = tmp_path / "whole"
    command[6] = str(whole_out)
    whole = subprocess.run(command, capture_output=True, text=True, env=_quiet_env(), timeout=300)
    assert whole.returncode == 0, whole.stderr
    losses = json.loads((out / checkpoints.STATE_FILE).read_text())["losses"]
    assert len(losses) == 6 and losses == json.loads((whole_out / checkpoints.STATE_FILE).read_text())["losses"]


def _small_audiofolder(folder: Path, count: int) -> None:
    import shutil

    folder.mkdir()
    rows = (FINETUNE_DATA / "train" / "metadata.csv").read_text().splitlines()
    for row in rows[1 : count + 1]:
        shutil.copy(FINETUNE_DATA / "train" / row.split(",", 1)[0], folder)
    (folder / "metadata.csv").write_text("\n".join(rows[: count + 1]) + "\n")


def _quiet_env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
