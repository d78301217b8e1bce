"""Reading and writing safetensors files and canonical checkpoint directories, with numpy only.

A canonical directory is what Transformers writes for PyTorch: ``model.safetensors``, or shards
``model-00001-of-0000N.safetensors`` listed by ``model.safetensors.index.json``. Tensors are memory-mapped on read
and streamed one at a time on write, so neither direction holds a second copy of a checkpoint in memory.

Every header is checked before any data is touched: a truncated file, a corrupted header, offsets past the end of
the file or a shard index pointing outside its directory raise CheckpointError naming the file.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from whisper_multi.errors import CheckpointError, ConfigError
from whisper_multi.hub import hub_blobs_folder

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the format's own limit
_HEADER_ALIGNMENT = 8  # data starts on an 8-byte boundary, as the reference writer pads it

_DTYPES: dict[str, str] = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}  # fmt: skip


def _numpy_dtype(code: str, path: Path) -> np.dtype:
    if code not in _DTYPES:
        raise CheckpointError(f"{path}: tensor dtype {code!r} is not supported; expected one of {', '.join(_DTYPES)}")
    if code == "BF16":
        import ml_dtypes  # numpy has no bfloat16; ml_dtypes ships with jax and tensorflow

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(_DTYPES[code])


def _dtype_code(dtype: np.dtype) -> str:
    name = np.dtype(dtype).name
    for code, numpy_name in _DTYPES.items():
        if numpy_name == name:
            return code
    raise CheckpointError(f"cannot store dtype {name} in safetensors; expected one of {', '.join(_DTYPES.values())}")


# --- one file -------------------------------------------------------------------------------------------------------
def read_header(path: str | os.PathLike[str]) -> tuple[dict[str, Any], int]:
    """The validated header of a safetensors file (name -> dtype/shape/offsets) and the offset of its data."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            prefix = file.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"{path} is truncated: {size} bytes, not even the 8-byte header length")
            header_length = int.from_bytes(prefix, "little")
            if header_length > min(MAX_HEADER_BYTES, size - 8):
                raise CheckpointError(
                    f"{path}: corrupted header: it declares {header_length} header bytes but the file has {size - 8}"
                )
            raw = file.read(header_length)
    except OSError as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: corrupted header: not valid JSON ({error})") from error
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupted header: expected a JSON object, found {type(header).__name__}")
    data_start = 8 + header_length
    _check_entries(path, header, size - data_start)
    return header, data_start


def _check_entries(path: Path, header: dict[str, Any], data_size: int) -> None:
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _numpy_dtype(entry["dtype"], path)
            shape = [int(dim) for dim in entry["shape"]]
            begin, end = (int(offset) for offset in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: corrupted header entry for {name!r}: {entry!r}") from error
        if any(dim < 0 for dim in shape):
            raise CheckpointError(f"{path}: tensor {name!r} has a negative dimension in shape {shape}")
        expected = math.prod(shape) * dtype.itemsize
        if end - begin != expected or begin < 0:
            raise CheckpointError(
                f"{path}: tensor {name!r} declares bytes {begin}..{end} but shape {shape} of {entry['dtype']} "
                f"needs {expected}"
            )
        if end > data_size:
            raise CheckpointError(
                f"{path} is truncated: tensor {name!r} ends at byte {end} of the data, which has only {data_size}"
            )
        spans.append((begin, end, name))
    spans.sort()
    for (_, end, name), (begin, _, following) in itertools.pairwise(spans):
        if begin < end:
            raise CheckpointError(f"{path}: corrupted header: tensors {name!r} and {following!r} overlap")


def open_safetensors(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every tensor of a file as a read-only memory-mapped numpy array (nothing is read until used)."""
    path = Path(path)
    header, data_start = read_header(path)
    tensors: dict[str, np.ndarray] = {}
    mapped = np.memmap(path, dtype=np.uint8, mode="r") if os.path.getsize(path) > 0 else np.zeros(0, np.uint8)
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = _numpy_dtype(entry["dtype"], path)
        raw = mapped[data_start + begin : data_start + end]
        tensors[name] = raw.view(dtype).reshape(entry["shape"])
    return tensors


def safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    header, _ = read_header(path)
    metadata = header.get("__metadata__") or {}
    return dict(metadata) if isinstance(metadata, dict) else {}


def write_safetensors(
    path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``tensors`` to ``path`` through a temporary file, one tensor at a time (no copy of the whole set)."""
    path = Path(path)
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(key): str(value) for key, value in metadata.items()}
    offset = 0
    for name, array in tensors.items():
        array = np.asarray(array)
        header[name] = {
            "dtype": _dtype_code(array.dtype),
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % _HEADER_ALIGNMENT)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as file:
            file.write(len(encoded).to_bytes(8, "little"))
            file.write(encoded)
            for array in tensors.values():
                # A byte view of the (memory-mapped) array: no copy of the tensor is made to write it.
                file.write(_byte_view(array))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _byte_view(array: np.ndarray) -> memoryview:
    contiguous = np.ascontiguousarray(array)
    return contiguous.reshape(-1).view(np.uint8).data if contiguous.size else memoryview(b"")


# --- a checkpoint directory -----------------------------------------------------------------------------------------
def parse_size(size: int | str) -> int:
    """Bytes in ``size``: an int, or a string like "2GB", "500MB", "10GiB"."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)\s*", size, flags=re.IGNORECASE)
    if not match:
        raise ConfigError(f"cannot read size {size!r}; expected a number of bytes or a string like '2GB' or '500MB'")
    number, unit = float(match.group(1)), match.group(2).upper()
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    return int(number * scale.get(unit, 2**40))


def path_inside(directory: Path, name: str, source: Path) -> Path:
    """``directory / name``, refusing names (and symbolic links) that lead outside ``directory``; in a Hub cache
    snapshot the files are links to the repository's blobs folder, which is allowed too."""
    candidate = directory / name
    target = candidate.resolve()
    blobs = hub_blobs_folder(directory)
    inside = target.is_relative_to(directory.resolve()) or (blobs is not None and target.is_relative_to(blobs))
    if Path(name).is_absolute() or not inside:
        raise CheckpointError(f"{source} points to {name!r}, which is outside {directory}; refusing to read it")
    return candidate


def read_index(directory: Path, index_name: str = WEIGHTS_INDEX_NAME) -> dict[str, Path]:
    """Tensor name -> shard file, from a shard index (``model.safetensors.index.json`` or Transformers' others),
    every file checked to be inside ``directory``."""
    index_path = directory / index_name
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        weight_map = index["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{index_path} is not a valid shard index (expected a JSON 'weight_map')") from error
    return {str(name): path_inside(directory, str(shard), index_path) for name, shard in weight_map.items()}


def checkpoint_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The safetensors files of a canonical directory, single or sharded."""
    directory = Path(directory)
    if (directory / WEIGHTS_INDEX_NAME).is_file():
        return sorted(set(read_index(directory).values()))
    single = path_inside(directory, WEIGHTS_NAME, directory)
    if single.is_file():
        return [single]
    raise CheckpointError(f"no {WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME} in {directory}")


def load_state_dict(directory: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every tensor of a canonical directory, memory-mapped, names as stored."""
    directory = Path(directory)
    if not (directory / WEIGHTS_INDEX_NAME).is_file():
        return open_safetensors(checkpoint_files(directory)[0])
    shard_of = read_index(directory)
    tensors: dict[str, np.ndarray] = {}
    for shard in sorted(set(shard_of.values())):
        for name, array in open_safetensors(shard).items():
            if shard_of.get(name) != shard:
                raise CheckpointError(f"{shard} holds {name!r}, which {WEIGHTS_INDEX_NAME} does not assign to it")
            tensors[name] = array
    absent = sorted(set(shard_of) - set(tensors))
    if absent:
        raise CheckpointError(
            f"{WEIGHTS_INDEX_NAME} in {directory} lists tensors no shard holds: {', '.join(absent[:10])}"
        )
    return tensors


def _shards(tensors: Mapping[str, np.ndarray], limit: int) -> Iterator[dict[str, np.ndarray]]:
    shard: dict[str, np.ndarray] = {}
    size = 0
    for name, array in tensors.items():
        if shard and size + array.nbytes > limit:
            yield shard
            shard, size = {}, 0
        shard[name] = array
        size += array.nbytes
    if shard:
        yield shard


def save_state_dict(
    directory: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    max_shard_size: int | str = "2GB",
    metadata: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write ``tensors`` as ``model.safetensors``, or as shards with an index when larger than ``max_shard_size``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metadata = dict(metadata or {"format": "pt"})
    shards = list(_shards(tensors, parse_size(max_shard_size)))
    if len(shards) <= 1:
        write_safetensors(directory / WEIGHTS_NAME, shards[0] if shards else {}, metadata)
        (directory / WEIGHTS_INDEX_NAME).unlink(missing_ok=True)
        return [directory / WEIGHTS_NAME]
    written = []
    weight_map = {}
    for number, shard in enumerate(shards, start=1):
        name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(directory / name, shard, metadata)
        weight_map.update(dict.fromkeys(shard, name))
        written.append(directory / name)
    total = sum(np.asarray(array).nbytes for array in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    index_tmp = directory / f".{WEIGHTS_INDEX_NAME}.tmp-{os.getpid()}"
    index_tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(index_tmp, directory / WEIGHTS_INDEX_NAME)
    (directory / WEIGHTS_NAME).unlink(missing_ok=True)
    return written
