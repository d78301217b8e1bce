"""Which training examples make up each batch: a function of the run's seed and the step alone.

Every epoch is a permutation drawn from ``(seed, epoch)``; a step takes the next ``gradient_accumulation_steps``
batches of it. Because nothing else decides the order, the three backends see the same batches, and a resumed run
needs no saved position: step ``s`` always trains on ``step_batches(s)``.
"""

from __future__ import annotations

import numpy as np

from whisper_multi.training.options import TrainingOptions, steps_per_epoch


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The examples' indices in the order of ``epoch``."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def step_batches(step: int, num_examples: int, options: TrainingOptions) -> list[np.ndarray]:
    """The example indices of each (micro-)batch of optimizer step ``step``: ``gradient_accumulation_steps`` arrays
    of ``batch_size`` indices (fewer only when the whole data set is smaller than one batch)."""
    per_epoch = steps_per_epoch(num_examples, options)
    epoch, position = divmod(step, per_epoch)
    order = epoch_order(num_examples, options.seed, epoch)
    size = min(options.batch_size, num_examples)
    first = position * options.gradient_accumulation_steps
    return [order[(first + i) * size : (first + i + 1) * size] for i in range(options.gradient_accumulation_steps)]
