"""Shared test helpers: the fixture directories and a loader for the speech clips in tests/fixtures/audio."""

from __future__ import annotations

import warnings
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from whisper_multi.backends import Backend, backend

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
