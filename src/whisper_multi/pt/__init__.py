"""PyTorch backend: the Whisper models with Transformers' names, arguments and outputs. Imports torch only."""

from __future__ import annotations

from whisper_multi.modeling import outputs as shared
from whisper_multi.pt import modeling_whisper
from whisper_multi.pt.modeling_whisper import *  # noqa: F403 (the names in its __all__)
from whisper_multi.pt.outputs import *  # noqa: F403 (the output classes)

__all__ = [*modeling_whisper.__all__, *shared.__all__]
