"""Writing canonical Whisper tensors as a CTranslate2 model directory, in float32, float16 or CTranslate2's int8.

Writing makes and writes one variable at a time: each is fused, cast or quantized just before it is written.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import CheckpointError, TokenizerError
from whisper_multi.text.special_tokens import special_tokens_for_vocab
from whisper_multi.weights.ct2_layout import (
    ACTIVATION_IDS,
    CONFIG_FILE,
    DTYPE_IDS,
    EMBEDDINGS,
    MODEL_FILE,
    PROJECTION,
    SPEC_NAME,
    SPEC_REVISION,
    WRITE_DTYPES,
    WRITTEN_BINARY_VERSION,
    LazyArrays,
    Link,
    ct2_links,
)
from whisper_multi.weights.table import check_state_dict


def _write_string(file: BinaryIO, text: str) -> None:
    raw = text.encode("utf-8") + b"\0"
    file.write(struct.pack("<H", len(raw)))
    file.write(raw)


def _write_variable(file: BinaryIO, name: str, array: np.ndarray) -> None:
    if array.nbytes >= 2**32:
        raise CheckpointError(f"{name} has {array.nbytes} bytes; a CTranslate2 variable holds less than 4 GiB")
    _write_string(file, name)
    file.write(
        struct.pack(f"<B{array.ndim}IBI", array.ndim, *array.shape, DTYPE_IDS.index(array.dtype.name), array.nbytes)
    )
    little_endian = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    file.write(little_endian.data)  # the array's own buffer: no copy of the values


def _fuse(link: Link, tensors: Mapping[str, Any]) -> np.ndarray:
    # Each part is asked for once: a lazy mapping makes (casts) a tensor on every access.
    present = {name: np.asarray(tensors[name]) for name in link.parts if name}
    if len(link.parts) == 1:
        return present[link.parts[0]]
    if len(present) == len(link.parts):
        return np.concatenate(list(present.values()))
    zeros = np.zeros_like(next(iter(present.values())))  # the key bias Whisper lacks; every part has the same size
    return np.concatenate([present[name] if name else zeros for name in link.parts])


def _quantize_int8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8, the scheme CTranslate2 itself uses: ``q = round(w * 127 / max|row|)``."""
    rows = weight.astype(np.float32).reshape(weight.shape[0], -1)
    amax = np.abs(rows).max(axis=1)
    amax[amax == 0] = 127.0  # an all-zero row gets scale 1
    scale = (np.float32(127.0) / amax).astype(np.float32)
    quantized = np.rint(rows * scale[:, None]).astype(np.int8).reshape(weight.shape)
    return quantized, scale


def _float_variable(link: Link, tensors: Mapping[str, Any], dtype: type) -> np.ndarray:
    return _fuse(link, tensors).astype(dtype, copy=False)


class _Int8Variable:
    """A quantized weight and its scale, made from one quantization.

    The writer reaches ``name`` before ``name_scale`` (name order), so the weight keeps its small scale for it;
    a scale asked for first is quantized for.
    """

    def __init__(self, link: Link, tensors: Mapping[str, Any]) -> None:
        self._link, self._tensors = link, tensors
        self._scale: np.ndarray | None = None

    def weight(self) -> np.ndarray:
        quantized, self._scale = _quantize_int8(_fuse(self._link, self._tensors))
        return quantized

    def scale(self) -> np.ndarray:
        if self._scale is None:
            return _quantize_int8(_fuse(self._link, self._tensors))[1]
        return self._scale


def _quantized_by_ct2(name: str) -> bool:
    """Linear and embedding weights: what CTranslate2 quantizes when it loads a float model with compute_type="int8".
    The convolutions stay float there (its converter quantizes them too, which moves the scores), so an int8 file
    written here runs exactly as CTranslate2's own int8 of the same float weights."""
    return name.endswith("/weight") and "/conv" not in name


def _ct2_variables(config: WhisperConfig, tensors: Mapping[str, Any], dtype: str) -> LazyArrays:
    """Every variable of the model.bin, each fused (and cast or quantized) only when the writer reaches it."""
    float_dtype = np.float16 if dtype == "float16" else np.float32
    makers: dict[str, Callable[[], np.ndarray]] = {}
    for link in ct2_links(config):
        if dtype == "int8" and _quantized_by_ct2(link.ct2):
            quantized = _Int8Variable(link, tensors)
            makers[link.ct2], makers[f"{link.ct2}_scale"] = quantized.weight, quantized.scale
        else:
            makers[link.ct2] = partial(_float_variable, link, tensors, float_dtype)
    variables = LazyArrays(makers)
    variables.update(_scalar_variables(config))
    return variables


def _scalar_variables(config: WhisperConfig) -> dict[str, np.ndarray]:
    if config.activation_function not in ACTIVATION_IDS:
        raise CheckpointError(f"activation_function {config.activation_function!r} has no CTranslate2 equivalent")
    return {
        "decoder/activation": np.array(ACTIVATION_IDS[config.activation_function], dtype=np.int8),
        "decoder/alibi": np.array(0, dtype=np.int8),
        # Guided-alignment settings of CT2's generic decoder, unused by Whisper: the defaults CT2 writes.
        "decoder/alignment_heads": np.array(1, dtype=np.int16),
        "decoder/alignment_layer": np.array(-1, dtype=np.int16),
        "decoder/num_heads": np.array(config.decoder_attention_heads, dtype=np.int16),
        "decoder/pre_norm": np.array(1, dtype=np.int8),
        "decoder/scale_embeddings": np.array(int(config.scale_embedding), dtype=np.int8),
        "decoder/start_from_zero_embedding": np.array(0, dtype=np.int8),
        "encoder/num_heads": np.array(config.encoder_attention_heads, dtype=np.int16),
    }


def _write_model_bin(path: Path, variables: Mapping[str, np.ndarray], aliases: Mapping[str, str]) -> None:
    """Write the file one variable at a time: each is taken from ``variables`` just before it is written."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as file:
            file.write(struct.pack("<I", WRITTEN_BINARY_VERSION))
            _write_string(file, SPEC_NAME)
            file.write(struct.pack("<I", SPEC_REVISION))
            file.write(struct.pack("<I", len(variables)))
            for name in sorted(variables):  # CTranslate2 writes its variables in name order
                _write_variable(file, name, variables[name])
            file.write(struct.pack("<I", len(aliases)))
            for alias, target in aliases.items():
                _write_string(file, alias)
                _write_string(file, target)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _default_alignment_heads(config: WhisperConfig) -> list[tuple[int, int]]:
    # What CTranslate2's converter uses when a checkpoint names none: every head of the upper half of the decoder.
    layers = range(config.decoder_layers // 2, config.decoder_layers)
    return [(layer, head) for layer in layers for head in range(config.decoder_attention_heads)]


def _default_lang_ids(config: WhisperConfig) -> list[int]:
    try:
        special = special_tokens_for_vocab(config.vocab_size)
    except TokenizerError:
        return []
    return sorted(special.lang_to_id.values()) if special.is_multilingual else []


def _write_vocabulary(directory: Path, vocabulary: Sequence[str], vocab_size: int) -> None:
    if len(vocabulary) != vocab_size:
        raise CheckpointError(f"the vocabulary has {len(vocabulary)} tokens; vocab_size is {vocab_size}")
    tokens = [str(token) for token in vocabulary]
    if any("\n" in token for token in tokens):
        (directory / "vocabulary.json").write_text(json.dumps(tokens, ensure_ascii=False), encoding="utf-8")
    else:
        (directory / "vocabulary.txt").write_text("".join(f"{token}\n" for token in tokens), encoding="utf-8")


def write_ct2(
    directory: str | os.PathLike[str],
    config: WhisperConfig,
    tensors: Mapping[str, Any],
    dtype: str = "float32",
    *,
    vocabulary: Sequence[str] | None = None,
    alignment_heads: Iterable[tuple[int, int]] | None = None,
    suppress_ids: Sequence[int] | None = None,
    suppress_ids_begin: Sequence[int] | None = None,
    lang_ids: Sequence[int] | None = None,
) -> Path:
    """Write canonical Whisper tensors as a CTranslate2 model directory; return the path of its ``model.bin``.

    ``dtype`` is "float32", "float16" or "int8" (CTranslate2's per-row int8 for the linear and embedding weights,
    float32 for the rest, as CTranslate2 quantizes a float model it loads with ``compute_type="int8"``). CTranslate2 needs the vocabulary (one token string per id) to load the model; pass ``vocabulary`` (e.g.
    ``CT2Model.vocabulary``) or add a vocabulary file yourself. The generation fields of ``config.json`` default to
    those of ``config`` and its vocabulary.
    """
    if dtype not in WRITE_DTYPES:
        raise CheckpointError(f"cannot write CTranslate2 dtype {dtype!r}; expected one of {', '.join(WRITE_DTYPES)}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"cannot write a CTranslate2 model into {directory}: it is a file, not a directory")
    check_state_dict(config, tensors, "the tensors passed to write_ct2")
    directory.mkdir(parents=True, exist_ok=True)
    variables = _ct2_variables(config, tensors, dtype)
    aliases = {PROJECTION: EMBEDDINGS}
    if dtype == "int8":
        # The projection shares the quantized embedding, so it must share its scale too, or CTranslate2 multiplies
        # by the raw int8 values.
        aliases[f"{PROJECTION}_scale"] = f"{EMBEDDINGS}_scale"
    model_file = directory / MODEL_FILE
    _write_model_bin(model_file, variables, aliases)
    ct2_config = {
        "alignment_heads": [list(pair) for pair in (alignment_heads or _default_alignment_heads(config))],
        "lang_ids": list(lang_ids if lang_ids is not None else _default_lang_ids(config)),
        "suppress_ids": list(suppress_ids if suppress_ids is not None else config.suppress_tokens or []),
        "suppress_ids_begin": list(
            suppress_ids_begin if suppress_ids_begin is not None else config.begin_suppress_tokens or []
        ),
    }
    (directory / CONFIG_FILE).write_text(json.dumps(ct2_config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if vocabulary is not None:
        _write_vocabulary(directory, vocabulary, config.vocab_size)
    return model_file
