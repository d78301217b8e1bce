"""Log-mel feature extraction speed (case 1): whisper_multi's numpy extractor against openai-whisper's torch
``log_mel_spectrogram``, Transformers 4.57's ``WhisperFeatureExtractor`` and faster-whisper's ``FeatureExtractor``,
for 1 x 30 s and 16 x 30 s.

Transformers is timed twice: ``transformers-np`` is its numpy implementation, ``transformers-pt`` the torch.stft one
it switches to whenever torch is installed (its default in the peers' environment). faster-whisper (numpy too) takes
one waveform per call, so a batch is a loop over its clips.

Every extractor sees the same input: white noise from the same seed, already in memory (a torch tensor for
openai-whisper), made in the measured process. openai-whisper and Transformers run in the peers' environment
(``$PEERS_PYTHON``), faster-whisper in ours. Target (issue 11): at most 1.0 times openai-whisper's torch log-mel, in
numpy only.

    python -m benchmarks --only features           # as part of the suite (writes results.md)
    python benchmarks/bench_features.py [--smoke]  # this module alone, table only
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import Case, Peer, Run, Settings, Unavailable
from benchmarks.harness import main as harness_main

SEED = 0
SAMPLE_RATE = 16000
INPUTS = [(1, 30), (16, 30)]  # (batch, seconds)
SMOKE_INPUTS = {(1, 30): (1, 1), (16, 30): (2, 1)}


def make_audio(batch: int, seconds: int) -> np.ndarray:
    """(batch, samples) float32 white noise, the same for every extractor."""
    rng = np.random.default_rng(SEED)
    return (rng.standard_normal((batch, seconds * SAMPLE_RATE)) * 0.1).astype(np.float32)


def _audio(batch: int, seconds: int, settings: Settings) -> np.ndarray:
    return make_audio(*SMOKE_INPUTS[(batch, seconds)]) if settings.smoke else make_audio(batch, seconds)


def _ours(batch: int, seconds: int, settings: Settings) -> Callable[[], object]:
    from whisper_multi.features import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor()
    audio = _audio(batch, seconds, settings)
    prepared = list(audio) if len(audio) > 1 else audio[0]  # a ragged-capable list, as Transformers is called
    return lambda: extractor(prepared, sampling_rate=SAMPLE_RATE)


def _openai_whisper(batch: int, seconds: int, settings: Settings) -> Callable[[], object]:
    try:
        import torch
        from whisper.audio import log_mel_spectrogram
    except ImportError as error:
        raise Unavailable(f"openai-whisper is not installed: {error}") from error
    audio = _audio(batch, seconds, settings)
    prepared = torch.from_numpy(audio if len(audio) > 1 else audio[0])
    return lambda: log_mel_spectrogram(prepared)


def _transformers(backend: str, batch: int, seconds: int, settings: Settings) -> Callable[[], object]:
    try:
        from transformers import WhisperFeatureExtractor
        from transformers.models.whisper import feature_extraction_whisper
    except ImportError as error:
        raise Unavailable(f"Transformers is not installed: {error}") from error
    if backend == "np":  # Transformers uses torch.stft whenever torch is importable
        feature_extraction_whisper.is_torch_available = lambda: False
    extractor = WhisperFeatureExtractor()
    audio = _audio(batch, seconds, settings)
    prepared = list(audio) if len(audio) > 1 else audio[0]
    return lambda: extractor(prepared, sampling_rate=SAMPLE_RATE, return_tensors="np")


def _faster_whisper(batch: int, seconds: int, settings: Settings) -> Callable[[], object]:
    try:
        from faster_whisper.feature_extractor import FeatureExtractor
    except ImportError as error:
        raise Unavailable(f"faster-whisper is not installed: {error}") from error
    extractor = FeatureExtractor()
    audio = _audio(batch, seconds, settings)
    return lambda: [extractor(clip) for clip in audio]


def cases() -> list[Case]:
    result = []
    for batch, seconds in INPUTS:
        shape = (batch, seconds)
        peers = (
            Peer(Run("openai-whisper torch", partial(_openai_whisper, *shape), env="peers"), target=1.0),
            Peer(Run("transformers-np", partial(_transformers, "np", *shape), env="peers")),
            Peer(Run("transformers-pt", partial(_transformers, "pt", *shape), env="peers")),
            Peer(Run("faster-whisper", partial(_faster_whisper, *shape))),
        )
        ours = Run("whisper_multi numpy", partial(_ours, *shape))
        result.append(Case(f"features/{batch}x{seconds}s", "features", ours, peers))
    return result


if __name__ == "__main__":
    sys.exit(harness_main(["--only", "features", *sys.argv[1:]], write_files=False))
