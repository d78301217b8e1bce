"""Fine-tuning in PyTorch: ``torch.optim.AdamW``, a ``LambdaLR`` over the core schedule, and the backend's ``Trainer``
(the protocol of ``whisper_multi.training.trainer``).

``make_optimizer``, ``make_scheduler`` and ``train`` are the pieces a user's own loop takes; ``Trainer`` is built
from the same two, so the library's loop and a hand-written one make the very same updates. PyTorch parameter names
are the canonical names of ``weights.table``, so ``training.optimizer`` is asked with them directly.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from whisper_multi.errors import CheckpointError, InputError
from whisper_multi.training.optimizer import is_decayed, is_trained
from whisper_multi.training.options import TrainingOptions, step_seed
from whisper_multi.training.schedule import learning_rate_factor
from whisper_multi.training.trainer import OPTIMIZER_STATE
from whisper_multi.weights.hf_pt import torch_to_numpy
from whisper_multi.weights.table import tied_parameters

Batch = Mapping[str, Any]  # "input_features" or "encoder_outputs", "labels", "decoder_input_ids": numpy or torch


def trained_parameters(model: nn.Module, options: TrainingOptions) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """The parameters AdamW updates, as (decayed, not decayed): those ``training.optimizer.is_trained`` names that
    also require gradients. ``named_parameters`` yields a tied parameter once, under its stored name."""
    decayed: list[nn.Parameter] = []
    not_decayed: list[nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and is_trained(name, options):
            (decayed if is_decayed(name) else not_decayed).append(parameter)
    if not decayed and not not_decayed:
        raise InputError(
            f"{type(model).__name__} has no parameter to train (freeze_encoder={options.freeze_encoder}, and "
            "requires_grad is off elsewhere): unfreeze some parameters"
        )
    return decayed, not_decayed


def make_optimizer(model: nn.Module, options: TrainingOptions) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over ``model``'s trained parameters: weight decay on the weights, none on biases and
    layer norms (Transformers' ``Trainer`` rule), the betas and epsilon of ``options``."""
    decayed, not_decayed = trained_parameters(model, options)
    groups = [
        {"params": decayed, "weight_decay": options.weight_decay},
        {"params": not_decayed, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        [group for group in groups if group["params"]],
        lr=options.learning_rate,
        betas=(options.adam_beta1, options.adam_beta2),
        eps=options.adam_epsilon,
        weight_decay=options.weight_decay,
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer, options: TrainingOptions, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``options.warmup_steps``, then linear decay to 0 at ``total_steps``
    (``training.schedule``): call ``step()`` after each ``optimizer.step()``."""
    if total_steps < 1:
        raise InputError(f"total_steps must be at least 1, got {total_steps}: the number of optimizer steps")

    def factor(step: int) -> float:
        return float(learning_rate_factor(step, options.warmup_steps, total_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(
    model: nn.Module, batches: Iterable[Batch], options: TrainingOptions, total_steps: int | None = None
) -> list[float]:
    """Train ``model`` in place on ``batches`` (micro-batches, ``options.gradient_accumulation_steps`` to an
    optimizer step, a short last group still making a step) and return each step's mean loss. ``total_steps``
    (default: ``options.steps``, else one step per group of ``batches``) sets the schedule's length and stops the
    loop; ``Trainer`` makes each step."""
    if total_steps is None:
        total_steps = options.steps if options.steps is not None else _steps_in(batches, options)
    trainer = Trainer(model, options, total_steps)
    losses = []
    for step, group in enumerate(_groups(batches, options.gradient_accumulation_steps)):
        if step == total_steps:
            break
        losses.append(trainer.train_step(group, step))
    return losses


def _steps_in(batches: Iterable[Batch], options: TrainingOptions) -> int:
    if not hasattr(batches, "__len__"):
        raise InputError(
            f"train() cannot tell how many steps a {type(batches).__name__} makes (options.steps is None): "
            "pass total_steps, set options.steps, or pass a list of batches"
        )
    return max(1, math.ceil(len(batches) / options.gradient_accumulation_steps))  # type: ignore[arg-type]


def _groups(batches: Iterable[Batch], size: int) -> Iterator[list[Batch]]:
    group: list[Batch] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


class Trainer:
    """One optimizer step of a PyTorch ``WhisperForConditionalGeneration`` (``training.trainer.Trainer``):
    ``make_optimizer``'s AdamW, ``make_scheduler``'s learning rate, gradients averaged over the micro-batches and
    clipped to ``max_grad_norm``. Freezes the encoder and turns on gradient checkpointing as ``options`` ask."""

    def __init__(self, model: Any, options: TrainingOptions, total_steps: int):
        self.model = model  # a WhisperForConditionalGeneration
        self.options = options
        self.total_steps = total_steps
        if options.freeze_encoder:
            self.model.freeze_encoder()
        if options.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.optimizer = make_optimizer(model, options)
        self.scheduler = make_scheduler(self.optimizer, options, total_steps)
        self.parameters = [parameter for group in self.optimizer.param_groups for parameter in group["params"]]

    def train_step(self, batches: Sequence[Batch], step: int) -> float:
        """One optimizer step over the micro-batches ``batches``; returns the mean of their losses. The model is
        left in eval mode, ready for ``generate``."""
        self._check_step(batches, step)
        torch.manual_seed(step_seed(self.options.seed, step))  # dropout, SpecAugment and LayerDrop draws
        self.optimizer.zero_grad(set_to_none=True)
        self.model.train()
        try:
            losses = [self._backward(batch, len(batches)) for batch in batches]
        finally:
            self.model.eval()
        if self.options.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.options.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        return sum(losses) / len(losses)

    def _check_step(self, batches: Sequence[Batch], step: int) -> None:
        if not batches:
            raise InputError(f"train_step(step={step}) got no batches: pass at least one micro-batch")
        # The learning rate follows the scheduler's own count, so a step out of order would train at another rate.
        taken = self.scheduler.last_epoch
        if step != taken:
            raise InputError(
                f"train_step(step={step}) but the optimizer has taken {taken} steps: pass steps in order from 0, "
                f"or load_state() the checkpoint saved after {step} steps first"
            )

    def _backward(self, batch: Batch, count: int) -> float:
        """Forward and backward of one micro-batch, its gradient weighted ``1 / count``; returns its loss."""
        with self._autocast():
            loss = self.model(**self._inputs(batch)).loss
        (loss / count).backward()
        return float(loss.detach())

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.options.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.model.device.type, dtype=torch.bfloat16)

    def _inputs(self, batch: Batch) -> dict[str, Any]:
        """The batch's arrays as tensors on the model's device, floating ones in the model's dtype."""
        device, dtype = self.model.device, self.model.dtype
        inputs: dict[str, Any] = {}
        for name, array in batch.items():
            tensor = torch.as_tensor(array).to(device)
            inputs[name] = tensor.to(dtype) if tensor.is_floating_point() else tensor
        if "encoder_outputs" in inputs:
            inputs["encoder_outputs"] = (inputs["encoder_outputs"],)  # (last hidden state,)
        return inputs

    @torch.no_grad()
    def encode(self, input_features: np.ndarray) -> np.ndarray:
        """The encoder's last hidden state (batch, positions, d_model) float32, in eval mode."""
        self.model.eval()
        features = torch.as_tensor(input_features).to(self.model.device, self.model.dtype)
        hidden = self.model.get_encoder()(features).last_hidden_state
        return hidden.float().cpu().numpy()

    def state_path(self, directory: Path) -> Path:
        return Path(directory) / f"{OPTIMIZER_STATE}.pt"

    def save_state(self, directory: Path) -> None:
        """``optimizer.pt``: AdamW's moments and step counts, the scheduler's count and the torch RNG, written to a
        temporary name first so a crash never leaves half a file under the real one."""
        path = self.state_path(directory)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": torch.get_rng_state(),
        }
        temporary = path.with_name(f".{path.name}.tmp")
        torch.save(state, temporary)
        os.replace(temporary, path)

    def load_state(self, directory: Path) -> None:
        """Read back ``save_state``'s file; the optimizer's moments move to the parameters' device."""
        path = self.state_path(directory)
        if not path.is_file():
            raise CheckpointError(f"{path} does not exist: the checkpoint has no PyTorch optimizer state to resume")
        state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as error:
            raise CheckpointError(
                f"{path}: the optimizer state does not fit this model's trained parameters ({error}); resume with "
                "the options (freeze_encoder) the checkpoint was trained with"
            ) from error
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])

    def canonical_weights(self) -> dict[str, np.ndarray]:
        """Every parameter (a copy) under its canonical name, the output projection's tied copy left out."""
        config = self.model.config
        tied = set(tied_parameters(self.model.head)) if getattr(config, "tie_word_embeddings", True) else set()
        return {
            name: torch_to_numpy(tensor.detach().to("cpu", copy=True), name, Path(type(self.model).__name__))
            for name, tensor in self.model.state_dict().items()
            if name not in tied
        }
