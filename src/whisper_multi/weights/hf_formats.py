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

from collections.abc import Callable
from pathlib import Path

from whisper_multi.configuration import WhisperConfig
from whisper_multi.weights.hf_files import (
    DEFAULT_MAX_SHARD_SIZE,
    FLAX_WEIGHTS_NAME,
    PT_WEIGHTS_NAME,
    TF_WEIGHTS_NAME,
    WEIGHTS_NAMES,
    Tensors,
    index_name,
    plan_shards,
    shard_name,
    weight_files,
    write_index,
    write_sharded,
)
from whisper_multi.weights.hf_flax import FLAX_NDARRAY_EXT, read_flax, read_msgpack_tree, write_flax
from whisper_multi.weights.hf_pt import (
    load_torch_file,
    numpy_to_torch,
    read_pt,
    torch_state_dict,
    torch_to_numpy,
    write_pt,
)
from whisper_multi.weights.hf_tf import TF_KERAS_VERSION, TF_MODEL_NAME, TF_TOP_GROUP, read_tf, write_tf

__all__ = [
    "DEFAULT_MAX_SHARD_SIZE",
    "FLAX_NDARRAY_EXT",
    "FLAX_WEIGHTS_NAME",
    "PT_WEIGHTS_NAME",
    "READERS",
    "TF_KERAS_VERSION",
    "TF_MODEL_NAME",
    "TF_TOP_GROUP",
    "TF_WEIGHTS_NAME",
    "WEIGHTS_NAMES",
    "WRITERS",
    "Tensors",
    "index_name",
    "load_torch_file",
    "numpy_to_torch",
    "plan_shards",
    "read_flax",
    "read_msgpack_tree",
    "read_pt",
    "read_tf",
    "shard_name",
    "torch_state_dict",
    "torch_to_numpy",
    "weight_files",
    "write_flax",
    "write_index",
    "write_pt",
    "write_sharded",
    "write_tf",
]

READERS: dict[str, Callable[[Path, WhisperConfig], Tensors]] = {"pt": read_pt, "tf": read_tf, "flax": read_flax}
WRITERS: dict[str, Callable[..., list[Path]]] = {"pt": write_pt, "tf": write_tf, "flax": write_flax}
