"""whisper_multi: Whisper in PyTorch, TensorFlow Keras and Flax over one framework-neutral core.

Importing this package imports no framework. The backends live in ``whisper_multi.pt``, ``whisper_multi.tf`` and
``whisper_multi.flax``; each imports only its own framework.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> module that defines it, imported on first use so `import whisper_multi` stays light.
_LAZY: dict[str, str] = {
    "WhisperConfig": "configuration",
    "WhisperGenerationConfig": "configuration",
    "WhisperFeatureExtractor": "features",
    "WhisperTokenizer": "text.tokenization",
    "WhisperTokenizerFast": "text.tokenization_fast",
    "WhisperProcessor": "processing",
    "EnglishTextNormalizer": "text.normalizers",
    "BasicTextNormalizer": "text.normalizers",
    "evaluate": "longform.evaluate",
    "finetune": "finetuning.loop",
    "TrainingOptions": "training.options",
    "WhisperMultiError": "errors",
    "ConfigError": "errors",
    "InputError": "errors",
    "TokenizerError": "errors",
    "CheckpointError": "errors",
    "ModelNotAvailableError": "errors",
    "BackendError": "errors",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'whisper_multi' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
