"""Flax backend: the Whisper models with Transformers' names, arguments and outputs. Imports jax and flax only."""

from __future__ import annotations

from whisper_multi.flax.loading import params_from_state_dict, state_dict_from_params, to_dtype
from whisper_multi.flax.modeling_flax_whisper import (
    FlaxWhisperAttention,
    FlaxWhisperDecoder,
    FlaxWhisperDecoderLayer,
    FlaxWhisperEncoder,
    FlaxWhisperEncoderLayer,
    FlaxWhisperForAudioClassification,
    FlaxWhisperForAudioClassificationModule,
    FlaxWhisperForConditionalGeneration,
    FlaxWhisperForConditionalGenerationModule,
    FlaxWhisperModel,
    FlaxWhisperModule,
    FlaxWhisperPreTrainedModel,
)
from whisper_multi.modeling.outputs import (
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
    "FlaxWhisperAttention",
    "FlaxWhisperDecoder",
    "FlaxWhisperDecoderLayer",
    "FlaxWhisperEncoder",
    "FlaxWhisperEncoderLayer",
    "FlaxWhisperForAudioClassification",
    "FlaxWhisperForAudioClassificationModule",
    "FlaxWhisperForConditionalGeneration",
    "FlaxWhisperForConditionalGenerationModule",
    "FlaxWhisperModel",
    "FlaxWhisperModule",
    "FlaxWhisperPreTrainedModel",
    "ModelOutput",
    "Seq2SeqLMOutput",
    "Seq2SeqModelOutput",
    "SequenceClassifierOutput",
    "params_from_state_dict",
    "state_dict_from_params",
    "to_dtype",
]
