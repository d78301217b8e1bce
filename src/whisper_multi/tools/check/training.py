"""The ``training`` stage group: ten AdamW steps in each framework from the same weights on the same batch, through
each backend's own ``training.Trainer`` (a Torch step, a Keras step compiled with XLA, a jitted optax step).

Rows: ``training_losses``, the worst relative difference of a step's loss; ``training_weights``, the worst
difference of a parameter after the last step relative to its largest magnitude. Dropout, LayerDrop and SpecAugment
are off: they draw different random numbers in each framework by design.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from whisper_multi.configuration import WhisperConfig
from whisper_multi.modeling.utils import shift_tokens_right
from whisper_multi.tools.check.frameworks import pairs
from whisper_multi.tools.check.rows import Row, judged
from whisper_multi.tools.check.run import Run

TRAINING_STEPS = 10
TRAINING_SETTINGS: dict[str, Any] = {
    "learning_rate": 1e-5,
    "warmup_steps": 2,
    "weight_decay": 0.01,
    "max_grad_norm": 1.0,
}
WITHOUT_RANDOM_DRAWS = {
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "encoder_layerdrop": 0.0,
    "decoder_layerdrop": 0.0,
    "apply_spec_augment": False,
}


def training(run: Run) -> None:
    trajectories: dict[str, tuple[list[float], dict[str, np.ndarray]]] = {}
    for name in run.frameworks:
        found = run.guarded("training", name, functools.partial(train, run, name))
        if found is not None:
            trajectories[name] = found
    for a, b in pairs(run.wanted()):
        blocked = run.blocked([a, b], "training")
        if blocked:
            run.unavailable("training_losses", f"{a}-{b}", *blocked)
            run.unavailable("training_weights", f"{a}-{b}", *blocked)
            continue
        (losses_a, weights_a), (losses_b, weights_b) = trajectories[a], trajectories[b]
        run.add(judged(_losses_row(run, f"{a}-{b}", losses_a, losses_b)))
        run.add(judged(_weights_row(run, f"{a}-{b}", weights_a, weights_b)))


def train(run: Run, name: str) -> tuple[list[float], dict[str, np.ndarray]]:
    """``TRAINING_STEPS`` steps of framework ``name`` on the run's batch: the losses and the final weights."""
    from whisper_multi.training.options import TrainingOptions
    from whisper_multi.training.trainer import trainer_for

    config = WhisperConfig.from_dict({**run.subject.config.to_dict(), **WITHOUT_RANDOM_DRAWS})
    model = run.adapter(name).build(config, run.subject.tensors, "conditional_generation")
    batch = _unfamiliar_batch(run.inputs.features, run.inputs.labels, config)
    options = TrainingOptions(steps=TRAINING_STEPS, batch_size=len(run.inputs.features), **TRAINING_SETTINGS)
    trainer = trainer_for(model, options, TRAINING_STEPS)
    losses = [float(trainer.train_step([batch], step)) for step in range(TRAINING_STEPS)]
    return losses, trainer.canonical_weights()


def _unfamiliar_batch(features: np.ndarray, labels: np.ndarray, config: WhisperConfig) -> dict[str, np.ndarray]:
    """The run's features with its labels' inner tokens reversed (the first and last kept): a transcript the model
    does not already give, so the loss stays far from zero over the ten steps, where its relative difference
    measures the frameworks rather than float32 round-off of a vanishing number (real weights' labels are their
    own greedy output, whose loss training drives towards zero)."""
    labels = np.array(labels, dtype=np.int64)
    labels[:, 1:-1] = labels[:, -2:0:-1]
    return {
        "input_features": features,
        "labels": labels,
        "decoder_input_ids": shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id),
    }


def _losses_row(run: Run, pair: str, first: list[float], second: list[float]) -> Row:
    relative = [abs(a - b) / max(abs(a), 1e-12) for a, b in zip(first, second)]
    worst = int(np.argmax(relative))
    note = f"{TRAINING_STEPS} steps; loss {first[0]:.4f} -> {first[-1]:.4f}; worst at step {worst + 1}"
    return _row(run, "training_losses", pair, float(max(relative)), float(np.mean(relative)), note)


def _weights_row(run: Run, pair: str, first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> Row:
    names = sorted(set(first) & set(second))
    relative = {
        name: float(np.abs(first[name] - second[name]).max()) / max(float(np.abs(first[name]).max()), 1e-12)
        for name in names
    }
    worst_name = max(relative, key=lambda name: relative[name])
    note = f"{len(names)} parameters after {TRAINING_STEPS} steps; worst {worst_name}"
    only = sorted(set(first) ^ set(second))
    if only:
        note += f"; held by one framework only: {', '.join(only)}"
    return _row(run, "training_weights", pair, relative[worst_name], float(np.mean(list(relative.values()))), note)


def _row(run: Run, stage: str, pair: str, worst: float, mean: float, note: str) -> Row:
    tolerances = run.tolerances
    return Row(
        run.subject.config_name, run.subject.source, stage, pair, worst, mean, tolerances.for_stage(stage), "",
        measure="relative", note=note,
    )  # fmt: skip
