"""PyTorch's view of the shared output classes (``whisper_multi.modeling.outputs``)."""

from __future__ import annotations

import torch

from whisper_multi.modeling.outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    ModelOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    SequenceClassifierOutput,
)

Cache = tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], ...]

__all__ = [
    "BaseModelOutput",
    "BaseModelOutputWithPastAndCrossAttentions",
    "Cache",
    "ModelOutput",
    "Seq2SeqLMOutput",
    "Seq2SeqModelOutput",
    "SequenceClassifierOutput",
]
