"""Shared test helpers: the fixture directories and a loader for the speech clips in tests/fixtures/audio."""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

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


def float32_pair_bound(values: object, stage: str = "e2e_logits") -> float:
    """How far two float32 implementations of a real checkpoint may be apart on any CPU (the kernels of each
    instruction set round differently): each lies within ``check.REAL_TOLERANCES`` of the exact (float64) values,
    which the conformance suite's float64 stage measures, so two lie within twice that."""
    from whisper_multi.tools import check

    return 2 * max(check.REAL_TOLERANCES.for_states(f"float32_error_{stage}", [np.asarray(values)]))
