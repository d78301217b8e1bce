"""``from_pretrained`` / ``save_pretrained`` for the PyTorch models, on local directories.

The reading, name adaptation between model classes, checking and writing are the weight layer's
(``weights.pretrained``), shared by the three backends; this file only moves numpy arrays in and out of torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import CheckpointError
from whisper_multi.hub import refuse_unknown_arguments
from whisper_multi.weights import pretrained
from whisper_multi.weights.hf_formats import numpy_to_torch, torch_to_numpy
from whisper_multi.weights.loading import CheckpointLoadingMixin, architecture_name, warn_fresh_parameters
from whisper_multi.weights.table import tied_parameters

DEFAULT_MAX_SHARD_SIZE = pretrained.DEFAULT_MAX_SHARD_SIZE

ModelT = TypeVar("ModelT", bound="PreTrainedModelMixin")


def resolve_dtype(torch_dtype: torch.dtype | str | None, stored: Mapping[str, np.ndarray]) -> torch.dtype | None:
    """``torch_dtype`` as a torch dtype; "auto" takes the dtype of the checkpoint's floating tensors."""
    if torch_dtype is None or isinstance(torch_dtype, torch.dtype):
        return torch_dtype
    if torch_dtype == "auto":
        floating = next(
            (a.dtype.name for a in stored.values() if a.dtype.kind == "f" or a.dtype.name == "bfloat16"), None
        )
        return getattr(torch, floating) if floating else None
    dtype = getattr(torch, str(torch_dtype).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise CheckpointError(f"torch_dtype {torch_dtype!r} is not a floating torch dtype (e.g. 'float16')")
    return dtype


def load_tensors(model: torch.nn.Module, weights: pretrained.PretrainedWeights) -> None:
    """Copy checked canonical tensors into ``model`` (dtypes converted); fresh head parameters are announced."""
    warn_fresh_parameters(weights, stacklevel=4)
    state = {name: numpy_to_torch(array) for name, array in weights.tensors.items()}
    result = model.load_state_dict(state, strict=False)
    config = model.config  # type: ignore[attr-defined]
    tied = set(tied_parameters(model.head)) if getattr(config, "tie_word_embeddings", True) else set()  # type: ignore[attr-defined]
    missing = [name for name in result.missing_keys if name not in tied and name not in weights.not_in_checkpoint]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"{weights.source}: missing {missing}, unexpected {result.unexpected_keys}")


class PreTrainedModelMixin(CheckpointLoadingMixin):
    """Loading and saving for ``WhisperPreTrainedModel`` subclasses; ``from_ct2`` is the shared one."""

    head: str

    @classmethod
    def from_pretrained(
        cls: type[ModelT],
        path: str | os.PathLike[str],
        config: WhisperConfig | None = None,
        torch_dtype: torch.dtype | str | None = None,
        **hub_arguments: Any,
    ) -> ModelT:
        """Build the model from a checkpoint in any supported format and load its weights: a local directory, an
        installed model package or a Hub repository's name ("openai/whisper-tiny.en"), fetched into the Hub cache
        with ``revision``, ``cache_dir``, ``local_files_only``, ``token`` and ``subfolder`` (``whisper_multi.hub``)."""
        hub = pretrained.HubOptions.take(hub_arguments)
        refuse_unknown_arguments(hub_arguments, f"{cls.__name__}.from_pretrained")
        weights = pretrained.load_pretrained(path, head=cls.head, config=config, hub=hub)
        if torch_dtype == "auto" and isinstance(weights.config.torch_dtype, str):
            torch_dtype = weights.config.torch_dtype
        dtype = resolve_dtype(torch_dtype, weights.tensors)
        model = cls(weights.config)  # type: ignore[call-arg]
        if dtype is not None:
            model.to(dtype)  # type: ignore[attr-defined]
        load_tensors(model, weights)  # type: ignore[arg-type]
        model.eval()  # type: ignore[attr-defined]
        return model

    def save_pretrained(
        self,
        path: str | os.PathLike[str],
        max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
        safe_serialization: bool = True,
    ) -> list[Path]:
        """Write ``config.json`` and the weights (tied copies left out), sharded above ``max_shard_size``."""
        config: WhisperConfig = self.config  # type: ignore[attr-defined]
        config.architectures = [architecture_name(self)]
        config.torch_dtype = str(self.dtype).removeprefix("torch.")  # type: ignore[attr-defined]
        state: dict[str, Any] = self.state_dict()  # type: ignore[attr-defined]
        tensors = {name: torch_to_numpy(t.detach().contiguous().cpu(), name, Path(path)) for name, t in state.items()}
        return pretrained.save_pretrained(path, config, tensors, self.head, max_shard_size, safe_serialization)
