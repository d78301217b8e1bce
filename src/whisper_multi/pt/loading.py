"""``from_pretrained`` / ``save_pretrained`` for the PyTorch models, on local directories.

A directory holds ``config.json`` and the weights in one of: ``model.safetensors``, shards listed by
``model.safetensors.index.json``, Transformers' ``pytorch_model.bin`` (read with ``weights_only=True``, optionally
sharded), or a CTranslate2 ``model.bin`` (faster-whisper's format). Names and shapes are checked against the
canonical table (``weights.table``) before anything is copied, so a checkpoint loads whole or not at all.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

from ..configuration import CONFIG_NAME, WhisperConfig
from ..errors import CheckpointError
from ..weights.table import HEADS, canonical_parameters, check_state_dict, tied_parameters

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
WEIGHTS_NAME = "pytorch_model.bin"
WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
CT2_WEIGHTS_NAME = "model.bin"
DEFAULT_MAX_SHARD_SIZE = "5GB"

_SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
_SHARD_FILE = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")

ModelT = TypeVar("ModelT", bound="PreTrainedModelMixin")


# --- sizes and dtypes ----------------------------------------------------------------------------------------------
def parse_size(size: int | str) -> int:
    """Bytes in ``size``: an int, or a string such as "2GB" (10**9) or "500MiB" (2**20)."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]I?B|B)\s*", size.upper())
    if not match:
        raise CheckpointError(f"max_shard_size {size!r} is not a size; expected bytes or e.g. '2GB', '500MB'")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def resolve_dtype(torch_dtype: torch.dtype | str | None, tensors: Mapping[str, torch.Tensor]) -> torch.dtype | None:
    """``torch_dtype`` as a torch dtype; "auto" takes the dtype of the checkpoint's floating tensors."""
    if torch_dtype is None or isinstance(torch_dtype, torch.dtype):
        return torch_dtype
    if torch_dtype == "auto":
        return next((t.dtype for t in tensors.values() if t.is_floating_point()), None)
    dtype = getattr(torch, str(torch_dtype).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise CheckpointError(f"torch_dtype {torch_dtype!r} is not a floating torch dtype (e.g. 'float16')")
    return dtype


# --- reading -------------------------------------------------------------------------------------------------------
def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for unsafe or corrupt pickles
        raise CheckpointError(f"cannot read {path} as a safe PyTorch state dict: {error}") from error


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except Exception as error:  # safetensors raises its own error type for corrupt headers
        raise CheckpointError(f"cannot read {path} as safetensors: {error}") from error


def _load_sharded(index_path: Path, load: Any) -> dict[str, torch.Tensor]:
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{index_path} is not a weight index with a 'weight_map': {error}") from error
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard
        if not shard_path.is_file():
            raise CheckpointError(f"{index_path} lists the shard {shard}, which is not in {index_path.parent}")
        tensors.update(load(shard_path))
    return tensors


def weights_file(directory: Path) -> Path:
    """The weight file or index of ``directory``, preferring safetensors."""
    for name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME, CT2_WEIGHTS_NAME):
        if (directory / name).is_file():
            return directory / name
    raise CheckpointError(
        f"no weights in {directory}: expected one of {SAFE_WEIGHTS_NAME}, {SAFE_WEIGHTS_INDEX_NAME}, {WEIGHTS_NAME}, "
        f"{WEIGHTS_INDEX_NAME} or a CTranslate2 {CT2_WEIGHTS_NAME}"
    )


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors or PyTorch weight file, or of the shards an index lists."""
    if path.name.endswith(".index.json"):
        load = _load_safetensors if path.name == SAFE_WEIGHTS_INDEX_NAME else _load_pickle
        return _load_sharded(path, load)
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    return _load_pickle(path)


# --- matching a checkpoint to a model ------------------------------------------------------------------------------
def adapt_names(
    tensors: dict[str, torch.Tensor], head: str, config: WhisperConfig
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a checkpoint of one Whisper class for another; return the tensors and the names dropped.

    A speech-to-text checkpoint (names under ``model.``) loads into ``WhisperModel`` (prefix removed, ``proj_out``
    dropped) and into ``WhisperForAudioClassification`` (its encoder only); a ``WhisperModel`` checkpoint loads into
    ``WhisperForConditionalGeneration`` (prefix added). Tied parameters are dropped.
    """
    prefixed = any(name.startswith("model.") for name in tensors)
    if head == "conditional_generation" and not prefixed and any(n.startswith("decoder.") for n in tensors):
        tensors = {f"model.{name}": tensor for name, tensor in tensors.items()}
    elif head in ("base", "audio_classification") and prefixed:
        tensors = {name.removeprefix("model."): tensor for name, tensor in tensors.items()}
    dropped: list[str] = []
    if head == "audio_classification":
        dropped = [name for name in tensors if name.startswith("decoder.") or name == "proj_out.weight"]
    elif head == "base":
        dropped = [name for name in tensors if name == "proj_out.weight"]
    if getattr(config, "tie_word_embeddings", True):
        dropped += [name for name in tied_parameters(head) if name in tensors]
    return {name: tensor for name, tensor in tensors.items() if name not in dropped}, dropped


def check_tensors(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError unless ``tensors`` holds exactly the model's parameters, with their shapes."""
    head = getattr(model, "head", None)
    if head in HEADS:
        check_state_dict(model.config, tensors, source, head=head)  # type: ignore[attr-defined]
        return
    # A part of a model (encoder or decoder alone): compare with its own parameters.
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{n}: expected {expected[n]}, found {tuple(t.shape)}" for n, t in tensors.items() if n in expected and tuple(t.shape) != expected[n]]  # fmt: skip
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{source} does not match {type(model).__name__}: missing {missing}, unexpected {unexpected}, "
            f"wrong shape {wrong}"
        )


def load_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Check then copy ``tensors`` (any Whisper class's names) into ``model``; dtypes are converted."""
    config = model.config  # type: ignore[attr-defined]
    head = getattr(model, "head", None)
    tensors, _ = adapt_names(dict(tensors), head or "", config)
    if head == "audio_classification" and not any(name.startswith(("projector.", "classifier.")) for name in tensors):
        # A speech-to-text checkpoint brings only the encoder: the classifier starts from its initialisation.
        fresh = {
            n: t for n, t in model.state_dict().items() if n in canonical_parameters(config, head) and n not in tensors
        }
        warnings.warn(
            f"{source} has no classification head; these parameters are newly initialised: {', '.join(fresh)}",
            UserWarning,
            stacklevel=3,
        )
        tensors.update(fresh)
    check_tensors(model, tensors, source)
    result = model.load_state_dict(tensors, strict=False)
    tied = set(tied_parameters(head or "")) if getattr(config, "tie_word_embeddings", True) else set()
    missing = [name for name in result.missing_keys if name not in tied]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"{source}: missing {missing}, unexpected {result.unexpected_keys}")


# --- writing -------------------------------------------------------------------------------------------------------
def shard_state_dict(tensors: Mapping[str, torch.Tensor], max_shard_size: int) -> list[dict[str, torch.Tensor]]:
    """Group tensors, in order, into shards of at most ``max_shard_size`` bytes (a larger tensor goes alone)."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_size:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    return shards


def _remove_old_weights(directory: Path) -> None:
    for path in directory.iterdir():
        if path.name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME) or _SHARD_FILE.match(path.name):
            path.unlink()


def write_weights(
    tensors: Mapping[str, torch.Tensor], directory: Path, max_shard_size: int | str, safe_serialization: bool
) -> list[Path]:
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
    _remove_old_weights(directory)
    if not safe_serialization:
        torch.save(tensors, directory / WEIGHTS_NAME)
        return [directory / WEIGHTS_NAME]
    shards = shard_state_dict(tensors, parse_size(max_shard_size))
    if len(shards) == 1:
        save_file(shards[0], directory / SAFE_WEIGHTS_NAME, metadata={"format": "pt"})
        return [directory / SAFE_WEIGHTS_NAME]
    weight_map: dict[str, str] = {}
    written = []
    for index, shard in enumerate(shards, start=1):
        name = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, directory / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
        written.append(directory / name)
    total_size = sum(t.numel() * t.element_size() for t in tensors.values())
    index_text = json.dumps({"metadata": {"total_size": total_size}, "weight_map": weight_map}, indent=2)
    (directory / SAFE_WEIGHTS_INDEX_NAME).write_text(index_text + "\n", encoding="utf-8")
    return [*written, directory / SAFE_WEIGHTS_INDEX_NAME]


# --- the mixin -----------------------------------------------------------------------------------------------------
class PreTrainedModelMixin:
    """Loading and saving for ``WhisperPreTrainedModel`` subclasses."""

    @classmethod
    def from_pretrained(
        cls: type[ModelT],
        path: str | os.PathLike[str],
        config: WhisperConfig | None = None,
        torch_dtype: torch.dtype | str | None = None,
    ) -> ModelT:
        """Build the model from a local directory (Transformers layout or CTranslate2) and load its weights."""
        directory = Path(path)
        if not directory.is_dir():
            raise CheckpointError(f"{directory} is not a directory; from_pretrained reads local directories only")
        file = weights_file(directory)
        if file.name == CT2_WEIGHTS_NAME:
            return cls.from_ct2(directory, config=config, torch_dtype=torch_dtype)
        if config is None:
            config = WhisperConfig.from_pretrained(directory)
        tensors = read_weights(file)
        if torch_dtype == "auto" and isinstance(config.torch_dtype, str):
            torch_dtype = config.torch_dtype
        return cls._from_tensors(config, tensors, str(file), torch_dtype)

    @classmethod
    def from_ct2(
        cls: type[ModelT],
        path: str | os.PathLike[str],
        config: WhisperConfig | None = None,
        torch_dtype: torch.dtype | str | None = None,
    ) -> ModelT:
        """Build the model from a CTranslate2 directory (e.g. faster-whisper's); quantized weights are dequantized."""
        from ..weights.ct2 import read_ct2

        ct2 = read_ct2(path)
        tensors = {name: torch.from_numpy(array) for name, array in ct2.tensors.items()}
        return cls._from_tensors(config or ct2.config, tensors, ct2.source or str(path), torch_dtype)

    @classmethod
    def _from_tensors(
        cls: type[ModelT],
        config: WhisperConfig,
        tensors: dict[str, torch.Tensor],
        source: str,
        torch_dtype: torch.dtype | str | None,
    ) -> ModelT:
        dtype = resolve_dtype(torch_dtype, tensors)
        model = cls(config)  # type: ignore[call-arg]
        if dtype is not None:
            model.to(dtype)  # type: ignore[attr-defined]
        load_tensors(model, tensors, source)  # type: ignore[arg-type]
        model.eval()  # type: ignore[attr-defined]
        return model

    def save_pretrained(
        self,
        path: str | os.PathLike[str],
        max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
        safe_serialization: bool = True,
    ) -> list[Path]:
        """Write ``config.json`` and the weights (tied copies left out), sharded above ``max_shard_size``."""
        directory = Path(path)
        if directory.exists() and not directory.is_dir():
            raise CheckpointError(f"cannot save into {directory}: it is a file, not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        config: WhisperConfig = self.config  # type: ignore[attr-defined]
        config.architectures = [type(self).__name__]
        config.torch_dtype = str(self.dtype).removeprefix("torch.")  # type: ignore[attr-defined]
        config.save_pretrained(directory)
        tied = tied_parameters(getattr(self, "head", "")) if getattr(config, "tie_word_embeddings", True) else {}
        state = {name: t for name, t in self.state_dict().items() if name not in tied}  # type: ignore[attr-defined]
        return [directory / CONFIG_NAME, *write_weights(state, directory, max_shard_size, safe_serialization)]
