"""PyTorch backend: the Whisper models with Transformers' names, arguments and outputs. Imports torch only."""

from __future__ import annotations

from whisper_multi.pt.modeling_whisper import (
    WhisperAttention,
    WhisperDecoder,
    WhisperDecoderLayer,
    WhisperEncoder,
    WhisperEncoderLayer,
    WhisperForAudioClassification,
    WhisperForConditionalGeneration,
    WhisperModel,
    WhisperPreTrainedModel,
)
from whisper_multi.pt.outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    ModelOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    SequenceClassifierOutput,
)

__all__ = [
    "BaseModelOutput",
    "BaseModelOutputWithPastAndCrossAttentions",
    "ModelOutput",
    "Seq2SeqLMOutput",
    "Seq2SeqModelOutput",
    "SequenceClassifierOutput",
    "WhisperAttention",
    "WhisperDecoder",
    "WhisperDecoderLayer",
    "WhisperEncoder",
    "WhisperEncoderLayer",
    "WhisperForAudioClassification",
    "WhisperForConditionalGeneration",
    "WhisperModel",
    "WhisperPreTrainedModel",
]
