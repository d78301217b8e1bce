"""The names of the stages whose rows a comparison writes, and the settings they run with."""

from __future__ import annotations

from typing import Any

ENCODER_STAGES = ("encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions")
DECODER_STAGES = ("decoder_hidden_states", "decoder_attentions", "cross_attentions", "logits")
E2E_STAGES = ("e2e_logits", "loss")
CACHED_STAGES = ("cached_logits", "static_cache_logits")
# The stages measured in float64: each output of the full forward (encoder, end to end) and of the decoder fed the
# reference framework's encoder states, with the key it has in that run's outputs.
FLOAT64_STAGES: dict[str, tuple[str, str]] = {
    **{stage: ("forward", stage) for stage in ENCODER_STAGES},
    **{stage: ("decode", stage) for stage in DECODER_STAGES},
    "e2e_logits": ("forward", "logits"),
    "loss": ("forward", "loss"),
}
# The rows of the float64 group: every framework pair in float64, then each framework's float32 error.
FLOAT64_GROUP_STAGES = (
    *(f"float64_{stage}" for stage in FLOAT64_STAGES),
    *(f"float32_error_{stage}" for stage in FLOAT64_STAGES),
)
GENERATION_SETTINGS: dict[str, dict[str, Any]] = {
    "generate_greedy": {},
    "generate_beam4": {"num_beams": 4},
    "generate_timestamps": {"return_timestamps": True},
}

CACHED_POSITIONS = 8  # positions decoded step by step (every new shape compiles once in Flax and TF)
CLASSIFICATION_LABELS = 3
