"""Transformers' PyTorch, TensorFlow and Flax weight files, read into and written from canonical tensors.

============  ==================================================  ============================================
format        file (single / sharded with an index)               read with
============  ==================================================  ============================================
pt            ``pytorch_model.bin`` / ``pytorch_model.bin.index.json``  ``torch.load(weights_only=True, mmap=True)``
tf            ``tf_model.h5`` / ``tf_model.h5.index.json``            ``h5py`` (no TensorFlow)
flax          ``flax_model.msgpack`` / ``flax_model.msgpack.index.json``  ``msgpack`` (no JAX or Flax)
============  ==================================================  ============================================

Names and layouts come from the table (``framework_name`` and ``to_framework_layout``), never from guessing: a
file is read by inverting the table's names for the config, then ``check_state_dict`` checks the full name set and
every shape. Reads are memory-mapped where the format allows (every tensor of an uncompressed h5 dataset or a
msgpack leaf is a view of the mapped file); writes go one tensor at a time where the format allows (h5, msgpack).

Only the speech-to-text model (``WhisperForConditionalGeneration``) is handled. torch, h5py and msgpack are imported
inside the functions that need them.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import CheckpointError
from whisper_multi.weights.safetensors_io import parse_size, read_index
from whisper_multi.weights.table import (
    TIED_PARAMETERS,
    canonical_parameters,
    check_state_dict,
    framework_names,
    from_framework_layout,
    to_framework_layout,
)

PT_WEIGHTS_NAME = "pytorch_model.bin"
TF_WEIGHTS_NAME = "tf_model.h5"
FLAX_WEIGHTS_NAME = "flax_model.msgpack"
WEIGHTS_NAMES = {"pt": PT_WEIGHTS_NAME, "tf": TF_WEIGHTS_NAME, "flax": FLAX_WEIGHTS_NAME}
DEFAULT_MAX_SHARD_SIZE = "5GB"

# Keras prefixes every variable with the model's name; Transformers' loader drops that first component.
TF_MODEL_NAME = "tf_whisper_for_conditional_generation"
TF_TOP_GROUP = "model"  # the one Keras layer of TFWhisperForConditionalGeneration
TF_KERAS_VERSION = "2.20.1"
_HDF5_ATTRIBUTE_LIMIT = 64512  # bytes per attribute before Keras splits it into name0, name1, ...

FLAX_NDARRAY_EXT = 1  # flax.serialization's msgpack ext type code for an ndarray
_FLAX_CHUNKED = "__msgpack_chunked_array__"
_MAX_MSGPACK_BUFFER = 2**32 - 1  # one msgpack ext holds less than 4 GiB

Tensors = dict[str, np.ndarray]


# --- shared helpers -----------------------------------------------------------------------------------------------
def index_name(weights_name: str) -> str:
    return f"{weights_name}.index.json"


def shard_name(weights_name: str, number: int, count: int) -> str:
    """``tf_model.h5`` -> ``tf_model-00001-of-00002.h5``, as Transformers names shards."""
    stem, dot, suffix = weights_name.rpartition(".")
    return f"{stem}-{number:05d}-of-{count:05d}{dot}{suffix}"


def weight_files(directory: Path, weights_name: str) -> tuple[list[Path], dict[str, Path] | None]:
    """The files holding the weights (one, or the shards) and, when sharded, the index's name -> shard map."""
    index_path = directory / index_name(weights_name)
    if index_path.is_file():
        shard_of = read_index(directory, index_path.name)
        files = sorted(set(shard_of.values()))
        for file in files:
            if not file.is_file():
                raise CheckpointError(f"{index_path} lists the shard {file.name}, which is not in {directory}")
        return files, shard_of
    single = directory / weights_name
    if not single.is_file():
        raise CheckpointError(f"no {weights_name} or {index_path.name} in {directory}")
    return [single], None


def _check_sharding(
    index: dict[str, Path] | None,
    found: Mapping[str, Path],
    directory: Path,
    name: str,
    key: Callable[[str], str] = str,
) -> None:
    """Every stored tensor sits in the shard the index names, and the index names no tensor that is absent.

    ``key`` turns an index name into the name ``found`` uses.
    """
    if index is None:
        return
    index = {key(indexed): file for indexed, file in index.items()}
    misplaced = sorted(key for key, file in found.items() if index.get(key) != file)
    absent = sorted(set(index) - set(found))
    if misplaced or absent:
        problem = f"tensors in a shard it does not assign them to: {', '.join(misplaced[:10])}" if misplaced else ""
        problem = problem or f"tensors no shard holds: {', '.join(absent[:10])}"
        raise CheckpointError(f"{directory / index_name(name)} disagrees with its shards: {problem}")


def plan_shards(sizes: Mapping[str, int], max_shard_size: int | str) -> list[list[str]]:
    """Names grouped into shards of at most ``max_shard_size`` bytes, in order (a larger tensor goes alone)."""
    limit = parse_size(max_shard_size)
    shards: list[list[str]] = [[]]
    size = 0
    for name, nbytes in sizes.items():
        if shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    return shards


def write_index(directory: Path, weights_name: str, weight_map: Mapping[str, str], total_size: int) -> None:
    index = {"metadata": {"total_size": total_size}, "weight_map": dict(weight_map)}
    text = json.dumps(index, indent=2, sort_keys=True) + "\n"
    (directory / index_name(weights_name)).write_text(text, encoding="utf-8")


def write_sharded(
    directory: Path,
    weights_name: str,
    names: Mapping[str, str],
    sizes: Mapping[str, int],
    max_shard_size: int | str,
    write_file: Callable[[Path, list[str], bool], None],
) -> list[Path]:
    """Write one file or shards plus an index; ``write_file(path, canonical names, sharded)`` writes one file."""
    directory.mkdir(parents=True, exist_ok=True)
    shards = plan_shards(sizes, max_shard_size)
    if len(shards) == 1:
        write_file(directory / weights_name, shards[0], False)
        return [directory / weights_name]
    written, weight_map = [], {}
    for number, shard in enumerate(shards, start=1):
        path = directory / shard_name(weights_name, number, len(shards))
        write_file(path, shard, True)
        weight_map.update({names[name]: path.name for name in shard})
        written.append(path)
    write_index(directory, weights_name, weight_map, sum(sizes.values()))
    return written


def _to_canonical(
    config: WhisperConfig, framework: str, stored: Mapping[str, np.ndarray], source: str
) -> dict[str, np.ndarray]:
    """Framework-named, framework-layout tensors -> canonical ones, after checking the full name set and shapes."""
    specs = canonical_parameters(config)
    canonical_of = {name: canonical for canonical, name in framework_names(config, framework).items()}
    renamed = {canonical_of.get(name, name): array for name, array in stored.items()}
    # Unknown names stay as stored so check_state_dict reports them; canonical shapes are checked after the layout
    # rule, which only permutes axes, so a wrong shape stays wrong.
    converted = {
        name: from_framework_layout(array, specs[name].kind, framework) if name in specs else array
        for name, array in renamed.items()
    }
    check_state_dict(config, converted, source)
    return {name: converted[name] for name in specs}


# --- PyTorch: pytorch_model.bin -------------------------------------------------------------------------------------
def load_torch_file(path: Path) -> Any:
    """``torch.load`` that never runs code from the file: a pickle with code in it raises CheckpointError."""
    import pickle

    import torch

    # A damaged file can fail anywhere inside torch's reader (IndexError, struct.error, ...): every failure is
    # reported as the file being unreadable.
    try:
        return torch.load(path, weights_only=True, map_location="cpu", mmap=True)
    except pickle.UnpicklingError as error:
        raise _unpickling_error(path, error) from error
    except Exception as error:
        if not (isinstance(error, RuntimeError) and "mmap" in str(error)):
            raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: {_describe(error)}") from error
    # Files in the legacy (pre-zip) format cannot be memory-mapped; they are read whole, still without code.
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        raise _unpickling_error(path, error) from error
    except Exception as error:
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: {_describe(error)}") from error


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _unpickling_error(path: Path, error: Exception) -> CheckpointError:
    """weights_only refuses both a pickle that imports code and one that is not a pickle at all: tell them apart."""
    text = str(error)
    details = text.split("WeightsUnpickler error:")[-1]
    reason = next((line.strip() for line in details.splitlines() if line.strip()), text)
    if "GLOBAL" in text:  # "Trying to load unsupported GLOBAL posix.mkdir ...": the pickle imports a callable
        return CheckpointError(
            f"{path} is refused: it is not a plain weights file (its pickle asks to run code, which weights_only "
            f"loading forbids and nothing was executed): {reason}"
        )
    return CheckpointError(
        f"cannot read {path} as a PyTorch checkpoint: its pickle is corrupt or not a weights file ({reason}); "
        "nothing was executed"
    )


def torch_to_numpy(tensor: Any, name: str, path: Path) -> np.ndarray:
    """A CPU tensor as numpy without copying; bfloat16 through its bits (numpy has no bfloat16 of its own)."""
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise CheckpointError(f"{path}: {name} is a {type(tensor).__name__}, expected a tensor")
    if tensor.layout != torch.strided:
        tensor = tensor.to_dense()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def numpy_to_torch(array: np.ndarray) -> Any:
    """A numpy array as a contiguous torch tensor, sharing memory when it already is contiguous."""
    import torch

    array = np.ascontiguousarray(array)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    with warnings.catch_warnings():
        # A memory-mapped source is read-only; the tensor is only written to a file, never modified.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def torch_state_dict(loaded: Any, path: Path) -> Mapping[str, Any]:
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}; expected a state dict (name -> tensor)")
    return loaded


def read_pt(directory: str | os.PathLike[str], config: WhisperConfig) -> Tensors:
    """Canonical tensors from ``pytorch_model.bin`` (or its shards), memory-mapped, no code executed."""
    directory = Path(directory)
    files, index = weight_files(directory, PT_WEIGHTS_NAME)
    stored: dict[str, np.ndarray] = {}
    found: dict[str, Path] = {}
    for file in files:
        for name, tensor in torch_state_dict(load_torch_file(file), file).items():
            stored[str(name)] = torch_to_numpy(tensor, str(name), file)
            found[str(name)] = file
    _check_sharding(index, found, directory, PT_WEIGHTS_NAME)
    source = str(files[0] if len(files) == 1 else directory / index_name(PT_WEIGHTS_NAME))
    check_state_dict(config, stored, source)  # the tied proj_out.weight may be present; it is dropped here
    return {name: stored[name] for name in canonical_parameters(config)}


def write_pt(
    directory: str | os.PathLike[str],
    config: WhisperConfig,
    tensors: Mapping[str, np.ndarray],
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
) -> list[Path]:
    """Write ``pytorch_model.bin`` (or shards and an index) as Transformers' ``save_pretrained`` does.

    The tied ``proj_out.weight`` is stored as the same tensor as the token embedding, so it costs no space.
    """
    import torch

    check_state_dict(config, tensors, "the tensors to write as pytorch_model.bin")
    directory = Path(directory)
    specs = canonical_parameters(config)
    sizes = {name: int(np.asarray(tensors[name]).nbytes) for name in specs}
    names = {name: name for name in specs}

    def write_file(path: Path, shard: list[str], sharded: bool) -> None:
        state = {name: numpy_to_torch(np.asarray(tensors[name])) for name in shard}
        for tied, target in TIED_PARAMETERS.items():
            if target in state:
                state[tied] = state[target]
        torch.save(state, path)

    written = write_sharded(directory, PT_WEIGHTS_NAME, names, sizes, max_shard_size, write_file)
    if len(written) > 1:
        # The index must list the tied name too: Transformers checks every saved key against its shard.
        index_path = directory / index_name(PT_WEIGHTS_NAME)
        index = json.loads(index_path.read_text(encoding="utf-8"))
        for tied, target in TIED_PARAMETERS.items():
            index["weight_map"][tied] = index["weight_map"][target]
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return written


# --- TensorFlow: tf_model.h5 ----------------------------------------------------------------------------------------
def _h5_strings(group: Any, name: str) -> list[str]:
    """A list-of-strings attribute that Keras may have split into ``name0``, ``name1``, ... when large."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, number = [], 0
        while f"{name}{number}" in group.attrs:
            values += list(group.attrs[f"{name}{number}"])
            number += 1
    return [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in values]


def _set_h5_strings(group: Any, name: str, values: Sequence[str]) -> None:
    """The inverse of ``_h5_strings``: fixed-length byte strings, split as Keras splits them."""
    data = np.asarray([value.encode("utf-8") for value in values]) if values else np.asarray([])
    chunks = 1
    while any(part.nbytes > _HDF5_ATTRIBUTE_LIMIT for part in np.array_split(data, chunks)):
        chunks += 1
    if chunks == 1:
        group.attrs[name] = data
        return
    for number, part in enumerate(np.array_split(data, chunks)):
        group.attrs[f"{name}{number}"] = part


def _refuse_links_out(file: Any, path: Path) -> None:
    """An h5 file may point into other files (external links, external or virtual datasets): refuse those."""
    import h5py

    problems: list[str] = []

    def visit(name: str, link: Any) -> None:
        if isinstance(link, h5py.ExternalLink):
            problems.append(f"{name!r} is an external link to {link.filename}:{link.path}")
        elif isinstance(link, h5py.SoftLink):
            problems.append(f"{name!r} is a soft link to {link.path}")
        else:
            item = file.get(name)
            if isinstance(item, h5py.Dataset) and (item.external or item.is_virtual):
                problems.append(f"{name!r} is a dataset whose data lives in another file")

    file.visititems_links(visit)
    if problems:
        raise CheckpointError(f"{path} is refused: {'; '.join(problems[:5])}; expected a self-contained tf_model.h5")


def _h5_array(dataset: Any, path: Path) -> np.ndarray:
    """A dataset's values: a read-only view of the mapped file when stored contiguously, else read."""
    offset = dataset.id.get_offset()
    contiguous = dataset.chunks is None and dataset.compression is None and not dataset.external
    if offset is None or not contiguous or dataset.size == 0:
        return np.asarray(dataset[()] if dataset.shape == () else dataset[...])
    return np.memmap(path, dtype=dataset.dtype, mode="r", offset=offset, shape=dataset.shape)


def _tf_datasets(file: Any, path: Path) -> Iterator[tuple[str, Any]]:
    """(name without the model prefix, dataset) for every weight the file declares.

    A single file (Keras ``save_weights``) lists layer groups in ``layer_names``, each listing its variables in
    ``weight_names`` with the model name first; a shard (Transformers' sharded save) lists datasets directly.
    """
    import h5py

    for layer in _h5_strings(file, "layer_names"):
        item = file.get(layer)
        if isinstance(item, h5py.Dataset):
            yield layer, item
        elif isinstance(item, h5py.Group):
            for weight in _h5_strings(item, "weight_names"):
                dataset = item.get(weight)
                if not isinstance(dataset, h5py.Dataset):
                    raise CheckpointError(f"{path}: {layer}/{weight} is listed in weight_names but not stored")
                yield weight.partition("/")[2], dataset
        else:
            raise CheckpointError(f"{path}: layer {layer!r} is listed in layer_names but not stored")


def read_tf(directory: str | os.PathLike[str], config: WhisperConfig) -> Tensors:
    """Canonical tensors from ``tf_model.h5`` (or its shards), read with h5py only, memory-mapped."""
    import h5py

    directory = Path(directory)
    files, index = weight_files(directory, TF_WEIGHTS_NAME)
    stored: dict[str, np.ndarray] = {}
    found: dict[str, Path] = {}
    for path in files:
        try:
            file = h5py.File(path, "r")
        except OSError as error:
            raise CheckpointError(f"cannot read {path} as HDF5: {error}") from error
        with file:
            try:
                _refuse_links_out(file, path)
                for name, dataset in _tf_datasets(file, path):
                    stored[name] = _h5_array(dataset, path)
                    found[name] = path
            except CheckpointError:
                raise
            except (RuntimeError, SystemError, OSError, KeyError, ValueError, TypeError) as error:  # h5py on damage
                raise CheckpointError(f"cannot read {path} as HDF5 (damaged?): {error}") from error
    # Index names start with the Keras model's name, which Keras numbers per process ("..._generation_4"):
    # Transformers ignores that first component, and so do we.
    _check_sharding(index, found, directory, TF_WEIGHTS_NAME, key=lambda indexed: indexed.partition("/")[2])
    source = str(files[0] if len(files) == 1 else directory / index_name(TF_WEIGHTS_NAME))
    return _to_canonical(config, "tf", stored, source)


def write_tf(
    directory: str | os.PathLike[str],
    config: WhisperConfig,
    tensors: Mapping[str, np.ndarray],
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
) -> list[Path]:
    """Write ``tf_model.h5`` as ``TFWhisperForConditionalGeneration.save_pretrained`` does, one tensor at a time."""
    import h5py

    check_state_dict(config, tensors, "the tensors to write as tf_model.h5")
    specs = canonical_parameters(config)
    names = framework_names(config, "tf")
    for name in specs:
        if np.asarray(tensors[name]).dtype.name == "bfloat16":
            raise CheckpointError(f"cannot store {name} as bfloat16 in tf_model.h5; expected float32 or float16")
    sizes = {name: int(np.asarray(tensors[name]).nbytes) for name in specs}
    full_names = {name: f"{TF_MODEL_NAME}/{tf_name}" for name, tf_name in names.items()}

    def write_file(path: Path, shard: list[str], sharded: bool) -> None:
        with h5py.File(path, "w") as file:
            if sharded:
                # A shard stores each variable at its name (model prefix dropped) and lists them in layer_names.
                for name in sorted(shard, key=lambda n: names[n]):
                    array = to_framework_layout(tensors[name], specs[name].kind, "tf")
                    file.create_dataset(names[name], data=np.ascontiguousarray(array))
                _set_h5_strings(file, "layer_names", sorted(names[name] for name in shard))
                return
            _set_h5_strings(file, "layer_names", [TF_TOP_GROUP])
            file.attrs["backend"] = b"tensorflow"
            file.attrs["keras_version"] = TF_KERAS_VERSION.encode("utf-8")
            group = file.create_group(TF_TOP_GROUP)
            _set_h5_strings(group, "weight_names", [full_names[name] for name in shard])
            for name in shard:
                array = to_framework_layout(tensors[name], specs[name].kind, "tf")
                group.create_dataset(full_names[name], data=np.ascontiguousarray(array))
            _set_h5_strings(file.create_group("top_level_model_weights"), "weight_names", [])

    return write_sharded(Path(directory), TF_WEIGHTS_NAME, full_names, sizes, max_shard_size, write_file)


# --- Flax: flax_model.msgpack -----------------------------------------------------------------------------------------
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


def read_flax(directory: str | os.PathLike[str], config: WhisperConfig) -> Tensors:
    """Canonical tensors from ``flax_model.msgpack`` (or its shards), read with msgpack only, memory-mapped."""
    directory = Path(directory)
    files, index = weight_files(directory, FLAX_WEIGHTS_NAME)
    stored: dict[str, np.ndarray] = {}
    found: dict[str, Path] = {}
    for path in files:
        for name, array in read_msgpack_tree(path).items():
            stored[name] = array
            found[name] = path
    _check_sharding(index, found, directory, FLAX_WEIGHTS_NAME)
    source = str(files[0] if len(files) == 1 else directory / index_name(FLAX_WEIGHTS_NAME))
    return _to_canonical(config, "flax", stored, source)


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
    directory: str | os.PathLike[str],
    config: WhisperConfig,
    tensors: Mapping[str, np.ndarray],
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
) -> list[Path]:
    """Write ``flax_model.msgpack`` as ``FlaxWhisperForConditionalGeneration.save_pretrained`` does, streamed."""
    import msgpack

    check_state_dict(config, tensors, "the tensors to write as flax_model.msgpack")
    specs = canonical_parameters(config)
    names = framework_names(config, "flax")
    sizes = {name: int(np.asarray(tensors[name]).nbytes) for name in specs}

    def array(name: str) -> np.ndarray:
        return to_framework_layout(tensors[name], specs[name].kind, "flax")

    def write_file(path: Path, shard: list[str], sharded: bool) -> None:
        tree = _nest({names[name]: name for name in shard})
        with open(path, "wb") as file:
            _write_msgpack_tree(file, msgpack.Packer(use_bin_type=True), tree, array)

    return write_sharded(Path(directory), FLAX_WEIGHTS_NAME, names, sizes, max_shard_size, write_file)


READERS: dict[str, Callable[[Path, WhisperConfig], Tensors]] = {"pt": read_pt, "tf": read_tf, "flax": read_flax}
WRITERS: dict[str, Callable[..., list[Path]]] = {"pt": write_pt, "tf": write_tf, "flax": write_flax}
