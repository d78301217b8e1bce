"""Transformers' Flax weights: ``flax_model.msgpack`` (or its shards), read and written with msgpack alone (no JAX
or Flax), as ``flax.serialization`` lays them out.

The file is one msgpack map, nested by module, whose leaves are Flax's ndarray ext (shape, dtype name, raw bytes).
Reading maps the file and hands out each array as a view of it; writing streams each array from its own buffer.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import CheckpointError
from whisper_multi.weights import hf_files
from whisper_multi.weights.hf_files import DEFAULT_MAX_SHARD_SIZE, FLAX_WEIGHTS_NAME, PathArg, TensorMap, Tensors
from whisper_multi.weights.table import framework_names, to_framework_layout

FLAX_NDARRAY_EXT = 1  # flax.serialization's msgpack ext type code for an ndarray
_FLAX_CHUNKED = "__msgpack_chunked_array__"
_MAX_MSGPACK_BUFFER = 2**32 - 1  # one msgpack ext holds less than 4 GiB


def _numpy_dtype(name: str, path: Path) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    try:
        dtype = np.dtype(name)
    except TypeError as error:
        raise CheckpointError(f"{path}: an array has dtype {name!r}, which numpy does not know") from error
    if dtype.kind not in "fiub":
        raise CheckpointError(f"{path}: an array has dtype {name!r}; expected a numeric dtype")
    return dtype


# msgpack markers read by hand: the ext and bin headers around array data, which the msgpack library would copy.
_MAP_MARKERS = {0xDE, 0xDF} | set(range(0x80, 0x90))  # fixmap, map16, map32
_FIXEXT_SIZES = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}  # fixext N: the payload size is in the marker
_EXT_LENGTHS = {0xC7: ">B", 0xC8: ">H", 0xC9: ">I"}  # ext 8/16/32: the payload size follows the marker
_BIN_LENGTHS = {0xC4: ">B", 0xC5: ">H", 0xC6: ">I"}  # bin 8/16/32
_FIRST_WINDOW = 256  # bytes handed to msgpack for one key or scalar; grown when an object is longer


class _MsgpackWalk:
    """A reading position in a memory-mapped msgpack file.

    Keys, map headers and scalars are decoded by msgpack from a small window of the file. The ext objects holding
    Flax arrays are parsed here instead: msgpack would gather each payload into its own buffer (a copy of the
    largest tensor), while the array only needs to know where its bytes lie in the map.
    """

    def __init__(self, mapped: mmap.mmap, path: Path) -> None:
        self.mapped, self.path, self.position = mapped, path, 0

    def marker(self) -> int:
        return self.mapped[self.position]

    def decode(self, read: Callable[[Any], Any]) -> Any:
        """``read(unpacker)`` on the bytes from here on, moving past what it consumed."""
        import msgpack

        window = _FIRST_WINDOW
        while True:
            unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=_MAX_MSGPACK_BUFFER)
            unpacker.feed(self.mapped[self.position : self.position + window])
            try:
                value = read(unpacker)
            except msgpack.OutOfData:
                if self.position + window >= len(self.mapped):
                    raise self.truncated("an object") from None
                window *= 16
                continue
            self.position += unpacker.tell()
            return value

    def take(self, length: int, what: str) -> int:
        """Move past ``length`` bytes; return where they start."""
        if self.position + length > len(self.mapped):
            raise self.truncated(what)
        start, self.position = self.position, self.position + length
        return start

    def length(self, fmt: str, what: str) -> int:
        return int(struct.unpack_from(fmt, self.mapped, self.take(struct.calcsize(fmt), what))[0])

    def truncated(self, what: str) -> CheckpointError:
        return CheckpointError(
            f"{self.path} is not a valid Flax msgpack file (truncated or corrupt?): {what} at byte {self.position} "
            f"would end past the end of the file ({len(self.mapped)} bytes)"
        )


def _read_ext(walk: _MsgpackWalk, name: str) -> np.ndarray:
    """A Flax ndarray ext as a read-only view of the mapped file: ``(shape, dtype name, raw bytes)`` in msgpack."""
    marker = walk.mapped[walk.take(1, f"the header of {name}")]
    size = _FIXEXT_SIZES.get(marker)
    if size is None:
        size = walk.length(_EXT_LENGTHS[marker], f"the size of {name}")
    code = struct.unpack_from(">b", walk.mapped, walk.take(1, f"the ext type of {name}"))[0]
    end = walk.position + size
    if end > len(walk.mapped):
        raise walk.truncated(f"the {size} bytes of {name}")
    if code != FLAX_NDARRAY_EXT:
        raise CheckpointError(f"{walk.path}: {name} is a msgpack ext of type {code}; expected a Flax array or a map")
    if walk.decode(lambda unpacker: unpacker.read_array_header()) != 3:
        raise CheckpointError(f"{walk.path}: {name} is not a Flax array (shape, dtype, data)")
    shape = tuple(int(dim) for dim in walk.decode(lambda unpacker: unpacker.unpack()))
    dtype = _numpy_dtype(str(walk.decode(lambda unpacker: unpacker.unpack())), walk.path)
    bin_marker = walk.mapped[walk.take(1, f"the data header of {name}")]
    if bin_marker not in _BIN_LENGTHS:
        raise CheckpointError(f"{walk.path}: the data of {name} is not msgpack bin (marker {bin_marker:#x})")
    nbytes = walk.length(_BIN_LENGTHS[bin_marker], f"the data size of {name}")
    count = math.prod(shape)
    if nbytes != count * dtype.itemsize or walk.position + nbytes != end:
        raise CheckpointError(
            f"{walk.path}: {name} holds {nbytes} data bytes in an ext of {size}; its shape {shape} of {dtype.name} "
            f"needs {count * dtype.itemsize}"
        )
    offset = walk.take(nbytes, f"the data of {name}")
    return np.frombuffer(walk.mapped, dtype=dtype, count=count, offset=offset).reshape(shape)


def _read_msgpack_node(walk: _MsgpackWalk, where: str) -> dict[str, Any]:
    """One map of the tree, recursively; array leaves become read-only views of the mapped file."""
    node: dict[str, Any] = {}
    for _ in range(walk.decode(lambda unpacker: unpacker.read_map_header())):
        key = str(walk.decode(lambda unpacker: unpacker.unpack()))
        name = f"{where}/{key}" if where else key
        marker = walk.marker()
        if marker in _MAP_MARKERS:
            node[key] = _read_msgpack_node(walk, name)
            if node[key].get(_FLAX_CHUNKED):
                node[key] = _unchunk(node[key], walk.path, name)
            continue
        if marker in _FIXEXT_SIZES or marker in _EXT_LENGTHS:
            node[key] = _read_ext(walk, name)
            continue
        leaf = walk.decode(lambda unpacker: unpacker.unpack())
        if not isinstance(leaf, (bool, int, float)):
            raise CheckpointError(f"{walk.path}: {name} is a {type(leaf).__name__}; expected a Flax array or a map")
        node[key] = leaf
    return node


def _unchunk(node: dict[str, Any], path: Path, name: str) -> np.ndarray:
    """Flax splits arrays over 1 GiB into numbered chunks of the flattened array; join them (a copy)."""
    try:
        shape = tuple(int(node["shape"][str(i)]) for i in range(len(node["shape"])))
        chunks = [np.asarray(node["chunks"][str(i)]).reshape(-1) for i in range(len(node["chunks"]))]
        return np.concatenate(chunks).reshape(shape)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: {name} is a malformed chunked Flax array: {error}") from error


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else key
        if isinstance(value, Mapping):
            yield from _flatten(value, name)
        else:
            yield name, value


def read_msgpack_tree(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of a Flax msgpack file, flattened to ``a/b/c`` names, as views of the memory-mapped file."""
    import msgpack

    path = Path(path)
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                raise CheckpointError(f"{path} is empty; expected a Flax msgpack file")
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        walk = _MsgpackWalk(mapped, path)
        tree = _read_msgpack_node(walk, "")
        if walk.position != len(mapped):
            raise CheckpointError(
                f"{path} has {len(mapped) - walk.position} bytes after its tree; expected one msgpack map"
            )
    except (msgpack.exceptions.UnpackException, ValueError, IndexError, TypeError, OverflowError, struct.error) as error:  # fmt: skip
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"{path} is not a valid Flax msgpack file (truncated or corrupt?): {error}") from error
    flat = dict(_flatten(tree))
    strays = [name for name, value in flat.items() if not isinstance(value, np.ndarray)]
    if strays:
        raise CheckpointError(f"{path}: {', '.join(strays[:10])} are not arrays; expected a tree of Flax arrays")
    return flat


def read_flax(directory: PathArg, config: WhisperConfig) -> Tensors:
    """Canonical tensors from ``flax_model.msgpack`` (or its shards), read with msgpack only, memory-mapped."""
    return hf_files.read_canonical(
        directory, FLAX_WEIGHTS_NAME, "flax", config, lambda path: read_msgpack_tree(path).items()
    )


def _bin_header(size: int) -> bytes:
    if size < 2**8:
        return struct.pack(">BB", 0xC4, size)
    if size < 2**16:
        return struct.pack(">BH", 0xC5, size)
    return struct.pack(">BI", 0xC6, size)


def _ext_header(size: int, code: int) -> bytes:
    if size < 2**8:
        return struct.pack(">BBb", 0xC7, size, code)
    if size < 2**16:
        return struct.pack(">BHb", 0xC8, size, code)
    if size < 2**32:
        return struct.pack(">BIb", 0xC9, size, code)
    raise CheckpointError(f"an array of {size} bytes does not fit one msgpack ext (less than 4 GiB)")


def _write_msgpack_array(file: Any, packer: Any, array: np.ndarray) -> None:
    """Flax's ndarray ext, written around the array's own buffer instead of a packed copy of it."""
    array = np.ascontiguousarray(array)
    inner = packer.pack_array_header(3) + packer.pack(list(array.shape)) + packer.pack(array.dtype.name)
    inner += _bin_header(array.nbytes)
    file.write(_ext_header(len(inner) + array.nbytes, FLAX_NDARRAY_EXT))
    file.write(inner)
    file.write(array.reshape(-1).view(np.uint8).data)


def _write_msgpack_tree(file: Any, packer: Any, tree: Mapping[str, Any], arrays: Callable[[str], np.ndarray]) -> None:
    file.write(packer.pack_map_header(len(tree)))
    for key, value in tree.items():
        file.write(packer.pack(key))
        if isinstance(value, Mapping):
            _write_msgpack_tree(file, packer, value, arrays)
        else:
            _write_msgpack_array(file, packer, arrays(value))


def _nest(flat_names: Mapping[str, str]) -> dict[str, Any]:
    """``{"a/b/c": leaf}`` -> ``{"a": {"b": {"c": leaf}}}``."""
    tree: dict[str, Any] = {}
    for path, leaf in flat_names.items():
        *parents, last = path.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = leaf
    return tree


def write_flax(
    directory: PathArg, config: WhisperConfig, tensors: TensorMap, max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE
) -> list[Path]:
    """Write ``flax_model.msgpack`` as ``FlaxWhisperForConditionalGeneration.save_pretrained`` does, streamed."""
    import msgpack

    specs, sizes = hf_files.tensors_to_write(config, tensors, FLAX_WEIGHTS_NAME)
    names = framework_names(config, "flax")

    def array(name: str) -> np.ndarray:
        return to_framework_layout(tensors[name], specs[name].kind, "flax")

    def write_file(path: Path, shard: list[str], sharded: bool) -> None:
        tree = _nest({names[name]: name for name in shard})
        with open(path, "wb") as file:
            _write_msgpack_tree(file, msgpack.Packer(use_bin_type=True), tree, array)

    return hf_files.write_sharded(Path(directory), FLAX_WEIGHTS_NAME, names, sizes, max_shard_size, write_file)
