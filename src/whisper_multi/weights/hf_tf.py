"""Transformers' TensorFlow weights: ``tf_model.h5`` (or its shards), read and written with h5py alone (no
TensorFlow), in the layout Keras ``save_weights`` and Transformers' sharded save use.

A single file lists layer groups in ``layer_names``, each listing its variables in ``weight_names`` with the model
name first; a shard lists its datasets directly. h5py is imported inside the functions that need it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import CheckpointError
from whisper_multi.weights import hf_files
from whisper_multi.weights.hf_files import DEFAULT_MAX_SHARD_SIZE, TF_WEIGHTS_NAME, PathArg, TensorMap, Tensors
from whisper_multi.weights.table import framework_names, to_framework_layout

# Keras prefixes every variable with the model's name; Transformers' loader drops that first component.
TF_MODEL_NAME = "tf_whisper_for_conditional_generation"
TF_TOP_GROUP = "model"  # the one Keras layer of TFWhisperForConditionalGeneration
TF_KERAS_VERSION = "2.20.1"
_HDF5_ATTRIBUTE_LIMIT = 64512  # bytes per attribute before Keras splits it into name0, name1, ...


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


def _tf_file_arrays(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name without the model prefix, array) of every weight of one h5 file; damage is a CheckpointError."""
    import h5py

    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise CheckpointError(f"cannot read {path} as HDF5: {error}") from error
    with file:
        try:
            _refuse_links_out(file, path)
            for name, dataset in _tf_datasets(file, path):
                yield name, _h5_array(dataset, path)
        except CheckpointError:
            raise
        except (RuntimeError, SystemError, OSError, KeyError, ValueError, TypeError) as error:  # h5py on damage
            raise CheckpointError(f"cannot read {path} as HDF5 (damaged?): {error}") from error


def read_tf(directory: PathArg, config: WhisperConfig) -> Tensors:
    """Canonical tensors from ``tf_model.h5`` (or its shards), read with h5py only, memory-mapped."""
    # Index names start with the Keras model's name, which Keras numbers per process ("..._generation_4"):
    # Transformers ignores that first component, and so do we.
    return hf_files.read_canonical(
        directory, TF_WEIGHTS_NAME, "tf", config, _tf_file_arrays, lambda name: name.partition("/")[2]
    )


def _write_h5_shard(file: Any, canonical_of: dict[str, str], array: Callable[[str], np.ndarray]) -> None:
    """A shard stores each variable at its name (model prefix dropped) and lists them in layer_names."""
    for stored in sorted(canonical_of):
        file.create_dataset(stored, data=np.ascontiguousarray(array(canonical_of[stored])))
    _set_h5_strings(file, "layer_names", sorted(canonical_of))


def _write_h5_single(file: Any, canonical_of: dict[str, str], array: Callable[[str], np.ndarray]) -> None:
    """A single file, as Keras ``save_weights`` writes it: one layer group listing every variable by full name."""
    _set_h5_strings(file, "layer_names", [TF_TOP_GROUP])
    file.attrs["backend"] = b"tensorflow"
    file.attrs["keras_version"] = TF_KERAS_VERSION.encode("utf-8")
    group = file.create_group(TF_TOP_GROUP)
    _set_h5_strings(group, "weight_names", list(canonical_of))
    for stored, canonical in canonical_of.items():
        group.create_dataset(stored, data=np.ascontiguousarray(array(canonical)))
    _set_h5_strings(file.create_group("top_level_model_weights"), "weight_names", [])


def write_tf(
    directory: PathArg, config: WhisperConfig, tensors: TensorMap, max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE
) -> list[Path]:
    """Write ``tf_model.h5`` as ``TFWhisperForConditionalGeneration.save_pretrained`` does, one tensor at a time."""
    import h5py

    specs, sizes = hf_files.tensors_to_write(config, tensors, TF_WEIGHTS_NAME)
    for name in specs:
        if np.asarray(tensors[name]).dtype.name == "bfloat16":
            raise CheckpointError(f"cannot store {name} as bfloat16 in tf_model.h5; expected float32 or float16")
    names = framework_names(config, "tf")
    full_names = {name: f"{TF_MODEL_NAME}/{tf_name}" for name, tf_name in names.items()}

    def array(name: str) -> np.ndarray:
        return to_framework_layout(tensors[name], specs[name].kind, "tf")

    def write_file(path: Path, shard: list[str], sharded: bool) -> None:
        with h5py.File(path, "w") as file:
            if sharded:
                _write_h5_shard(file, {names[name]: name for name in shard}, array)
            else:
                _write_h5_single(file, {full_names[name]: name for name in shard}, array)

    return hf_files.write_sharded(Path(directory), TF_WEIGHTS_NAME, full_names, sizes, max_shard_size, write_file)
