"""The framework-free half of ``from_pretrained`` / ``from_ct2`` / ``save_pretrained``, shared by the three backends.

Reading and checking checkpoints is the weight layer's (``whisper_multi.weights.pretrained``); each backend's
``loading`` module moves the checked arrays into its own tensors. What is left to say once is here.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, TypeVar

from whisper_multi.backends import backend_of
from whisper_multi.weights import pretrained

ModelT = TypeVar("ModelT")


def warn_fresh_parameters(weights: pretrained.PretrainedWeights, stacklevel: int) -> None:
    """Announce the parameters a checkpoint lacks (a speech-to-text checkpoint loaded into a classifier): they keep
    their random initialisation. ``stacklevel`` counts from the caller of this function."""
    if weights.not_in_checkpoint:
        warnings.warn(
            f"{weights.source} has no classification head; these parameters are newly initialised: "
            f"{', '.join(weights.not_in_checkpoint)}",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


def architecture_name(model: Any) -> str:
    """The class name every backend knows (``WhisperForConditionalGeneration``), for ``config.architectures``."""
    return type(model).__name__.removeprefix(backend_of(model).class_prefix)


class CheckpointLoadingMixin:
    """``from_ct2`` for every backend: a CTranslate2 directory is one more format ``from_pretrained`` reads."""

    @classmethod
    def from_ct2(
        cls: type[ModelT], path: str | os.PathLike[str], config: Any = None, *args: Any, **kwargs: Any
    ) -> ModelT:
        """Build the model from a CTranslate2 directory (e.g. faster-whisper's); quantized weights are dequantized.
        The other arguments are the backend's ``from_pretrained`` arguments (``torch_dtype``, ``dtype``, ...)."""
        return cls.from_pretrained(path, config, *args, **kwargs)  # type: ignore[attr-defined]
