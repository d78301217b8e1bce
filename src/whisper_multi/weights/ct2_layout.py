"""CTranslate2's Whisper model directory (``model.bin`` + ``config.json`` + vocabulary), as faster-whisper uses it:
its constants and the map from CTranslate2 variables to canonical names.

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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from functools import partial
from typing import NamedTuple

import numpy as np

from whisper_multi.configuration import WhisperConfig

MODEL_FILE = "model.bin"
CONFIG_FILE = "config.json"
VOCABULARY_FILES = ("vocabulary.json", "vocabulary.txt")  # the order CTranslate2 looks for them
SPEC_NAME = "WhisperSpec"
READ_BINARY_VERSIONS = (4, 5, 6)  # version 4 introduced dtype ids; older files predate Whisper support
WRITTEN_BINARY_VERSION = 6
SPEC_REVISION = 3  # WhisperSpec revision written, and the newest read
WRITE_DTYPES = ("float32", "float16", "int8")

# CTranslate2 dtype id -> numpy dtype name. bfloat16 has no numpy dtype: it is read as raw uint16.
DTYPE_IDS = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
ITEM_SIZES = {"float32": 4, "int8": 1, "int16": 2, "int32": 4, "float16": 2, "bfloat16": 2}
MAX_RANK = 8  # far above any Whisper tensor; a larger rank means a corrupt header

# CTranslate2's activation enum (common_spec.Activation) <-> Transformers' activation_function.
ACTIVATION_IDS = {"relu": 0, "gelu_pytorch_tanh": 1, "gelu_new": 1, "gelu_fast": 1, "silu": 2, "swish": 2,
                   "gelu": 3, "quick_gelu": 4, "tanh": 5}  # fmt: skip
ACTIVATION_NAMES = {0: "relu", 1: "gelu_pytorch_tanh", 2: "silu", 3: "gelu", 4: "quick_gelu", 5: "tanh"}

PROJECTION = "decoder/projection/weight"
EMBEDDINGS = "decoder/embeddings/weight"


class LazyArrays(MutableMapping[str, np.ndarray]):
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
        Link(EMBEDDINGS, ("model.decoder.embed_tokens.weight",)),
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
