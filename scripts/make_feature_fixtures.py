"""Regenerate tests/fixtures/features/reference_features.npz from openai-whisper and Transformers 4.57.

Run with the peers' environment (``nox -s fixtures -- scripts/make_feature_fixtures.py``, or
``.venv-peers/bin/python scripts/make_feature_fixtures.py``). It imports neither whisper_multi nor anything the
tests need: tests/test_features.py only reads the file written here.

Contents, all float32 unless noted (log-mels are cropped to a few frame ranges to keep the file small; the frame
indices kept are stored alongside):

- ``mel_filters_{80,128}``: openai-whisper's shipped filterbanks, (n_mels, 201).
- ``noise_int16``: the white-noise clip's samples (int16 PCM, scaled by 1/32768 before use).
- ``frames__{clip}`` (int32) and ``{peer}_{n_mels}__{clip}``: log-mels of each clip padded or truncated to 30 s,
  ``peer`` being ``openai`` (``log_mel_spectrogram(pad_or_trim(audio))``, torch) or ``hf`` (Transformers'
  ``WhisperFeatureExtractor`` on its numpy path: with torch installed it would otherwise use ``torch.stft``).
- ``hf_80_normalized__speech_en_short``: Transformers with ``do_normalize=True``.
- ``hf_80_longest__noise`` and ``hf_80_longest_attention_mask`` (int32): the batch [speech_en_short, noise] with
  ``padding="longest"`` and an attention mask; only the shorter, padded item's features are kept.
- ``versions``: a JSON string naming the libraries that produced the file.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import torch
import transformers
import whisper
import whisper.audio
from transformers.models.whisper import feature_extraction_whisper

ROOT = Path(__file__).resolve().parents[1]
AUDIO_DIR = ROOT / "tests" / "fixtures" / "audio"
OUTPUT = ROOT / "tests" / "fixtures" / "features" / "reference_features.npz"

SAMPLE_RATE = 16000
HOP_LENGTH = 160
N_FRAMES = 3000
NOISE_SECONDS = 4
NOISE_SEED = 20240


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as file:
        if (file.getframerate(), file.getnchannels(), file.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise SystemExit(f"{path} must be 16 kHz mono 16-bit PCM; run scripts/make_audio_fixtures.sh")
        pcm = np.frombuffer(file.readframes(file.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def make_noise() -> np.ndarray:
    rng = np.random.default_rng(NOISE_SEED)
    return rng.integers(-8000, 8000, size=NOISE_SECONDS * SAMPLE_RATE, dtype=np.int16)


def crop_frames(n_samples: int) -> np.ndarray:
    """Frame indices worth keeping: the start, and the speech/padding boundary or the 30 s cut."""
    valid = min(n_samples // HOP_LENGTH, N_FRAMES)
    if valid <= 600:
        return np.arange(min(valid + 10, N_FRAMES), dtype=np.int32)
    end = np.arange(max(valid - 100, 300), min(valid + 100, N_FRAMES), dtype=np.int32)
    return np.concatenate([np.arange(300, dtype=np.int32), end])


def openai_log_mel(audio: np.ndarray, n_mels: int) -> np.ndarray:
    padded = whisper.audio.pad_or_trim(torch.from_numpy(audio))
    return whisper.audio.log_mel_spectrogram(padded, n_mels=n_mels).numpy()


def use_transformers_numpy_path() -> None:
    # Transformers picks its torch implementation whenever torch is importable; the numpy one is the reference here.
    feature_extraction_whisper.is_torch_available = lambda: False


def main() -> None:
    use_transformers_numpy_path()
    short = read_wav(AUDIO_DIR / "speech_en_short.wav")
    medium = read_wav(AUDIO_DIR / "speech_en_25s.wav")
    noise_int16 = make_noise()
    clips = {
        "speech_en_short": short,
        "speech_en_25s": medium,
        # Longer than 30 s, so that truncation is exercised; the test builds the same concatenation.
        "speech_en_long": np.concatenate([medium, short, medium]),
        "noise": noise_int16.astype(np.float32) / 32768.0,
    }
    mels_per_clip = {"speech_en_short": (80, 128), "speech_en_25s": (80,), "speech_en_long": (80, 128), "noise": (80,)}
    extractors = {n: transformers.WhisperFeatureExtractor(feature_size=n) for n in (80, 128)}

    arrays: dict[str, np.ndarray] = {"noise_int16": noise_int16}
    for n_mels in (80, 128):
        arrays[f"mel_filters_{n_mels}"] = whisper.audio.mel_filters("cpu", n_mels).numpy().astype(np.float32)
    for name, audio in clips.items():
        frames = crop_frames(len(audio))
        arrays[f"frames__{name}"] = frames
        for n_mels in mels_per_clip[name]:
            arrays[f"openai_{n_mels}__{name}"] = openai_log_mel(audio, n_mels)[:, frames]
            hf = extractors[n_mels](audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[0]
            arrays[f"hf_{n_mels}__{name}"] = hf[:, frames]

    normalized = extractors[80](short, sampling_rate=SAMPLE_RATE, do_normalize=True, return_tensors="np")
    arrays["hf_80_normalized__speech_en_short"] = normalized.input_features[0][:, arrays["frames__speech_en_short"]]
    longest = extractors[80](
        [short, clips["noise"]],
        sampling_rate=SAMPLE_RATE,
        padding="longest",
        return_attention_mask=True,
        return_tensors="np",
    )
    arrays["hf_80_longest__noise"] = longest.input_features[1]
    arrays["hf_80_longest_attention_mask"] = longest.attention_mask.astype(np.int32)

    versions = {
        "openai-whisper": whisper.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    arrays["versions"] = np.array(json.dumps(versions, sort_keys=True))
    for key, value in arrays.items():
        if value.dtype == np.float64:
            arrays[key] = value.astype(np.float32)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUTPUT.with_name(f".{OUTPUT.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(OUTPUT)
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({OUTPUT.stat().st_size / 1e6:.2f} MB): {versions}")


if __name__ == "__main__":
    main()
