"""The settings of one fine-tuning run, written once for the three backends' trainers.

Every number a backend needs (the optimizer's, the schedule's, the batch order's) is read from ``TrainingOptions``,
so PyTorch, Keras and Flax train on the same batches with the same AdamW and the same learning rate at every step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from whisper_multi.errors import InputError


@dataclass(frozen=True)
class TrainingOptions:
    """What one fine-tuning run does. ``steps`` counts optimizer steps; ``epochs`` (when ``steps`` is None) counts
    passes over the training examples. One optimizer step consumes ``gradient_accumulation_steps`` batches of
    ``batch_size`` examples. The AdamW settings are Transformers' ``TrainingArguments`` defaults."""

    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-5
    warmup_steps: int = 0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float | None = 1.0
    freeze_encoder: bool = False
    gradient_checkpointing: bool = False
    bf16: bool = False
    seed: int = 0
    language: str | None = None
    task: str | None = None
    label_pad_multiple: int = 16
    eval_every: int | None = None
    checkpoint_every: int | None = None
    checkpoints_kept: int = 2

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise InputError(f"give exactly one of steps ({self.steps}) and epochs ({self.epochs}): how long to train")
        _positive("steps", self.steps)
        _positive("epochs", self.epochs)
        for name in ("batch_size", "gradient_accumulation_steps", "label_pad_multiple", "checkpoints_kept"):
            _positive(name, getattr(self, name))
        _positive("eval_every", self.eval_every)
        _positive("checkpoint_every", self.checkpoint_every)
        if self.learning_rate <= 0:
            raise InputError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise InputError(
                f"warmup_steps ({self.warmup_steps}) and weight_decay ({self.weight_decay}) must not be negative"
            )

    @property
    def examples_per_step(self) -> int:
        return self.batch_size * self.gradient_accumulation_steps

    def total_steps(self, num_examples: int) -> int:
        """Optimizer steps of the run over ``num_examples`` training examples."""
        if self.steps is not None:
            return self.steps
        assert self.epochs is not None
        return max(1, math.ceil(self.epochs * steps_per_epoch(num_examples, self)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingOptions:
        known = {field.name for field in fields(cls)}
        return cls(**{name: value for name, value in values.items() if name in known})


def steps_per_epoch(num_examples: int, options: TrainingOptions) -> int:
    """Optimizer steps in one pass: the examples are cut into whole batches (the remainder waits for the next
    epoch's order), so every batch has the same shape and a compiled step never recompiles."""
    if num_examples < 1:
        raise InputError("the training data has no examples")
    return max(1, num_examples // options.examples_per_step)


def step_seed(seed: int, step: int) -> int:
    """The seed of the random draws (dropout, SpecAugment) of optimizer step ``step``: a function of the run's seed
    and the step alone, so a resumed run draws what the uninterrupted one drew."""
    return (seed * 1_000_003 + step) % (2**31 - 1)


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise InputError(f"{name} must be positive, got {value}")
