"""What the fine-tuning loop asks of a backend: one ``Trainer`` class in each backend's ``training`` module.

The loop (``training.loop``) is written once; a backend only turns batches into an optimizer step in its own idiom
(a Torch loop, Keras ``compile``/``train_on_batch``, a jitted optax step) and saves what it needs to resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from whisper_multi.training.options import TrainingOptions

# The names of a backend's files inside a checkpoint directory (beside the model's config.json/model.safetensors).
OPTIMIZER_STATE = "optimizer"


class Trainer(Protocol):
    """One backend's optimizer step. Built as ``Trainer(model, options, total_steps)``: AdamW with
    ``options``' betas, epsilon and weight decay (``optimizer.is_decayed``), the learning rate of
    ``schedule.learning_rate`` at each step, gradients clipped to ``max_grad_norm`` (global norm), only the
    parameters ``optimizer.is_trained`` names updated."""

    model: Any  # the backend's WhisperForConditionalGeneration, holding the current weights

    def train_step(self, batches: list[dict[str, np.ndarray]], step: int) -> float:
        """One optimizer step over ``batches`` (the gradient accumulation's micro-batches, each the collator's
        dict), random draws seeded by ``options.step_seed(seed, step)``; returns the mean of their losses."""
        ...

    def encode(self, input_features: np.ndarray) -> np.ndarray:
        """The encoder's last hidden state (batch, positions, d_model) float32, deterministic."""
        ...

    def save_state(self, directory: Path) -> None:
        """Write the optimizer's state (moments, step count) under ``directory``; the weights are saved apart."""
        ...

    def load_state(self, directory: Path) -> None:
        """Read back what ``save_state`` wrote, after the model's weights have been loaded."""
        ...

    def canonical_weights(self) -> dict[str, np.ndarray]:
        """Every parameter as a canonical numpy tensor (``weights.table`` names, PyTorch layout)."""
        ...


def trainer_for(model: Any, options: TrainingOptions, total_steps: int) -> Trainer:
    """The ``Trainer`` of ``model``'s backend."""
    from whisper_multi.backends import backend_of

    trainer_class = backend_of(model).module("training").Trainer
    return trainer_class(model, options, total_steps)  # type: ignore[no-any-return]
