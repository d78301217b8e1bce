"""Read and write CTranslate2 Whisper models (``model.bin`` + ``config.json`` + vocabulary), as faster-whisper uses.

The binary format, all integers little-endian::

    uint32 binary_version                      (this module reads 4 to 6 and writes 6)
    string spec_name                           ("WhisperSpec")
    uint32 spec_revision
    uint32 num_variables
    num_variables times:
        string name, uint8 rank, uint32 dims[rank], uint8 dtype id, uint32 num_bytes, bytes data
    uint32 num_aliases
    num_aliases times: string alias, string target

where a string is a uint16 length (terminating NUL included), the UTF-8 bytes and a NUL. The dtype ids are
float32, int8, int16, int32, float16, bfloat16 (0 ... 5). Quantized weights carry a sibling ``weight_scale``:
int8 weights are ``round(w * scale)`` with one scale per output row, int16 weights one scale for the tensor.

CTranslate2 fuses Whisper's attention projections: self-attention stores ``[q; k; v]`` in ``linear_0`` (with a
zero key bias, since Whisper's key projection has none), cross-attention stores ``q`` in ``linear_0`` and
``[k; v]`` in ``linear_1``. ``ct2_links`` lists how each CTranslate2 variable maps to canonical names.

Reading maps the file and hands out its tensors one at a time: a tensor stored as asked for is a view of the
mapped file (copy-on-write, never written back), one that needs converting is converted when it is asked for.
Writing makes and writes one variable at a time. Either way, a conversion holds about one file's worth of memory.

No framework is imported here: ``ctranslate2`` itself is not needed to read or write.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from whisper_multi.configuration import PRESETS, WhisperConfig
from whisper_multi.errors import CheckpointError, TokenizerError
from whisper_multi.text.special_tokens import special_tokens_for_vocab
from whisper_multi.weights.table import TIED_PARAMETERS, canonical_parameters, check_state_dict

MODEL_FILE = "model.bin"
CONFIG_FILE = "config.json"
VOCABULARY_FILES = ("vocabulary.json", "vocabulary.txt")  # the order CTranslate2 looks for them
SPEC_NAME = "WhisperSpec"
READ_BINARY_VERSIONS = (4, 5, 6)  # version 4 introduced dtype ids; older files predate Whisper support
WRITTEN_BINARY_VERSION = 6
SPEC_REVISION = 3  # WhisperSpec revision written, and the newest read
WRITE_DTYPES = ("float32", "float16", "int8")

# CTranslate2 dtype id -> numpy dtype name. bfloat16 has no numpy dtype: it is read as raw uint16.
_DTYPE_IDS = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_ITEM_SIZES = {"float32": 4, "int8": 1, "int16": 2, "int32": 4, "float16": 2, "bfloat16": 2}
_MAX_RANK = 8  # far above any Whisper tensor; a larger rank means a corrupt header

# CTranslate2's activation enum (common_spec.Activation) <-> Transformers' activation_function.
_ACTIVATION_IDS = {"relu": 0, "gelu_pytorch_tanh": 1, "gelu_new": 1, "gelu_fast": 1, "silu": 2, "swish": 2,
                   "gelu": 3, "quick_gelu": 4, "tanh": 5}  # fmt: skip
_ACTIVATION_NAMES = {0: "relu", 1: "gelu_pytorch_tanh", 2: "silu", 3: "gelu", 4: "quick_gelu", 5: "tanh"}

_PROJECTION = "decoder/projection/weight"
_EMBEDDINGS = "decoder/embeddings/weight"
_COMPARE_BYTES = 1 << 24  # the tied-projection check compares this much at a time


class _LazyArrays(MutableMapping[str, np.ndarray]):
    """Name -> array, each array made by its own function when asked for and not kept.

    A consumer that takes the arrays one at a time (every writer here does) holds one of them at a time. An
    array that needs no converting comes back as the same view each time; a converted one is made afresh, so
    changing it in place changes only that copy. Assigning an array stores it as it is.
    """

    def __init__(self, makers: Mapping[str, Callable[[], np.ndarray]] | None = None) -> None:
        self._makers: dict[str, Callable[[], np.ndarray]] = dict(makers or {})

    def __getitem__(self, name: str) -> np.ndarray:
        return self._makers[name]()

    def __setitem__(self, name: str, array: np.ndarray) -> None:
        self._makers[name] = partial(_same, array)

    def __delitem__(self, name: str) -> None:
        del self._makers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} arrays, made when asked for)"


def _same(array: np.ndarray) -> np.ndarray:
    return array


@dataclass
class CT2Model:
    """A CTranslate2 Whisper model in canonical form, plus what ``generate`` needs from its ``config.json``.

    ``tensors`` makes each tensor when it is asked for (see ``_LazyArrays``), so reading costs no memory up front.
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


# --- name mapping -------------------------------------------------------------------------------------------------
class Link(NamedTuple):
    """A CTranslate2 variable and the canonical tensors it holds, concatenated along axis 0.

    An empty part stands for a tensor Whisper does not have (the key bias): zeros when writing, dropped on read.
    """

    ct2: str
    parts: tuple[str, ...]


def _linear_links(ct2: str, canonical: Sequence[str]) -> list[Link]:
    # Whisper's k_proj has no bias; its slot in a fused bias is empty.
    biases = tuple("" if name.endswith(".k_proj") else f"{name}.bias" for name in canonical)
    return [Link(f"{ct2}/weight", tuple(f"{name}.weight" for name in canonical)), Link(f"{ct2}/bias", biases)]


def _norm_links(ct2: str, canonical: str) -> list[Link]:
    return [Link(f"{ct2}/gamma", (f"{canonical}.weight",)), Link(f"{ct2}/beta", (f"{canonical}.bias",))]


def _ffn_links(ct2: str, canonical: str) -> list[Link]:
    return [
        *_linear_links(f"{ct2}/ffn/linear_0", [f"{canonical}.fc1"]),
        *_linear_links(f"{ct2}/ffn/linear_1", [f"{canonical}.fc2"]),
        *_norm_links(f"{ct2}/ffn/layer_norm", f"{canonical}.final_layer_norm"),
    ]


def _self_attention_links(ct2: str, canonical: str) -> list[Link]:
    qkv = [f"{canonical}.{p}" for p in ("q_proj", "k_proj", "v_proj")]
    return [
        *_linear_links(f"{ct2}/linear_0", qkv),
        *_linear_links(f"{ct2}/linear_1", [f"{canonical}.out_proj"]),
    ]


def _cross_attention_links(ct2: str, canonical: str) -> list[Link]:
    return [
        *_linear_links(f"{ct2}/linear_0", [f"{canonical}.q_proj"]),
        *_linear_links(f"{ct2}/linear_1", [f"{canonical}.k_proj", f"{canonical}.v_proj"]),
        *_linear_links(f"{ct2}/linear_2", [f"{canonical}.out_proj"]),
    ]


def ct2_links(config: WhisperConfig) -> list[Link]:
    """Every CTranslate2 tensor variable of a Whisper model and the canonical names it holds (table order)."""
    links = [
        *_linear_links("encoder/conv1", ["model.encoder.conv1"]),
        *_linear_links("encoder/conv2", ["model.encoder.conv2"]),
        Link("encoder/position_encodings/encodings", ("model.encoder.embed_positions.weight",)),
    ]
    for i in range(config.encoder_layers):
        ct2, canonical = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        links += _self_attention_links(f"{ct2}/self_attention", f"{canonical}.self_attn")
        links += _norm_links(f"{ct2}/self_attention/layer_norm", f"{canonical}.self_attn_layer_norm")
        links += _ffn_links(ct2, canonical)
    links += _norm_links("encoder/layer_norm", "model.encoder.layer_norm")
    links += [
        Link(_EMBEDDINGS, ("model.decoder.embed_tokens.weight",)),
        Link("decoder/position_encodings/encodings", ("model.decoder.embed_positions.weight",)),
    ]
    for i in range(config.decoder_layers):
        ct2, canonical = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        links += _self_attention_links(f"{ct2}/self_attention", f"{canonical}.self_attn")
        links += _norm_links(f"{ct2}/self_attention/layer_norm", f"{canonical}.self_attn_layer_norm")
        links += _cross_attention_links(f"{ct2}/attention", f"{canonical}.encoder_attn")
        links += _norm_links(f"{ct2}/attention/layer_norm", f"{canonical}.encoder_attn_layer_norm")
        links += _ffn_links(ct2, canonical)
    links += _norm_links("decoder/layer_norm", "model.decoder.layer_norm")
    return links


# --- the byte source ----------------------------------------------------------------------------------------------
class _ByteSource:
    """One logical file made of one or more parts (a split model.bin), memory-mapped, never written.

    A read inside one part is a zero-copy view; only a tensor that straddles two parts is copied. The maps are
    copy-on-write: the arrays handed out are writable like ordinary arrays, and writing one never reaches the file.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.label = " + ".join(str(path) for path in paths)
        self._maps: list[mmap.mmap | bytearray] = []
        self._starts: list[int] = []
        self.size = 0
        for path in paths:
            self._starts.append(self.size)
            self._maps.append(_map_file(path))
            self.size += len(self._maps[-1])

    def view(self, offset: int, length: int) -> memoryview:
        """Bytes [offset, offset + length); the caller has checked the range lies inside the file."""
        pieces = []
        for start, data in zip(self._starts, self._maps):
            lo, hi = max(offset, start), min(offset + length, start + len(data))
            if lo < hi:
                pieces.append(memoryview(data)[lo - start : hi - start])
        if len(pieces) == 1:
            return pieces[0]
        return memoryview(bytearray().join(pieces))


def _map_file(path: Path) -> mmap.mmap | bytearray:
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                return bytearray()  # mmap refuses empty files
            return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error.strerror or error}") from error


class _Cursor:
    """Sequential reader of the header fields, checking every length against what is left in the file."""

    def __init__(self, source: _ByteSource) -> None:
        self.source = source
        self.position = 0

    def take(self, length: int, what: str) -> memoryview:
        left = self.source.size - self.position
        if length > left:
            raise CheckpointError(
                f"{self.source.label} is truncated or corrupt: {what} at byte {self.position} needs {length} bytes, "
                f"only {left} remain; expected a complete CTranslate2 model.bin"
            )
        data = self.source.view(self.position, length)
        self.position += length
        return data

    def unpack(self, fmt: str, what: str) -> int:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        length = self.unpack("<H", f"length of {what}")
        raw = bytes(self.take(length, what))
        if not raw.endswith(b"\0"):
            raise CheckpointError(f"{self.source.label}: {what} at byte {self.position - length} is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as error:
            raise CheckpointError(f"{self.source.label}: {what} is not UTF-8 ({error.reason})") from error


class _Variable(NamedTuple):
    shape: tuple[int, ...]
    dtype: str
    data: memoryview


@dataclass
class _Container:
    label: str
    version: int
    spec: str
    revision: int
    variables: dict[str, _Variable]
    aliases: dict[str, str]


def _read_header(cursor: _Cursor) -> tuple[int, str, int]:
    label = cursor.source.label
    version = cursor.unpack("<I", "binary version")
    if version not in READ_BINARY_VERSIONS:
        raise CheckpointError(
            f"{label} has CTranslate2 binary version {version}; expected one of "
            f"{', '.join(map(str, READ_BINARY_VERSIONS))} (is this a CTranslate2 model.bin?)"
        )
    spec = cursor.string("spec name")
    revision = cursor.unpack("<I", "spec revision")
    if spec != SPEC_NAME:
        raise CheckpointError(f"{label} holds a CTranslate2 {spec!r} model; expected {SPEC_NAME!r}")
    if not 1 <= revision <= SPEC_REVISION:
        raise CheckpointError(f"{label} has {SPEC_NAME} revision {revision}; this reader knows 1 to {SPEC_REVISION}")
    return version, spec, revision


def _read_variable(cursor: _Cursor) -> tuple[str, _Variable]:
    name = cursor.string("variable name")
    rank = cursor.unpack("<B", f"rank of {name}")
    if rank > _MAX_RANK:
        raise CheckpointError(f"{cursor.source.label}: {name} declares rank {rank}; expected at most {_MAX_RANK}")
    shape = tuple(cursor.unpack("<I", f"dimension of {name}") for _ in range(rank))
    dtype_id = cursor.unpack("<B", f"dtype of {name}")
    if dtype_id >= len(_DTYPE_IDS):
        raise CheckpointError(
            f"{cursor.source.label}: {name} has dtype id {dtype_id}; expected 0 to {len(_DTYPE_IDS) - 1} "
            f"({', '.join(_DTYPE_IDS)})"
        )
    dtype = _DTYPE_IDS[dtype_id]
    num_bytes = cursor.unpack("<I", f"size of {name}")
    expected = math.prod(shape) * _ITEM_SIZES[dtype]
    if num_bytes != expected:
        raise CheckpointError(
            f"{cursor.source.label}: {name} declares {num_bytes} bytes; its shape {shape} of {dtype} needs {expected}"
        )
    return name, _Variable(shape, dtype, cursor.take(num_bytes, f"data of {name}"))


def _read_container(source: _ByteSource) -> _Container:
    cursor = _Cursor(source)
    version, spec, revision = _read_header(cursor)
    variables = {}
    for _ in range(cursor.unpack("<I", "variable count")):
        name, variable = _read_variable(cursor)
        variables[name] = variable
    aliases = {}
    for _ in range(cursor.unpack("<I", "alias count")):
        alias = cursor.string("alias name")
        aliases[alias] = cursor.string(f"target of alias {alias}")
    if cursor.position != source.size:
        raise CheckpointError(
            f"{source.label} has {source.size - cursor.position} bytes after the last alias; expected the file to "
            "end there (a wrong or corrupt file?)"
        )
    return _Container(source.label, version, spec, revision, variables, aliases)


# --- decoding values ----------------------------------------------------------------------------------------------
def _raw_array(variable: _Variable) -> np.ndarray:
    """The stored values as numpy, without copying; bfloat16 comes back as its uint16 bit patterns."""
    numpy_dtype = "<u2" if variable.dtype == "bfloat16" else np.dtype(variable.dtype).newbyteorder("<")
    return np.frombuffer(variable.data, dtype=numpy_dtype).reshape(variable.shape)


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    # bfloat16 is the upper half of a float32: shifting the bits back up is exact.
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _as_float(variable: _Variable) -> np.ndarray:
    array = _raw_array(variable)
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


def _scalar(container: _Container, name: str) -> int | None:
    variable = container.variables.get(name)
    return None if variable is None else int(_raw_array(variable).item())


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


def _read_json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"cannot read {path} as JSON: {error}") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


def read_vocabulary(directory: Path) -> list[str] | None:
    """The token list of a CTranslate2 model directory (vocabulary.json or vocabulary.txt), or None."""
    json_file, text_file = (directory / name for name in VOCABULARY_FILES)
    if json_file.is_file():
        try:
            tokens = json.loads(json_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CheckpointError(f"cannot read {json_file} as a JSON list of tokens: {error}") from error
        if not isinstance(tokens, list):
            raise CheckpointError(f"{json_file} must hold a JSON list of tokens, found {type(tokens).__name__}")
        return [str(token) for token in tokens]
    if text_file.is_file():
        lines = text_file.read_text(encoding="utf-8").split("\n")
        return lines[:-1] if lines and lines[-1] == "" else lines
    return None


def _tensors_from_container(container: _Container, links: list[Link]) -> tuple[dict[str, _Stored], str]:
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


def _stored_value(container: _Container, name: str, variable: _Variable) -> _Stored:
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
        return _Stored(_raw_array(variable), variable.dtype, factors)
    if variable.dtype in ("float32", "float16", "bfloat16"):
        return _Stored(_raw_array(variable), variable.dtype, None)
    raise CheckpointError(
        f"{container.label}: {name} is {variable.dtype} without a {name}_scale; expected a float "
        "tensor or a quantized one with its scale"
    )


def _split(container: _Container, link: Link, stored: _Stored) -> dict[str, _Stored]:
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


def _check_variables_known(container: _Container, links: list[Link]) -> None:
    known = {link.ct2 for link in links} | {f"{link.ct2}_scale" for link in links}
    unknown = sorted(
        name
        for name, variable in container.variables.items()
        if name not in known and variable.shape and name != _PROJECTION
    )
    if unknown:
        raise CheckpointError(
            f"{container.label} has tensors a Whisper model does not: {', '.join(unknown[:10])}"
            f"{' ...' if len(unknown) > 10 else ''}; expected only the {SPEC_NAME} variables (an unsupported "
            "quantization such as AWQ, or a different architecture?)"
        )


def _check_projection_tied(container: _Container) -> None:
    """Whisper's output projection is the token embedding; CT2 stores it as an alias or as an identical copy."""
    label = container.label
    target = container.aliases.get(_PROJECTION)
    if target is not None:
        if target != _EMBEDDINGS:
            raise CheckpointError(f"{label}: {_PROJECTION} is an alias of {target}; expected {_EMBEDDINGS}")
        return
    projection = container.variables.get(_PROJECTION)
    embeddings = container.variables.get(_EMBEDDINGS)
    if projection is None or embeddings is None:
        return  # a missing embedding is reported with the other missing names
    if projection.shape != embeddings.shape or not _same_bytes(projection.data, embeddings.data):
        raise CheckpointError(
            f"{label}: {_PROJECTION} differs from {_EMBEDDINGS}; expected them tied as in every Whisper model "
            f"({next(iter(TIED_PARAMETERS))} is {TIED_PARAMETERS['proj_out.weight']})"
        )


def _same_bytes(first: memoryview, second: memoryview) -> bool:
    # A slice at a time: copying both whole would hold two extra copies of the largest tensor.
    if len(first) != len(second):
        return False
    a, b, step = np.frombuffer(first, np.uint8), np.frombuffer(second, np.uint8), _COMPARE_BYTES
    return all(np.array_equal(a[at : at + step], b[at : at + step]) for at in range(0, len(a), step))


def _check_architecture_flags(container: _Container) -> None:
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
    source = _ByteSource(files)
    container = _read_container(source)
    directory = files[0].parent
    ct2_config = _read_json_file(directory / CONFIG_FILE) if (directory / CONFIG_FILE).is_file() else {}
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
    tensors = _LazyArrays(  # the table's (state-dict) order
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
def _count_layers(container: _Container, stack: str) -> int:
    count = 0
    while f"{stack}/layer_{count}/ffn/linear_0/weight" in container.variables:
        count += 1
    return count


def _required_shape(container: _Container, name: str) -> tuple[int, ...]:
    variable = container.variables.get(name)
    if variable is None:
        raise CheckpointError(f"{container.label} has no {name}; expected a complete {SPEC_NAME} model")
    return variable.shape


def _required_scalar(container: _Container, name: str) -> int:
    value = _scalar(container, name)
    if value is None:
        raise CheckpointError(f"{container.label} has no {name}; expected a complete {SPEC_NAME} model")
    return value


def _dimensions(container: _Container) -> dict[str, Any]:
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
        "vocab_size": _required_shape(container, _EMBEDDINGS)[0],
        "max_source_positions": _required_shape(container, "encoder/position_encodings/encodings")[0],
        "max_target_positions": _required_shape(container, "decoder/position_encodings/encodings")[0],
        "activation_function": _ACTIVATION_NAMES.get(activation_id, "gelu") if activation_id is not None else "gelu",
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


def _config_from_container(container: _Container, ct2_config: Mapping[str, Any], label: str) -> WhisperConfig:
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


# --- writing ------------------------------------------------------------------------------------------------------
def _write_string(file: BinaryIO, text: str) -> None:
    raw = text.encode("utf-8") + b"\0"
    file.write(struct.pack("<H", len(raw)))
    file.write(raw)


def _write_variable(file: BinaryIO, name: str, array: np.ndarray) -> None:
    if array.nbytes >= 2**32:
        raise CheckpointError(f"{name} has {array.nbytes} bytes; a CTranslate2 variable holds less than 4 GiB")
    _write_string(file, name)
    file.write(
        struct.pack(f"<B{array.ndim}IBI", array.ndim, *array.shape, _DTYPE_IDS.index(array.dtype.name), array.nbytes)
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


def _ct2_variables(config: WhisperConfig, tensors: Mapping[str, Any], dtype: str) -> _LazyArrays:
    """Every variable of the model.bin, each fused (and cast or quantized) only when the writer reaches it."""
    float_dtype = np.float16 if dtype == "float16" else np.float32
    makers: dict[str, Callable[[], np.ndarray]] = {}
    for link in ct2_links(config):
        if dtype == "int8" and _quantized_by_ct2(link.ct2):
            quantized = _Int8Variable(link, tensors)
            makers[link.ct2], makers[f"{link.ct2}_scale"] = quantized.weight, quantized.scale
        else:
            makers[link.ct2] = partial(_float_variable, link, tensors, float_dtype)
    variables = _LazyArrays(makers)
    variables.update(_scalar_variables(config))
    return variables


def _scalar_variables(config: WhisperConfig) -> dict[str, np.ndarray]:
    if config.activation_function not in _ACTIVATION_IDS:
        raise CheckpointError(f"activation_function {config.activation_function!r} has no CTranslate2 equivalent")
    return {
        "decoder/activation": np.array(_ACTIVATION_IDS[config.activation_function], dtype=np.int8),
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
    aliases = {_PROJECTION: _EMBEDDINGS}
    if dtype == "int8":
        # The projection shares the quantized embedding, so it must share its scale too, or CTranslate2 multiplies
        # by the raw int8 values.
        aliases[f"{_PROJECTION}_scale"] = f"{_EMBEDDINGS}_scale"
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
