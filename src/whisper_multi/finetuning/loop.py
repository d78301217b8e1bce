"""The fine-tuning run, written once for every backend: data, batches, steps, evaluation, checkpoints, resume.

A backend contributes only its optimizer step (its ``training.Trainer``). What decides the trajectory — the
batch order, the learning rate at each step, the random seed of each step — is a function of the options and the
step number alone (``whisper_multi.training``), so a run resumed from a checkpoint repeats the uninterrupted run's
losses, and the three backends train on the same batches.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from whisper_multi.backends import backend_of
from whisper_multi.errors import CheckpointError, InputError
from whisper_multi.finetuning import checkpoints
from whisper_multi.longform.datasets_io import EvaluationItem, evaluation_data
from whisper_multi.training.batches import step_batches
from whisper_multi.training.collator import SpeechSeq2SeqCollator
from whisper_multi.training.options import TrainingOptions
from whisper_multi.training.schedule import learning_rate
from whisper_multi.training.trainer import Trainer, trainer_for

# Options that may change between a run and its resumption: they do not touch the trajectory.
RESUMABLE_CHANGES = frozenset({"eval_every", "checkpoint_every", "checkpoints_kept"})
# A frozen encoder's outputs are kept in memory up to this size, so each example is encoded once.
ENCODER_CACHE_BYTES = 4 << 30


@dataclass
class StepRecord:
    """What one optimizer step did: ``step`` steps are done after it."""

    step: int
    total_steps: int
    loss: float
    learning_rate: float
    seconds: float


@dataclass
class FinetuneResult:
    out: Path
    losses: list[float]
    learning_rates: list[float]
    evaluations: list[dict[str, float]] = field(default_factory=list)

    @property
    def final_wer(self) -> float | None:
        return self.evaluations[-1]["wer"] if self.evaluations else None


def training_items(data: Any, audio_column: str | None = None, text_column: str | None = None) -> list[EvaluationItem]:
    """The examples of an audiofolder, a ``save_to_disk`` folder or a ``datasets.Dataset`` (audio read per batch);
    a list of them is returned as it is."""
    if isinstance(data, list) and all(isinstance(item, EvaluationItem) for item in data):
        return data
    items = list(evaluation_data(data, audio_column, text_column))
    if not items:
        raise InputError(f"{data} holds no training examples; expected audio files with transcripts")
    return items


def finetune(
    model: Any,
    processor: Any,
    train_data: Any,
    out: str | os.PathLike[str],
    options: TrainingOptions,
    *,
    eval_data: Any = None,
    resume: bool = False,
    on_step: Callable[[StepRecord], None] | None = None,
    on_evaluation: Callable[[int, float], None] | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` (any backend's ``WhisperForConditionalGeneration``) on ``train_data`` and write the
    result to ``out`` (loadable by every backend), checkpoints under ``out/checkpoints``.

    ``resume``: continue from the last checkpoint in ``out`` (a fresh start when there is none) with the same
    options; the losses are those an uninterrupted run has. ``on_step`` sees every step, ``on_evaluation`` every
    evaluation's (step, WER) on ``eval_data`` (every ``options.eval_every`` steps and at the end).
    """
    run = _Run(model, processor, training_items(train_data), Path(out), options, eval_data)
    if resume:
        run.resume()
    run.start_trainer()
    for step in range(run.state["step"], run.total_steps):
        record = run.step(step)
        if on_step is not None:
            on_step(record)
        run.after_step(step + 1, on_evaluation)
    run.finish(on_evaluation)
    return FinetuneResult(run.out, run.state["losses"], run.state["learning_rates"], run.state["evaluations"])


class _Run:
    """The state of one run between steps."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        items: list[EvaluationItem],
        out: Path,
        options: TrainingOptions,
        eval_data: Any,
    ):
        self.model, self.processor, self.items, self.out, self.options = model, processor, items, out, options
        self.eval_data = None if eval_data is None else evaluation_data(eval_data)
        self.total_steps = options.total_steps(len(items))
        self.collator = SpeechSeq2SeqCollator.for_model(
            processor, model.config, options.label_pad_multiple, language=options.language, task=options.task
        )
        self.state = _new_state(options, self.total_steps, len(items), backend_of(model).key)
        self.checkpoint: Path | None = None
        self.trainer: Trainer | None = None
        self.encoder_cache: dict[int, np.ndarray] | None = {} if _encoder_is_constant(model.config, options) else None

    def resume(self) -> None:
        checkpoints.remove_partial_checkpoints(self.out)
        self.checkpoint = checkpoints.latest_checkpoint(self.out)
        if self.checkpoint is None:
            return
        state = checkpoints.read_state(self.checkpoint)
        _check_same_run(state, self.state, self.checkpoint)
        self.state = state
        self.model = type(self.model).from_pretrained(self.checkpoint)

    def start_trainer(self) -> None:
        self.trainer = trainer_for(self.model, self.options, self.total_steps)
        if self.checkpoint is not None:
            self.trainer.load_state(self.checkpoint)
        if (
            self.encoder_cache is not None
            and len(self.items) * _encoder_output_bytes(self.model.config) > ENCODER_CACHE_BYTES
        ):
            self.encoder_cache = None

    def step(self, step: int) -> StepRecord:
        assert self.trainer is not None
        started = time.perf_counter()
        batches = [self.batch(indices) for indices in step_batches(step, len(self.items), self.options)]
        loss = float(self.trainer.train_step(batches, step))
        rate = float(learning_rate(step, self.options, self.total_steps))
        if not np.isfinite(loss):
            raise InputError(
                f"the loss of step {step + 1} is {loss}: lower --learning-rate (now {self.options.learning_rate})"
            )
        self.state["losses"].append(loss)
        self.state["learning_rates"].append(rate)
        self.state["step"] = step + 1
        return StepRecord(step + 1, self.total_steps, loss, rate, time.perf_counter() - started)

    def batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The collator's batch of these examples; a frozen encoder's outputs replace the features once known."""
        items = [self.items[int(index)] for index in indices]
        batch = self.collator([item.waveform() for item in items], [item.reference for item in items])
        if self.encoder_cache is None:
            return batch
        assert self.trainer is not None
        missing = [row for row, index in enumerate(indices) if int(index) not in self.encoder_cache]
        if missing:
            encoded = self.trainer.encode(batch["input_features"][missing])
            for row, states in zip(missing, encoded):
                self.encoder_cache[int(indices[row])] = states
        batch["encoder_outputs"] = np.stack([self.encoder_cache[int(index)] for index in indices])
        del batch["input_features"]
        return batch

    def after_step(self, done: int, on_evaluation: Callable[[int, float], None] | None) -> None:
        every_eval, every_save = self.options.eval_every, self.options.checkpoint_every
        if every_eval and done % every_eval == 0 and done < self.total_steps:
            self.evaluate(done, on_evaluation)
        if every_save and done % every_save == 0:
            checkpoints.write_checkpoint(self.out, done, self.write_checkpoint, self.options.checkpoints_kept)

    def evaluate(self, done: int, on_evaluation: Callable[[int, float], None] | None) -> None:
        if self.eval_data is None:
            return
        from whisper_multi.longform.evaluate import evaluate

        assert self.trainer is not None
        result = evaluate(self.trainer.model, self.processor, self.eval_data, language=self.options.language)
        self.state["evaluations"].append({"step": done, "wer": result.wer})
        if on_evaluation is not None:
            on_evaluation(done, result.wer)

    def write_checkpoint(self, directory: Path) -> None:
        assert self.trainer is not None
        self.write_model(directory)
        self.trainer.save_state(directory)
        checkpoints.write_state(directory, self.state)

    def write_model(self, directory: Path) -> None:
        assert self.trainer is not None
        self.trainer.model.save_pretrained(directory)
        self.processor.save_pretrained(directory)

    def finish(self, on_evaluation: Callable[[int, float], None] | None) -> None:
        """Evaluate the final model and write it into ``out`` (each file replaced whole)."""
        if not self.state["evaluations"] or self.state["evaluations"][-1]["step"] != self.total_steps:
            self.evaluate(self.total_steps, on_evaluation)
        self.out.mkdir(parents=True, exist_ok=True)
        staging = self.out / f".final{checkpoints.PARTIAL_MARK}{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        self.write_model(staging)
        checkpoints.write_state(staging, self.state)
        for path in sorted(staging.iterdir()):
            os.replace(path, self.out / path.name)
        staging.rmdir()


def _new_state(options: TrainingOptions, total_steps: int, examples: int, backend: str) -> dict[str, Any]:
    return {
        "step": 0,
        "total_steps": total_steps,
        "examples": examples,
        "backend": backend,
        "options": options.to_dict(),
        "losses": [],
        "learning_rates": [],
        "evaluations": [],
    }


def _check_same_run(saved: dict[str, Any], new: dict[str, Any], checkpoint: Path) -> None:
    """A resumed run must be the run that was interrupted: same data size, backend and trajectory options."""
    differences = [
        f"{name}: {saved['options'].get(name)!r} in the checkpoint, {value!r} now"
        for name, value in new["options"].items()
        if name not in RESUMABLE_CHANGES and saved["options"].get(name) != value
    ]
    for name in ("examples", "backend", "total_steps"):
        if saved.get(name) != new[name]:
            differences.append(f"{name}: {saved.get(name)!r} in the checkpoint, {new[name]!r} now")
    if differences:
        raise CheckpointError(
            f"--resume continues the run of {checkpoint}, but this run differs: {'; '.join(differences)}. "
            "Give the same data and options, or a new output folder to start a new run"
        )


def _encoder_is_constant(config: Any, options: TrainingOptions) -> bool:
    """A frozen encoder without dropout or SpecAugment gives each example the same outputs at every step."""
    if not options.freeze_encoder or getattr(config, "apply_spec_augment", False):
        return False
    rates = ("dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop")
    return all(not getattr(config, name, 0.0) for name in rates)


def _encoder_output_bytes(config: Any) -> int:
    return int(config.max_source_positions) * int(config.d_model) * 4
