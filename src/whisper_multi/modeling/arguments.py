"""The call arguments of the Whisper models, checked and resolved once for the PyTorch, Keras and Flax backends.

Each model's ``forward`` / ``call`` / ``__call__`` hands its arguments here and gets back plain Python values: the
flags after the config's defaults, the cache lengths, or an ``InputError`` that names the value received and the
value expected. Tensors are read for their ``shape`` and ``dtype`` only, so no framework is imported; the model
files keep the tensor work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from whisper_multi.errors import InputError
from whisper_multi.modeling.utils import (
    check_cache_length,
    check_decoder_length,
    check_head_mask_shape,
    check_input_features_dtype,
    check_input_features_shape,
    check_token_ids_shape,
    check_token_ids_values,
)

# "sdpa" is the fused kernel where the framework has one, "eager" the explicit softmax; both give the same numbers.
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")


def config_flag(config: Any, name: str, value: bool | None, default: bool) -> bool:
    """An explicit argument wins, then the config's attribute, then the default."""
    if value is not None:
        return value
    return bool(getattr(config, name, default))


def check_attn_implementation(implementation: str) -> str:
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise InputError(
            f"attn_implementation {implementation!r} is not supported; expected one of "
            f"{', '.join(ATTENTION_IMPLEMENTATIONS)}"
        )
    return implementation


def attn_implementation(config: Any, explicit: str | None = None) -> str:
    """The attention path to build: ``explicit``, else the config's ``_attn_implementation``, else "sdpa"."""
    return check_attn_implementation(explicit or getattr(config, "_attn_implementation", None) or "sdpa")


def static_shape(tensor: Any) -> tuple[int, ...]:
    """A tensor's shape as ints for the checks; a size unknown while tracing (a Keras batch) reads -1."""
    return tuple(-1 if size is None else int(size) for size in tensor.shape)


# --- encoder -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderCall:
    output_attentions: bool
    output_hidden_states: bool
    return_dict: bool


def encoder_call(
    config: Any,
    input_features: Any,
    head_mask: Any,
    output_attentions: bool | None,
    output_hidden_states: bool | None,
    return_dict: bool | None,
) -> EncoderCall:
    """Check the encoder's inputs (features (batch, num_mel_bins, frames), head mask (layers, heads)) and resolve
    its flags. The tensors are read for their shape and dtype only."""
    check_input_features_shape(static_shape(input_features), config)
    check_input_features_dtype(input_features.dtype)
    if head_mask is not None:
        check_head_mask_shape(head_mask.shape, config.encoder_layers, config.encoder_attention_heads, "head_mask")
    return EncoderCall(
        output_attentions=config_flag(config, "output_attentions", output_attentions, False),
        output_hidden_states=config_flag(config, "output_hidden_states", output_hidden_states, False),
        return_dict=config_flag(config, "use_return_dict", return_dict, True),
    )


# --- decoder -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecoderCall:
    output_attentions: bool
    output_hidden_states: bool
    use_cache: bool
    return_dict: bool
    static: bool  # a preallocated cache written at ``cache_position``
    past_length: int  # positions cached before this call (0 with a static cache: the positions are given)
    key_length: int  # positions the keys span: cached + new, or the whole preallocated cache


def decoder_call(
    config: Any,
    input_ids: Any,
    inputs_embeds: Any,
    head_mask: Any,
    cross_attn_head_mask: Any,
    past_key_values: Sequence[Any] | None,
    cache_position: Any,
    flags: tuple[bool | None, bool | None, bool | None, bool | None],
    token_id_range: Callable[[Any], tuple[int, int] | None],
    checkpointing: bool = False,
) -> DecoderCall:
    """Check the decoder's inputs and resolve its flags and cache lengths; the tensors are read for their shapes
    (and ``input_ids`` for its smallest and largest id, through ``token_id_range``, None where unreadable).

    ``flags``: the call's (use_cache, output_attentions, output_hidden_states, return_dict). ``checkpointing``:
    gradient checkpointing is on and the model trains; checkpointed layers are recomputed, so a cache would be
    built twice and none is returned.
    """
    if (input_ids is None) == (inputs_embeds is None):
        raise InputError("pass exactly one of decoder_input_ids and decoder_inputs_embeds")
    if input_ids is not None:
        check_token_ids_shape(input_ids.shape)
        check_token_ids_values(input_ids.dtype, lambda: token_id_range(input_ids), config.vocab_size)
    length = (inputs_embeds if input_ids is None else input_ids).shape[1]
    for mask, name in ((head_mask, "decoder_head_mask"), (cross_attn_head_mask, "cross_attn_head_mask")):
        if mask is not None:
            check_head_mask_shape(mask.shape, config.decoder_layers, config.decoder_attention_heads, name)
    if past_key_values is not None:
        check_cache_length(past_key_values, config.decoder_layers)
    cached = 0 if past_key_values is None else past_key_values[0][0].shape[2]
    if cache_position is not None:
        if past_key_values is None:
            raise InputError("cache_position needs a preallocated cache: pass past_key_values=init_cache(...)")
        past_length, key_length = 0, cached  # the keys span the whole preallocated length
    else:
        check_decoder_length(cached, length, config)
        past_length, key_length = cached, cached + length
    use_cache, output_attentions, output_hidden_states, return_dict = flags
    return DecoderCall(
        output_attentions=config_flag(config, "output_attentions", output_attentions, False),
        output_hidden_states=config_flag(config, "output_hidden_states", output_hidden_states, False),
        use_cache=config_flag(config, "use_cache", use_cache, True) and not checkpointing,
        return_dict=config_flag(config, "use_return_dict", return_dict, True),
        static=cache_position is not None,
        past_length=past_length,
        key_length=key_length,
    )


def check_decoder_attention_mask(attention_mask: Any, batch_size: Any, key_length: int, static: bool) -> None:
    """A decoder attention mask is (batch, cached + new positions); with a static cache it may be shorter (the
    positions not written yet are hidden by causality). A batch size that is not an int (traced) is not checked."""
    found = static_shape(attention_mask)
    too_short = found[-1] < key_length and not static
    wrong_batch = isinstance(batch_size, int) and found[0] not in (-1, batch_size)
    if found[-1] > key_length or too_short or wrong_batch:
        raise InputError(
            f"decoder_attention_mask has shape {found}, expected ({batch_size}, {key_length}) = "
            f"(batch, cached + new positions)"
        )


def static_cache_shape(config: Any, batch_size: int, max_length: int | None) -> tuple[int, int, int, int]:
    """(batch, heads, time, head_dim) of each preallocated self-attention key and value; time defaults to
    ``max_target_positions``."""
    max_length = config.max_target_positions if max_length is None else max_length
    check_decoder_length(0, max_length, config, name="the static cache")
    heads = config.decoder_attention_heads
    return (batch_size, heads, max_length, config.d_model // heads)


# --- models --------------------------------------------------------------------------------------------------------
def check_encoder_inputs(input_features: Any, config: Any = None) -> None:
    """A model called without ``encoder_outputs`` needs ``input_features``; with ``config``, of the right shape
    (checked here, before SpecAugment reads the shape)."""
    if input_features is None:
        raise InputError("pass input_features (batch, num_mel_bins, frames) or encoder_outputs")
    if config is not None:
        check_input_features_shape(static_shape(input_features), config)


def as_encoder_output(encoder_outputs: Any, output_class: type) -> Any:
    """``encoder_outputs`` as ``output_class`` (the backend's ``BaseModelOutput``): a tuple is (last hidden state,
    hidden states, attentions), the last two optional."""
    if isinstance(encoder_outputs, output_class):
        return encoder_outputs
    return output_class(
        last_hidden_state=encoder_outputs[0],
        hidden_states=encoder_outputs[1] if len(encoder_outputs) > 1 else None,
        attentions=encoder_outputs[2] if len(encoder_outputs) > 2 else None,
    )


def check_labels(labels: Any, config: Any) -> None:
    """Labels are (batch, time) token ids, at most ``max_target_positions`` long."""
    check_token_ids_shape(labels.shape, name="labels")
    check_decoder_length(0, labels.shape[1], config, name="labels")


def classifier_hidden_states(config: Any, output_hidden_states: bool | None) -> bool | None:
    """The weighted layer sum reads every layer's output, so it asks the encoder for them all."""
    return True if config.use_weighted_layer_sum else output_hidden_states
