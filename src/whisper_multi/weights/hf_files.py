"""What Transformers' three weight formats share: file names, sharding with an index, and the step from
framework names and layouts to canonical tensors.

A checkpoint is one file (``tf_model.h5``) or numbered shards (``tf_model-00001-of-00002.h5``) listed by an index
(``tf_model.h5.index.json``) that maps each tensor name to its shard.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import CheckpointError
from whisper_multi.weights.safetensors_io import parse_size, read_index
from whisper_multi.weights.table import (
    ParamSpec,
    canonical_parameters,
    check_state_dict,
    framework_names,
    from_framework_layout,
)

PT_WEIGHTS_NAME = "pytorch_model.bin"
TF_WEIGHTS_NAME = "tf_model.h5"
FLAX_WEIGHTS_NAME = "flax_model.msgpack"
WEIGHTS_NAMES = {"pt": PT_WEIGHTS_NAME, "tf": TF_WEIGHTS_NAME, "flax": FLAX_WEIGHTS_NAME}
DEFAULT_MAX_SHARD_SIZE = "5GB"  # Transformers' default for save_pretrained

Tensors = dict[str, np.ndarray]
TensorMap = Mapping[str, np.ndarray]
PathArg = str | os.PathLike[str]


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


def check_sharding(
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


def to_canonical(
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


def read_stored(
    directory: Path,
    weights_name: str,
    read_file: Callable[[Path], Iterable[tuple[str, np.ndarray]]],
    index_key: Callable[[str], str] = str,
) -> tuple[Tensors, str]:
    """Every tensor of the single file or of the shards, by its stored name, with the shards checked against the
    index; and the name of the source for messages. ``read_file(path)`` yields one file's (name, array) pairs."""
    files, index = weight_files(directory, weights_name)
    stored: Tensors = {}
    found: dict[str, Path] = {}
    for path in files:
        for name, array in read_file(path):
            stored[name] = array
            found[name] = path
    check_sharding(index, found, directory, weights_name, key=index_key)
    return stored, str(files[0] if len(files) == 1 else directory / index_name(weights_name))


def tensors_to_write(
    config: WhisperConfig, tensors: TensorMap, weights_name: str
) -> tuple[dict[str, ParamSpec], dict[str, int]]:
    """The parameters of ``config`` and each one's size in bytes, once ``tensors`` is checked to hold all of them."""
    check_state_dict(config, tensors, f"the tensors to write as {weights_name}")
    specs = canonical_parameters(config)
    return specs, {name: int(np.asarray(tensors[name]).nbytes) for name in specs}


def read_canonical(
    directory: PathArg,
    weights_name: str,
    framework: str,
    config: WhisperConfig,
    read_file: Callable[[Path], Iterable[tuple[str, np.ndarray]]],
    index_key: Callable[[str], str] = str,
) -> Tensors:
    """Canonical tensors from a checkpoint stored with ``framework``'s names and layouts (see ``read_stored``)."""
    stored, source = read_stored(Path(directory), weights_name, read_file, index_key)
    return to_canonical(config, framework, stored, source)
