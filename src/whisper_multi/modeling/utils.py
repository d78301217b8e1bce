"""Framework-free pieces of the Whisper models, written once and called by the PyTorch, Keras and Flax backends.

Nothing here imports a framework: the functions take shapes, integers and numpy arrays, so each backend only turns
their answers into its own tensors. Errors name the value received and the value expected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from whisper_multi.errors import InputError

# The encoder's two convolutions: conv1 keeps the frame count, conv2 halves it (stride 2, kernel 3, padding 1).
CONV_KERNEL_SIZE = 3
CONV2_STRIDE = 2
IGNORE_INDEX = -100  # label value that the loss skips, as in PyTorch's cross-entropy


# --- positions -----------------------------------------------------------------------------------------------------
def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> np.ndarray:
    """The encoder's fixed position table, (length, channels): sines in the first half, cosines in the second."""
    if channels % 2:
        raise InputError(f"sinusoid channels must be even, got {channels}")
    log_timescale_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = np.exp(-log_timescale_increment * np.arange(channels // 2, dtype=np.float64))
    scaled_time = np.arange(length, dtype=np.float64)[:, None] * inv_timescales[None, :]
    return np.concatenate([np.sin(scaled_time), np.cos(scaled_time)], axis=1).astype(np.float32)


# --- input checks --------------------------------------------------------------------------------------------------
def expected_num_frames(config: Any) -> int:
    """Mel frames the encoder accepts: twice its positions, because conv2 halves the time axis (3000 for a 30-second window)."""
    return int(config.max_source_positions) * CONV2_STRIDE


def encoder_output_length(input_lengths: Any) -> Any:
    """Encoder positions produced from a count of mel frames (works on ints and numpy arrays)."""
    return (input_lengths - 1) // CONV2_STRIDE + 1


def check_input_features_shape(shape: Sequence[int], config: Any) -> None:
    """Refuse input features that are not (batch, num_mel_bins, 2 * max_source_positions)."""
    shape = tuple(int(size) for size in shape)
    frames = expected_num_frames(config)
    expected = f"(batch, {config.num_mel_bins}, {frames})"
    if len(shape) != 3:
        raise InputError(
            f"input_features must have rank 3 {expected} = (batch, num_mel_bins, frames), got shape {shape}"
        )
    if shape[1] != config.num_mel_bins:
        raise InputError(
            f"input_features has {shape[1]} mel bins (shape {shape}), expected {expected}: "
            f"this model was built with num_mel_bins={config.num_mel_bins}"
        )
    if shape[2] != frames:
        raise InputError(
            f"input_features has {shape[2]} frames (shape {shape}), expected {expected}: pad or trim the log-mel "
            f"features to {frames} frames (30 s), as the feature extractor does"
        )


def check_decoder_length(past_length: int, length: int, config: Any, name: str = "decoder_input_ids") -> None:
    """Refuse a decoder sequence that would run past the last learned position. A length unknown until the graph
    runs (None: a Keras function traced for any label length) is left to the position lookup."""
    if past_length is None or length is None:
        return
    total = int(past_length) + int(length)
    if total > config.max_target_positions:
        cached = f" after {past_length} cached positions" if past_length else ""
        raise InputError(
            f"{name} has {length} positions{cached}, {total} in all, expected at most "
            f"max_target_positions={config.max_target_positions}"
        )


def check_token_ids_shape(shape: Sequence[int], name: str = "decoder_input_ids") -> None:
    if len(shape) != 2:
        raise InputError(f"{name} must have shape (batch, sequence_length), got shape {tuple(shape)}")


_FLOAT_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})
_INTEGER_DTYPES = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})


def dtype_name(dtype: Any) -> str:
    """The dtype's name ("float32") for numpy, TensorFlow, JAX and PyTorch dtypes alike (torch's have no ``name``)."""
    name = getattr(dtype, "name", None)
    return name if isinstance(name, str) else str(dtype).removeprefix("torch.")


def check_input_features_dtype(dtype: Any) -> None:
    """Refuse integer, boolean or complex input features: log-mel features are real numbers."""
    if dtype_name(dtype) not in _FLOAT_DTYPES:
        raise InputError(
            f"input_features has dtype {dtype_name(dtype)}; expected floating-point log-mel features "
            f"({', '.join(sorted(_FLOAT_DTYPES))}), as the feature extractor returns them"
        )


def check_token_ids_values(
    dtype: Any, id_range: Callable[[], tuple[int, int] | None], vocab_size: int, name: str = "decoder_input_ids"
) -> None:
    """Refuse token ids that are not integers or lie outside [0, vocab_size).

    ``id_range()`` gives the (smallest, largest) id, or None where the values cannot be read (inside a compiled
    graph). Unchecked, an embedding lookup of such an id fails with an opaque index error, or silently reads
    garbage on accelerators.
    """
    if dtype_name(dtype) not in _INTEGER_DTYPES:
        raise InputError(f"{name} has dtype {dtype_name(dtype)}; expected integer token ids (int32 or int64)")
    found_range = id_range()
    if found_range is None:
        return
    lowest, highest = found_range
    if lowest < 0 or highest >= vocab_size:
        found = lowest if lowest < 0 else highest
        raise InputError(
            f"{name} holds token id {found}; expected ids from 0 to {vocab_size - 1} (vocab_size={vocab_size})"
        )


def check_head_mask_shape(shape: Sequence[int], layers: int, heads: int, name: str) -> None:
    """A head mask is (layers, heads): 1 keeps a head, 0 silences it."""
    if tuple(int(size) for size in shape) != (layers, heads):
        raise InputError(f"{name} must have shape ({layers}, {heads}) = (layers, heads), got {tuple(shape)}")


def check_cache_length(cache: Sequence[Any], layers: int) -> None:
    if len(cache) != layers:
        raise InputError(
            f"past_key_values holds {len(cache)} layers, expected {layers}: one (self_k, self_v, cross_k, cross_v) "
            f"tuple per decoder layer"
        )


# --- training ------------------------------------------------------------------------------------------------------
def shift_tokens_right(labels: np.ndarray, pad_token_id: int | None, decoder_start_token_id: int) -> np.ndarray:
    """Decoder inputs for teacher forcing: the start token, then the labels less the last, with -100 made pad."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"labels must have shape (batch, sequence_length), got shape {labels.shape}")
    if pad_token_id is None:
        raise InputError("config.pad_token_id is None; it is needed to replace ignored labels (-100)")
    shifted = np.empty_like(labels)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    shifted[shifted == IGNORE_INDEX] = pad_token_id
    return shifted


def compute_mask_indices(
    shape: tuple[int, int],
    mask_prob: float,
    mask_length: int,
    min_masks: int = 0,
    attention_mask: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """SpecAugment spans: a boolean (batch, length) mask with about ``mask_prob`` of each row covered.

    Each row gets ``int(mask_prob * length / mask_length + u)`` spans (``u`` uniform in [0, 1) draws the rounding),
    at least ``min_masks``, never more than fit; spans start at distinct random positions and may overlap.
    ``attention_mask`` (batch, length) limits each row to its unpadded length.
    """
    batch_size, sequence_length = shape
    if mask_length < 1:
        raise InputError(f"mask_length must be at least 1, got {mask_length}")
    if mask_length > sequence_length:
        raise InputError(
            f"mask_length={mask_length} is longer than the axis it masks ({sequence_length}); lower mask_length"
        )
    rng = np.random.default_rng() if rng is None else rng
    rounding = rng.random()
    if attention_mask is not None:
        input_lengths = np.asarray(attention_mask).sum(-1).astype(np.int64).tolist()
    else:
        input_lengths = [sequence_length] * batch_size

    mask = np.zeros(shape, dtype=bool)
    for row, input_length in enumerate(input_lengths):
        num_starts = max(input_length - (mask_length - 1), 0)
        num_spans = max(int(mask_prob * input_length / mask_length + rounding), min_masks)
        num_spans = min(num_spans, sequence_length // mask_length, num_starts)
        if num_spans == 0:
            continue
        starts = rng.choice(num_starts, num_spans, replace=False)
        positions = (starts[:, None] + np.arange(mask_length)[None, :]).reshape(-1)  # (spans * mask_length,)
        mask[row, positions] = True
    return mask
