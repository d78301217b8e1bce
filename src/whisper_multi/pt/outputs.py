"""PyTorch's view of the shared output classes (``whisper_multi.modeling.outputs``)."""

from __future__ import annotations

import torch

from whisper_multi.modeling import outputs as shared
from whisper_multi.modeling.outputs import *  # noqa: F403 (the shared classes, under their own names)

Cache = tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], ...]

__all__ = [*shared.__all__, "Cache"]
