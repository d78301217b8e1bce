"""The learning rate at each optimizer step: linear warmup from 0, then linear decay to 0 at the last step.

Transformers' ``get_linear_schedule_with_warmup``, written once over an array module (numpy, ``jax.numpy``,
``tf.experimental.numpy`` or plain Python numbers) so each backend's optimizer evaluates the same formula on its own
step counter. ``step`` counts the optimizer steps taken before this one (0 for the first), as Torch's
``LambdaLR``, Keras' ``optimizer.iterations`` and optax's ``count`` do.
"""

from __future__ import annotations

from typing import Any

from whisper_multi.training.options import TrainingOptions


def learning_rate_factor(step: Any, warmup_steps: int, total_steps: int, minimum: Any = min, maximum: Any = max) -> Any:
    """The multiplier of the base learning rate at ``step``; ``minimum``/``maximum`` are the array module's."""
    decay = maximum(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    if warmup_steps == 0:
        return decay
    # Below warmup_steps the warmup ramp is the smaller of the two, above it the decay is.
    return minimum(step / warmup_steps, decay)


def learning_rate(step: Any, options: TrainingOptions, total_steps: int, xp: Any = None) -> Any:
    """The learning rate of the step after ``step`` steps; ``xp`` is the array module (None: Python numbers)."""
    minimum, maximum = (min, max) if xp is None else (xp.minimum, xp.maximum)
    return options.learning_rate * learning_rate_factor(step, options.warmup_steps, total_steps, minimum, maximum)
