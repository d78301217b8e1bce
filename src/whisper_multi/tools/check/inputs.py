"""What every framework is fed (``Inputs``), and those inputs made from a speech clip."""

from __future__ import annotations

import os
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import InputError
from whisper_multi.tools.check.adapters import ADAPTERS, Adapter
from whisper_multi.tools.check.frameworks import FRAMEWORKS, to_numpy
from whisper_multi.tools.check.subject import Subject

GENERATION_NEW_TOKENS = 24  # new tokens per generation, also for the token ids the decoder stages are fed
SAMPLE_RATE = 16000
DEFAULT_AUDIO = Path(__file__).resolve().parents[2] / "assets" / "speech_en_short.wav"


@dataclass
class Inputs:
    """What every framework is fed: the same arrays."""

    features: np.ndarray  # (batch, num_mel_bins, frames) float32
    decoder_input_ids: np.ndarray  # (batch, length) int64, starting with the decoder start token
    labels: np.ndarray  # (batch, length) int64, -100 where ignored
    audio: np.ndarray | None = None  # 16 kHz float32 waveform, for the mel stage
    classification_labels: np.ndarray | None = None
    generation_features: np.ndarray | None = None  # defaults to ``features``
    generation_new_tokens: int = GENERATION_NEW_TOKENS


def read_wav(path: str | os.PathLike[str]) -> np.ndarray:
    """A 16 kHz mono 16-bit PCM wav file as float32 in [-1, 1), with the standard library only."""
    with wave.open(str(path), "rb") as file:
        layout = (file.getframerate(), file.getnchannels(), file.getsampwidth())
        if layout != (SAMPLE_RATE, 1, 2):
            raise InputError(
                f"{path}: (rate, channels, bytes per sample) is {layout}; expected ({SAMPLE_RATE}, 1, 2), or install "
                "the audio extra to read any file"
            )
        pcm = np.frombuffer(file.readframes(file.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def read_audio(path: str | os.PathLike[str]) -> np.ndarray:
    """Any audio file the audio extra reads, resampled to 16 kHz mono; a 16 kHz 16-bit wav without it."""
    try:
        from whisper_multi.audio import load_audio
    except ImportError:
        return read_wav(path)
    try:
        return np.asarray(load_audio(path), dtype=np.float32)
    except ImportError:  # soundfile / av not installed
        return read_wav(path)


def greedy_ids(adapter: Adapter, model: Any, states: np.ndarray, config: WhisperConfig, count: int) -> np.ndarray:
    """Greedy token ids from the decoder start token, with the dynamic cache (at most ``count`` new ids)."""
    tokens = [int(config.decoder_start_token_id)]
    cache = None
    step = np.array([tokens], dtype=np.int64)
    limit = min(count, config.max_target_positions - 1)
    for _ in range(limit):
        out = adapter.run(model, encoder_states=states, decoder_input_ids=step, past_key_values=cache, use_cache=True)
        tokens.append(int(to_numpy(out.logits)[0, -1].argmax()))
        cache = out.past_key_values
        step = np.array([[tokens[-1]]], dtype=np.int64)
        if tokens[-1] == config.eos_token_id:
            break
    return np.array([tokens], dtype=np.int64)


def audio_inputs(
    audio: np.ndarray, config: WhisperConfig, subject: Subject, count: int = GENERATION_NEW_TOKENS
) -> Inputs:
    """The clip's mel features, and token ids the reference framework decodes greedily from them (teacher-forced in
    every framework afterwards: the same ids for all)."""
    from whisper_multi.features import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    features = extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features.astype(np.float32)
    reference = next((name for name in FRAMEWORKS if name in subject.models), None)
    if reference is None:
        ids = np.array([[config.decoder_start_token_id, config.eos_token_id]], dtype=np.int64)
    else:
        adapter, model = ADAPTERS[reference], subject.models[reference]
        states = to_numpy(adapter.run(model.get_encoder(), input_features=features).last_hidden_state)
        ids = greedy_ids(adapter, model, states, config, count)
    if ids.shape[1] < 3:  # at least two positions to decode, so the cached stage steps once
        ids = np.concatenate([ids, np.full((1, 3 - ids.shape[1]), config.eos_token_id)], axis=1)
    return Inputs(features, ids[:, :-1], ids[:, 1:], audio=audio, classification_labels=np.array([1]))
