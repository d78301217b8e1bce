"""Transformers' PyTorch weights: ``pytorch_model.bin`` (or its shards), read memory-mapped with
``torch.load(weights_only=True)`` so that no code in a file ever runs, and written as ``save_pretrained`` does.

torch is imported inside the functions that need it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import CheckpointError
from whisper_multi.weights.hf_files import (
    DEFAULT_MAX_SHARD_SIZE,
    PT_WEIGHTS_NAME,
    PathArg,
    TensorMap,
    Tensors,
    index_name,
    read_stored,
    tensors_to_write,
    write_index,
    write_sharded,
)
from whisper_multi.weights.table import TIED_PARAMETERS, canonical_parameters, check_state_dict


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


def _pt_file_arrays(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    for name, tensor in torch_state_dict(load_torch_file(path), path).items():
        yield str(name), torch_to_numpy(tensor, str(name), path)


def read_pt(directory: PathArg, config: WhisperConfig) -> Tensors:
    """Canonical tensors from ``pytorch_model.bin`` (or its shards), memory-mapped, no code executed."""
    stored, source = read_stored(Path(directory), PT_WEIGHTS_NAME, _pt_file_arrays)
    check_state_dict(config, stored, source)  # the tied proj_out.weight may be present; it is dropped here
    return {name: stored[name] for name in canonical_parameters(config)}


def write_pt(
    directory: PathArg, config: WhisperConfig, tensors: TensorMap, max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE
) -> list[Path]:
    """Write ``pytorch_model.bin`` (or shards and an index) as Transformers' ``save_pretrained`` does.

    The tied ``proj_out.weight`` is stored as the same tensor as the token embedding, so it costs no space.
    """
    import torch

    specs, sizes = tensors_to_write(config, tensors, PT_WEIGHTS_NAME)
    directory = Path(directory)
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
        weight_map = index["weight_map"]
        weight_map.update({tied: weight_map[target] for tied, target in TIED_PARAMETERS.items()})
        write_index(directory, PT_WEIGHTS_NAME, weight_map, index["metadata"]["total_size"])
    return written
