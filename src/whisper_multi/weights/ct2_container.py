"""The container of a CTranslate2 ``model.bin``: its header, variables and aliases, read from a memory map.

A variable's data is handed out as a view of the mapped file; a model.bin split into several files is read as one
(see ``ct2_layout`` for the format).
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from whisper_multi.errors import CheckpointError
from whisper_multi.weights.ct2_layout import (
    DTYPE_IDS,
    ITEM_SIZES,
    MAX_RANK,
    READ_BINARY_VERSIONS,
    SPEC_NAME,
    SPEC_REVISION,
)


class ByteSource:
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

    def __init__(self, source: ByteSource) -> None:
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


class Variable(NamedTuple):
    shape: tuple[int, ...]
    dtype: str
    data: memoryview


@dataclass
class Container:
    label: str
    version: int
    spec: str
    revision: int
    variables: dict[str, Variable]
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


def _read_variable(cursor: _Cursor) -> tuple[str, Variable]:
    name = cursor.string("variable name")
    rank = cursor.unpack("<B", f"rank of {name}")
    if rank > MAX_RANK:
        raise CheckpointError(f"{cursor.source.label}: {name} declares rank {rank}; expected at most {MAX_RANK}")
    shape = tuple(cursor.unpack("<I", f"dimension of {name}") for _ in range(rank))
    dtype_id = cursor.unpack("<B", f"dtype of {name}")
    if dtype_id >= len(DTYPE_IDS):
        raise CheckpointError(
            f"{cursor.source.label}: {name} has dtype id {dtype_id}; expected 0 to {len(DTYPE_IDS) - 1} "
            f"({', '.join(DTYPE_IDS)})"
        )
    dtype = DTYPE_IDS[dtype_id]
    num_bytes = cursor.unpack("<I", f"size of {name}")
    expected = math.prod(shape) * ITEM_SIZES[dtype]
    if num_bytes != expected:
        raise CheckpointError(
            f"{cursor.source.label}: {name} declares {num_bytes} bytes; its shape {shape} of {dtype} needs {expected}"
        )
    return name, Variable(shape, dtype, cursor.take(num_bytes, f"data of {name}"))


def read_container(source: ByteSource) -> Container:
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
    return Container(source.label, version, spec, revision, variables, aliases)


def raw_array(variable: Variable) -> np.ndarray:
    """The stored values as numpy, without copying; bfloat16 comes back as its uint16 bit patterns."""
    numpy_dtype = "<u2" if variable.dtype == "bfloat16" else np.dtype(variable.dtype).newbyteorder("<")
    return np.frombuffer(variable.data, dtype=numpy_dtype).reshape(variable.shape)
