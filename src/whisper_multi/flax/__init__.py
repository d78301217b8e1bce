"""Flax backend: the Whisper models with Transformers' names, arguments and outputs. Imports jax and flax only."""

from __future__ import annotations

from whisper_multi.flax import modeling_flax_whisper
from whisper_multi.flax.loading import params_from_state_dict, state_dict_from_params, to_dtype
from whisper_multi.flax.modeling_flax_whisper import *  # noqa: F403 (the names in its __all__)
from whisper_multi.modeling import outputs as shared
from whisper_multi.modeling.outputs import *  # noqa: F403 (the output classes)

__all__ = [
    *modeling_flax_whisper.__all__,
    *shared.__all__,
    "params_from_state_dict",
    "state_dict_from_params",
    "to_dtype",
]
