"""openai-whisper checkpoints: one ``.pt`` file holding ``dims`` and ``model_state_dict``.

openai-whisper names its modules differently (``blocks``, ``attn.query``, ``mlp.0``, ``ln_post``) but stores every
tensor in PyTorch's layout, so conversion is a rename only. The rename is a short list of anchored rules applied to
the table's names; the inverse is read off the same mapping, so nothing is guessed on read. openai-whisper's MLP is
always ``4 * d_model`` wide with GELU and unscaled embeddings: a config that differs cannot be written.

Read with ``torch.load(weights_only=True)``: a file whose pickle carries code is refused and nothing is executed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import CheckpointError
from whisper_multi.weights.ct2 import matching_preset, special_token_fields
from whisper_multi.weights.hf_formats import load_torch_file, numpy_to_torch, torch_to_numpy
from whisper_multi.weights.table import canonical_parameters, check_state_dict

OPENAI_WEIGHTS_NAME = "model.pt"

# (canonical pattern, openai-whisper replacement), applied in order to each canonical name. The layer-norm rules
# come before the attention rules they contain.
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^model\.", ""),
    (r"^encoder\.embed_positions\.weight$", "encoder.positional_embedding"),
    (r"^decoder\.embed_positions\.weight$", "decoder.positional_embedding"),
    (r"^decoder\.embed_tokens\.", "decoder.token_embedding."),
    (r"^encoder\.layer_norm\.", "encoder.ln_post."),
    (r"^decoder\.layer_norm\.", "decoder.ln."),
    (r"\.layers\.(\d+)\.", r".blocks.\1."),
    (r"\.self_attn_layer_norm\.", ".attn_ln."),
    (r"\.encoder_attn_layer_norm\.", ".cross_attn_ln."),
    (r"\.final_layer_norm\.", ".mlp_ln."),
    (r"\.self_attn\.", ".attn."),
    (r"\.encoder_attn\.", ".cross_attn."),
    (r"\.q_proj\.", ".query."),
    (r"\.k_proj\.", ".key."),
    (r"\.v_proj\.", ".value."),
    (r"\.out_proj\.", ".out."),
    (r"\.fc1\.", ".mlp.0."),
    (r"\.fc2\.", ".mlp.2."),
)
_ALIGNMENT_HEADS = "alignment_heads"  # a buffer of openai-whisper's model, (decoder layers, heads) booleans


def openai_name(canonical: str) -> str:
    """The openai-whisper name of a canonical parameter name."""
    name = canonical
    for pattern, replacement in _RENAMES:
        name = re.sub(pattern, replacement, name)
    return name


def openai_names(config: WhisperConfig) -> dict[str, str]:
    """Canonical name -> openai-whisper name for every parameter, in table order."""
    return {name: openai_name(name) for name in canonical_parameters(config)}


@dataclass
class OpenAICheckpoint:
    config: WhisperConfig
    tensors: dict[str, np.ndarray]
    alignment_heads: list[tuple[int, int]] = field(default_factory=list)


# --- dims <-> config ------------------------------------------------------------------------------------------------
def dims_from_config(config: WhisperConfig) -> dict[str, int]:
    """openai-whisper's ``ModelDimensions`` for ``config``; CheckpointError if openai-whisper cannot express it."""
    fixed = {
        "encoder_ffn_dim": 4 * config.d_model,
        "decoder_ffn_dim": 4 * config.d_model,
        "activation_function": "gelu",
        "scale_embedding": False,
    }
    for name, expected in fixed.items():
        if getattr(config, name) != expected:
            raise CheckpointError(
                f"cannot write an openai-whisper checkpoint: {name} is {getattr(config, name)!r}; openai-whisper "
                f"models have {expected!r}"
            )
    return {
        "n_mels": config.num_mel_bins,
        "n_vocab": config.vocab_size,
        "n_audio_ctx": config.max_source_positions,
        "n_audio_state": config.d_model,
        "n_audio_head": config.encoder_attention_heads,
        "n_audio_layer": config.encoder_layers,
        "n_text_ctx": config.max_target_positions,
        "n_text_state": config.d_model,
        "n_text_head": config.decoder_attention_heads,
        "n_text_layer": config.decoder_layers,
    }


def config_from_dims(dims: Mapping[str, Any], path: Path) -> WhisperConfig:
    """The WhisperConfig of openai-whisper dimensions (a published preset's when they match one)."""
    try:
        values = {key: int(dims[key]) for key in dims_from_config(WhisperConfig())}
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: 'dims' is {dict(dims)!r}; expected openai-whisper's ModelDimensions") from error
    if values["n_audio_state"] != values["n_text_state"]:
        raise CheckpointError(
            f"{path}: n_audio_state={values['n_audio_state']} differs from n_text_state={values['n_text_state']}; "
            "a Whisper model has one d_model"
        )
    d_model = values["n_audio_state"]
    fields = {
        "d_model": d_model,
        "num_mel_bins": values["n_mels"],
        "encoder_layers": values["n_audio_layer"],
        "decoder_layers": values["n_text_layer"],
        "encoder_attention_heads": values["n_audio_head"],
        "decoder_attention_heads": values["n_text_head"],
        "encoder_ffn_dim": 4 * d_model,
        "decoder_ffn_dim": 4 * d_model,
        "vocab_size": values["n_vocab"],
        "max_source_positions": values["n_audio_ctx"],
        "max_target_positions": values["n_text_ctx"],
        "activation_function": "gelu",
        "scale_embedding": False,
    }
    try:
        preset = matching_preset(fields)
        if preset is not None:
            return WhisperConfig.from_preset(preset)
        architecture = {"architectures": ["WhisperForConditionalGeneration"]}
        special = special_token_fields(values["n_vocab"])
        return WhisperConfig(**{**special, **architecture, **fields})
    except ValueError as error:
        raise CheckpointError(f"{path}: the dims make no valid WhisperConfig: {error}") from error


# --- reading and writing ------------------------------------------------------------------------------------------
def _alignment_pairs(value: Any, path: Path) -> list[tuple[int, int]]:
    mask = torch_to_numpy(value, _ALIGNMENT_HEADS, path)
    if mask.ndim != 2:
        raise CheckpointError(f"{path}: alignment_heads has shape {mask.shape}; expected (decoder layers, heads)")
    return [(int(layer), int(head)) for layer, head in np.argwhere(mask)]


def read_openai(path: str | os.PathLike[str], config: WhisperConfig | None = None) -> OpenAICheckpoint:
    """Canonical tensors of an openai-whisper ``.pt`` file (memory-mapped, no code executed).

    ``config`` replaces the one derived from ``dims`` (e.g. a ``config.json`` beside the file), but must agree with
    the dims.
    """
    path = Path(path)
    checkpoint = load_torch_file(path)
    if not isinstance(checkpoint, Mapping) or "dims" not in checkpoint or "model_state_dict" not in checkpoint:
        found = sorted(map(str, checkpoint)) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise CheckpointError(
            f"{path} holds {found}; expected an openai-whisper checkpoint with dims and model_state_dict"
        )
    derived = config_from_dims(checkpoint["dims"], path)
    if config is not None and dims_from_config(config) != dims_from_config(derived):
        raise CheckpointError(f"the config given for {path} disagrees with its dims {dict(checkpoint['dims'])}")
    config = config or derived
    state = dict(checkpoint["model_state_dict"])
    heads_value = state.pop(_ALIGNMENT_HEADS, checkpoint.get(_ALIGNMENT_HEADS))
    canonical_of = {name: canonical for canonical, name in openai_names(config).items()}
    tensors = {
        canonical_of.get(str(name), str(name)): torch_to_numpy(value, str(name), path) for name, value in state.items()
    }
    check_state_dict(config, tensors, str(path))
    heads = _alignment_pairs(heads_value, path) if heads_value is not None else []
    return OpenAICheckpoint(config, {name: tensors[name] for name in canonical_parameters(config)}, heads)


def write_openai(path: str | os.PathLike[str], config: WhisperConfig, tensors: Mapping[str, np.ndarray]) -> Path:
    """Write an openai-whisper checkpoint that ``whisper.load_model(path)`` loads."""
    import torch

    check_state_dict(config, tensors, f"the tensors to write as {Path(path).name}")
    checkpoint = {
        "dims": dims_from_config(config),
        "model_state_dict": {
            openai_name(name): numpy_to_torch(np.asarray(tensors[name])) for name in canonical_parameters(config)
        },
    }
    torch.save(checkpoint, path)
    return Path(path)
