"""Reading a CTranslate2 Whisper model into canonical tensors (Transformers names and layouts) and a WhisperConfig.

Reading maps the file and hands out its tensors one at a time: a tensor stored as asked for is a view of the
mapped file (copy-on-write, never written back), one that needs converting is converted when it is asked for.
Quantized weights are dequantized: int8 weights are ``round(w * scale)`` with one scale per output row, int16
weights one scale for the tensor.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from whisper_multi.configuration import PRESETS, WhisperConfig
from whisper_multi.errors import CheckpointError, TokenizerError
from whisper_multi.text.special_tokens import special_tokens_for_vocab
from whisper_multi.weights.ct2_container import ByteSource, Container, Variable, raw_array, read_container
from whisper_multi.weights.ct2_layout import (
    ACTIVATION_NAMES,
    CONFIG_FILE,
    EMBEDDINGS,
    MODEL_FILE,
    PROJECTION,
    SPEC_NAME,
    VOCABULARY_FILES,
    LazyArrays,
    Link,
    ct2_links,
)
from whisper_multi.weights.table import TIED_PARAMETERS, canonical_parameters, check_state_dict

_COMPARE_BYTES = 1 << 24  # the tied-projection check compares this much at a time


@dataclass
class CT2Model:
    """A CTranslate2 Whisper model in canonical form, plus what ``generate`` needs from its ``config.json``.

    ``tensors`` makes each tensor when it is asked for (see ``LazyArrays``), so reading costs no memory up front.
    """

    config: WhisperConfig
    tensors: MutableMapping[str, np.ndarray]
    alignment_heads: list[tuple[int, int]] = field(default_factory=list)
    suppress_ids: list[int] = field(default_factory=list)
    suppress_ids_begin: list[int] = field(default_factory=list)
    lang_ids: list[int] = field(default_factory=list)
    vocabulary: list[str] | None = None
    source_dtype: str = "float32"  # "float16", "int8_float16", ... as CTranslate2 names quantizations
    source: str = ""


# --- decoding values ----------------------------------------------------------------------------------------------
def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    # bfloat16 is the upper half of a float32: shifting the bits back up is exact.
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _as_float(variable: Variable) -> np.ndarray:
    array = raw_array(variable)
    return _bfloat16_to_float32(array) if variable.dtype == "bfloat16" else array


class _Stored(NamedTuple):
    """One canonical tensor as the file holds it: a view of its rows, their CT2 dtype and, if quantized, the scale."""

    raw: np.ndarray
    dtype: str
    scale: np.ndarray | None  # float32: one per row of ``raw`` (int8) or one for the tensor (int16)


def _decoded_dtype(stored: _Stored, dtype: Any) -> np.dtype:
    if dtype is not None:
        return np.dtype(dtype)
    # dtype=None keeps float16 as stored; everything else numpy can compute with is float32.
    return np.dtype(np.float16 if stored.dtype == "float16" and stored.scale is None else np.float32)


def _decode(stored: _Stored, dtype: np.dtype) -> np.ndarray:
    """The tensor's values as ``dtype``: the view of the file itself when nothing needs converting."""
    if stored.scale is not None:
        values = stored.raw.astype(np.float32)
        if stored.scale.ndim == 0:  # int16: one scale for the whole tensor
            values /= stored.scale
        else:  # int8: one scale per output row
            values /= stored.scale.reshape((-1,) + (1,) * (values.ndim - 1))
        return values.astype(dtype, copy=False)
    if stored.dtype == "bfloat16":
        return _bfloat16_to_float32(stored.raw).astype(dtype, copy=False)
    return stored.raw.astype(dtype, copy=False)


def _scalar(container: Container, name: str) -> int | None:
    variable = container.variables.get(name)
    return None if variable is None else int(raw_array(variable).item())


# --- reading ------------------------------------------------------------------------------------------------------
def _resolve_model_files(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(path, (str, os.PathLike)):
        path = Path(path)
        files = [path / MODEL_FILE] if path.is_dir() else [path]
    else:
        files = [Path(part) for part in path]
        if not files:
            raise CheckpointError("read_ct2 was given an empty list of model.bin parts; expected at least one file")
    for file in files:
        if not file.is_file():
            raise CheckpointError(f"no CTranslate2 model file at {file}; expected a directory holding {MODEL_FILE}")
    return files


def _read_json(path: Path, kind: type, read_as: str, holding: str) -> Any:
    """The JSON value in ``path``, which must be a ``kind``; messages say what the file should be."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"cannot read {path} as {read_as}: {error}") from error
    if not isinstance(data, kind):
        raise CheckpointError(f"{path} must hold {holding}, found {type(data).__name__}")
    return data


def read_vocabulary(directory: Path) -> list[str] | None:
    """The token list of a CTranslate2 model directory (vocabulary.json or vocabulary.txt), or None."""
    json_file, text_file = (directory / name for name in VOCABULARY_FILES)
    if json_file.is_file():
        tokens = _read_json(json_file, list, "a JSON list of tokens", "a JSON list of tokens")
        return [str(token) for token in tokens]
    if text_file.is_file():
        lines = text_file.read_text(encoding="utf-8").split("\n")
        return lines[:-1] if lines and lines[-1] == "" else lines
    return None


def _tensors_from_container(container: Container, links: list[Link]) -> tuple[dict[str, _Stored], str]:
    """Each canonical tensor as stored (views of the file, nothing decoded), and the CT2 name of the precision."""
    label_dtypes = set()
    tensors: dict[str, _Stored] = {}
    for link in links:
        variable = container.variables.get(link.ct2)
        if variable is None:
            continue  # reported by check_state_dict as missing canonical names
        stored = _stored_value(container, link.ct2, variable)
        label_dtypes.add(stored.dtype)
        tensors.update(_split(container, link, stored))
    return tensors, _source_dtype_label(label_dtypes)


def _stored_value(container: Container, name: str, variable: Variable) -> _Stored:
    scale = container.variables.get(f"{name}_scale")
    if scale is not None:
        factors = _as_float(scale).astype(np.float32)
        if factors.size == 1:
            factors = factors.reshape(())  # one scale for the whole tensor
        elif factors.shape != variable.shape[:1]:
            raise CheckpointError(
                f"{container.label}: {name}_scale has shape {factors.shape}; expected one scale per row of {name} "
                f"({variable.shape[:1]}) or one for the whole tensor"
            )
        return _Stored(raw_array(variable), variable.dtype, factors)
    if variable.dtype in ("float32", "float16", "bfloat16"):
        return _Stored(raw_array(variable), variable.dtype, None)
    raise CheckpointError(
        f"{container.label}: {name} is {variable.dtype} without a {name}_scale; expected a float "
        "tensor or a quantized one with its scale"
    )


def _split(container: Container, link: Link, stored: _Stored) -> dict[str, _Stored]:
    if len(link.parts) == 1:
        return {link.parts[0]: stored}
    parts = len(link.parts)
    if stored.raw.shape[0] % parts:
        raise CheckpointError(
            f"{container.label}: {link.ct2} has {stored.raw.shape[0]} rows, expected a multiple of "
            f"{parts} (the fused {', '.join(p or 'k_proj.bias' for p in link.parts)})"
        )
    # Splitting along the rows of a C-ordered array gives contiguous views: nothing is copied.
    raws = np.split(stored.raw, parts)
    scale = stored.scale  # int8: split with its rows; int16 (one scale) or none: shared
    scales = np.split(scale, parts) if scale is not None and scale.ndim == 1 else [scale] * parts
    # The empty part is the key bias Whisper lacks: it only shifts all scores of a query equally, so dropping it
    # changes no attention weight.
    return {name: _Stored(raw, stored.dtype, scale) for name, raw, scale in zip(link.parts, raws, scales) if name}


def _source_dtype_label(stored: set[str]) -> str:
    floats = sorted(stored & {"float32", "float16", "bfloat16"})
    float_name = floats[0] if len(floats) == 1 else "float32"
    if "int8" in stored:
        return f"int8_{float_name}"
    if "int16" in stored:
        return "int16"
    return float_name


def _check_variables_known(container: Container, links: list[Link]) -> None:
    known = {link.ct2 for link in links} | {f"{link.ct2}_scale" for link in links}
    unknown = sorted(
        name
        for name, variable in container.variables.items()
        if name not in known and variable.shape and name != PROJECTION
    )
    if unknown:
        raise CheckpointError(
            f"{container.label} has tensors a Whisper model does not: {', '.join(unknown[:10])}"
            f"{' ...' if len(unknown) > 10 else ''}; expected only the {SPEC_NAME} variables (an unsupported "
            "quantization such as AWQ, or a different architecture?)"
        )


def _check_projection_tied(container: Container) -> None:
    """Whisper's output projection is the token embedding; CT2 stores it as an alias or as an identical copy."""
    label = container.label
    target = container.aliases.get(PROJECTION)
    if target is not None:
        if target != EMBEDDINGS:
            raise CheckpointError(f"{label}: {PROJECTION} is an alias of {target}; expected {EMBEDDINGS}")
        return
    projection = container.variables.get(PROJECTION)
    embeddings = container.variables.get(EMBEDDINGS)
    if projection is None or embeddings is None:
        return  # a missing embedding is reported with the other missing names
    if projection.shape != embeddings.shape or not _same_bytes(projection.data, embeddings.data):
        raise CheckpointError(
            f"{label}: {PROJECTION} differs from {EMBEDDINGS}; expected them tied as in every Whisper model "
            f"({next(iter(TIED_PARAMETERS))} is {TIED_PARAMETERS['proj_out.weight']})"
        )


def _same_bytes(first: memoryview, second: memoryview) -> bool:
    # A slice at a time: copying both whole would hold two extra copies of the largest tensor.
    if len(first) != len(second):
        return False
    a, b, step = np.frombuffer(first, np.uint8), np.frombuffer(second, np.uint8), _COMPARE_BYTES
    return all(np.array_equal(a[at : at + step], b[at : at + step]) for at in range(0, len(a), step))


def _check_architecture_flags(container: Container) -> None:
    """Flags of CTranslate2's generic decoder that Whisper always sets one way."""
    expected = {"decoder/pre_norm": 1, "decoder/alibi": 0, "decoder/start_from_zero_embedding": 0}
    for name, value in expected.items():
        found = _scalar(container, name)
        if found is not None and found != value:
            raise CheckpointError(f"{container.label}: {name} is {found}; a Whisper model has {value}")


def read_ct2(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    dtype: str | np.dtype | type | None = "float32",
) -> CT2Model:
    """Read a CTranslate2 Whisper model into canonical tensors (Transformers names and layouts).

    ``path`` is a model directory, its ``model.bin``, or the ordered parts of one ``model.bin`` split into several
    files (read as one file, nothing written). ``config.json`` and the vocabulary are read from the directory of
    the first file. Weights come back as ``dtype``; ``dtype=None`` keeps float16 as stored (quantized and bfloat16
    weights become float32). Quantized weights are dequantized with a UserWarning: they only approximate the
    original weights.

    Nothing is decoded here: ``tensors`` gives each tensor when asked for, as a view of the memory-mapped file
    when it is stored as ``dtype`` (the file stays mapped while a view lives), converted otherwise.
    """
    if dtype is not None and np.dtype(dtype).kind != "f":
        raise CheckpointError(f"read_ct2 returns float tensors; dtype={dtype!r} is not a float dtype")
    files = _resolve_model_files(path)
    source = ByteSource(files)
    container = read_container(source)
    directory = files[0].parent
    config_file = directory / CONFIG_FILE
    ct2_config = _read_json(config_file, dict, "JSON", "a JSON object") if config_file.is_file() else {}
    vocabulary = read_vocabulary(directory)
    config = _config_from_container(container, ct2_config, source.label)
    if vocabulary is not None and len(vocabulary) != config.vocab_size:
        raise CheckpointError(
            f"{directory} has a vocabulary of {len(vocabulary)} tokens; the embeddings of {source.label} have "
            f"{config.vocab_size} rows"
        )
    links = ct2_links(config)
    _check_variables_known(container, links)
    _check_projection_tied(container)
    _check_architecture_flags(container)
    stored, source_dtype = _tensors_from_container(container, links)
    check_state_dict(config, {name: value.raw for name, value in stored.items()}, source.label)
    tensors = LazyArrays(  # the table's (state-dict) order
        {
            name: partial(_decode, stored[name], _decoded_dtype(stored[name], dtype))
            for name in canonical_parameters(config)
        }
    )
    if source_dtype.startswith("int"):
        warnings.warn(
            f"{source.label} stores {source_dtype}-quantized weights; they were dequantized and only approximate "
            "the original weights (differences up to half a quantization step)",
            UserWarning,
            stacklevel=2,
        )
    return CT2Model(
        config=config,
        tensors=tensors,
        alignment_heads=[(int(layer), int(head)) for layer, head in ct2_config.get("alignment_heads") or []],
        suppress_ids=list(ct2_config.get("suppress_ids") or []),
        suppress_ids_begin=list(ct2_config.get("suppress_ids_begin") or []),
        lang_ids=list(ct2_config.get("lang_ids") or []),
        vocabulary=vocabulary,
        source_dtype=source_dtype,
        source=source.label,
    )


# --- configuration from the tensors -------------------------------------------------------------------------------
def _count_layers(container: Container, stack: str) -> int:
    count = 0
    while f"{stack}/layer_{count}/ffn/linear_0/weight" in container.variables:
        count += 1
    return count


def _required_shape(container: Container, name: str) -> tuple[int, ...]:
    variable = container.variables.get(name)
    if variable is None:
        raise CheckpointError(f"{container.label} has no {name}; expected a complete {SPEC_NAME} model")
    return variable.shape


def _required_scalar(container: Container, name: str) -> int:
    value = _scalar(container, name)
    if value is None:
        raise CheckpointError(f"{container.label} has no {name}; expected a complete {SPEC_NAME} model")
    return value


def _dimensions(container: Container) -> dict[str, Any]:
    """Architecture fields read off the tensor shapes and the scalar variables."""
    d_model, num_mel_bins, _ = _required_shape(container, "encoder/conv1/weight")
    activation_id = _scalar(container, "decoder/activation")
    return {
        "d_model": d_model,
        "num_mel_bins": num_mel_bins,
        "encoder_layers": _count_layers(container, "encoder"),
        "decoder_layers": _count_layers(container, "decoder"),
        "encoder_attention_heads": _required_scalar(container, "encoder/num_heads"),
        "decoder_attention_heads": _required_scalar(container, "decoder/num_heads"),
        "encoder_ffn_dim": _required_shape(container, "encoder/layer_0/ffn/linear_0/weight")[0],
        "decoder_ffn_dim": _required_shape(container, "decoder/layer_0/ffn/linear_0/weight")[0],
        "vocab_size": _required_shape(container, EMBEDDINGS)[0],
        "max_source_positions": _required_shape(container, "encoder/position_encodings/encodings")[0],
        "max_target_positions": _required_shape(container, "decoder/position_encodings/encodings")[0],
        "activation_function": ACTIVATION_NAMES.get(activation_id, "gelu") if activation_id is not None else "gelu",
        "scale_embedding": bool(_scalar(container, "decoder/scale_embeddings") or 0),
    }


def matching_preset(fields: Mapping[str, Any]) -> str | None:
    for name in PRESETS:
        preset = WhisperConfig.from_preset(name)
        if all(getattr(preset, key) == value for key, value in fields.items()):
            return name
    return None


def special_token_fields(vocab_size: int) -> dict[str, Any]:
    try:
        special = special_tokens_for_vocab(vocab_size)
    except TokenizerError:
        # Not a published Whisper vocabulary: the special ids are unknown, leave them unset.
        return {"decoder_start_token_id": None, "bos_token_id": None, "eos_token_id": None, "pad_token_id": None,
                "begin_suppress_tokens": None}  # fmt: skip
    return {
        "decoder_start_token_id": special.sot,
        "bos_token_id": special.eot if special.is_multilingual else special.sot,
        "eos_token_id": special.eot,
        "pad_token_id": special.eot,
        "begin_suppress_tokens": [220, special.eot],
    }


def _config_from_container(container: Container, ct2_config: Mapping[str, Any], label: str) -> WhisperConfig:
    fields = _dimensions(container)
    generation: dict[str, Any] = {}
    if ct2_config.get("suppress_ids") is not None:
        generation["suppress_tokens"] = list(ct2_config["suppress_ids"])
    if ct2_config.get("suppress_ids_begin") is not None:
        generation["begin_suppress_tokens"] = list(ct2_config["suppress_ids_begin"])
    try:
        preset = matching_preset(fields)
        if preset is not None:
            return WhisperConfig.from_preset(preset, **generation)
        # A CTranslate2 Whisper model is always the speech-to-text model with its language-model head.
        architecture = {"architectures": ["WhisperForConditionalGeneration"]}
        return WhisperConfig(**{**special_token_fields(fields["vocab_size"]), **architecture, **fields, **generation})
    except ValueError as error:
        raise CheckpointError(f"{label}: the model's dimensions make no valid WhisperConfig: {error}") from error
