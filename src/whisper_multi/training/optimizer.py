"""Which parameters AdamW updates and decays, by canonical name (``weights.table``), for every backend.

Transformers' ``Trainer`` leaves biases and layer-norm parameters out of weight decay; the encoder's fixed
sinusoids are never trained; ``freeze_encoder`` stops every encoder parameter. Each backend maps its own parameter
names to canonical ones (the weight layer's table) and asks here.
"""

from __future__ import annotations

from whisper_multi.training.options import TrainingOptions

ENCODER_PREFIX = "model.encoder."
FIXED_PARAMETERS = ("model.encoder.embed_positions.weight",)  # the sinusoid table


def is_trained(canonical_name: str, options: TrainingOptions) -> bool:
    """Whether the optimizer updates this parameter."""
    if canonical_name in FIXED_PARAMETERS:
        return False
    return not (options.freeze_encoder and canonical_name.startswith(ENCODER_PREFIX))


def is_decayed(canonical_name: str) -> bool:
    """Whether weight decay applies: not to biases and layer norms (Transformers' ``Trainer`` rule)."""
    return not (canonical_name.endswith(".bias") or "layer_norm" in canonical_name)
