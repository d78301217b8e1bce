"""TensorFlow's view of the shared output classes (``whisper_multi.modeling.outputs``).

``tf.function`` returns only structures that ``tf.nest`` can take apart; the shared dataclasses cannot, so each is
subclassed here with the two methods of TensorFlow's nest protocol. The subclasses are still instances of the shared
classes (``isinstance`` holds) and behave the same by attribute, name, position and tuple.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import tensorflow as tf

from whisper_multi.modeling import outputs as modeling_outputs

Cache = tuple[tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor], ...]


class _Nestable:
    """``tf.nest`` protocol: the field names are the metadata, the field values (None included) the components."""

    def __tf_flatten__(self) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        names = tuple(field.name for field in fields(self))  # type: ignore[arg-type]
        return names, tuple(getattr(self, name) for name in names)

    @classmethod
    def __tf_unflatten__(cls, metadata: tuple[str, ...], components: tuple[Any, ...]) -> Any:
        return cls(**dict(zip(metadata, components)))


class ModelOutput(_Nestable, modeling_outputs.ModelOutput):
    pass


class BaseModelOutput(_Nestable, modeling_outputs.BaseModelOutput):
    pass


class BaseModelOutputWithPastAndCrossAttentions(_Nestable, modeling_outputs.BaseModelOutputWithPastAndCrossAttentions):
    pass


class Seq2SeqModelOutput(_Nestable, modeling_outputs.Seq2SeqModelOutput):
    pass


class Seq2SeqLMOutput(_Nestable, modeling_outputs.Seq2SeqLMOutput):
    pass


class SequenceClassifierOutput(_Nestable, modeling_outputs.SequenceClassifierOutput):
    pass


__all__ = [
    "BaseModelOutput",
    "BaseModelOutputWithPastAndCrossAttentions",
    "Cache",
    "ModelOutput",
    "Seq2SeqLMOutput",
    "Seq2SeqModelOutput",
    "SequenceClassifierOutput",
]
