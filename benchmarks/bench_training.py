"""One fine-tuning step (case 7): forward, backward and the AdamW update of every backend's ``Trainer``, against
Transformers 4.57's PyTorch ``WhisperForConditionalGeneration`` doing the same step, on the real tiny.en weights in
float32.

The batch: 8 rows of the log-mel of tests/fixtures/audio/speech_en_25s.wav padded to 30 s, (8, 80, 3000), and as
labels the first 24 tokens of its transcript as the collator makes them (``<|notimestamps|>`` text ...
``<|endoftext|>``, the start token left to the shift), with ``decoder_input_ids`` the labels shifted right. It is
made once in our environment and stored in ``$WHISPER_MULTI_BENCH_CACHE``, so both sides read the same arrays.

- ours (``full``, ``frozen-encoder``): ``whisper_multi.<backend>.training.Trainer(model, TrainingOptions(steps=N,
  batch_size=8, learning_rate=1e-5, freeze_encoder=...), total_steps=N)`` and ``train_step([batch], step)`` with
  step 0, 1, 2, ... The defaults stand: AdamW (0.9, 0.999, 1e-8), no weight decay, gradients clipped to a global
  norm of 1.0, the linear schedule. PyTorch runs eagerly, TF one XLA-compiled step, Flax one jitted step.
- Transformers: the same weights (our PyTorch model's ``save_pretrained``, read by Transformers' ``from_pretrained``),
  ``model.train()``, ``model(input_features, labels, decoder_input_ids).loss.backward()``,
  ``clip_grad_norm_(1.0)``, ``torch.optim.AdamW`` over the parameters that require gradients (Transformers'
  ``Trainer`` groups: decay on weights, none on biases and layer norms, both 0 here) and its linear schedule;
  ``model.freeze_encoder()`` for the frozen variant. ``USE_TF=0 USE_FLAX=0`` keep Transformers from importing the
  TensorFlow and jax of the peers' environment, so its peak RSS is that of PyTorch alone.

Each process makes one untimed step in its setup (TF and Flax compile there, PyTorch's AdamW allocates its moments),
then the harness's warm-up step, then the timed steps (median). Thread settings are every framework's default, the
same for all: no thread variable is set, and torch, TF's intra-op pool and XLA's Eigen pool each use every logical
core. Peak RSS is the measured process's high-water mark. Target (issue 21): every backend's step ≤ 1.0× Transformers'.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, Case, Peer, Run, Settings, Unavailable, cache_dir, model_dir, ours_python
from whisper_multi.backends import BACKENDS

ROWS, SMOKE_ROWS = 8, 1
LABEL_TOKENS = 24  # the transcript's first 23 tokens after the start token, then <|endoftext|>
LEARNING_RATE = 1e-5
TARGET = 1.0  # each backend's step at most Transformers PyTorch's time
SETUP_STEPS = 1  # untimed steps in the setup, before the harness's warm-up
VARIANTS = {"full": False, "frozen-encoder": True}  # name -> freeze_encoder
TRANSCRIPT = ROOT / "tests" / "fixtures" / "audio" / "speech_en_25s.txt"


# --- the shared inputs, made once in our environment ----------------------------------------------------------------
def prepare(directory: Path, rows: int) -> None:
    """Write ``directory/transformers`` (our PyTorch model's ``save_pretrained``) and ``directory/batch-<rows>.npz``.
    Runs in our environment (the embedded model and our tokenizer live there)."""
    import numpy as np

    from benchmarks.harness import speech_features
    from whisper_multi import WhisperTokenizer
    from whisper_multi.backends import model_class
    from whisper_multi.modeling.utils import shift_tokens_right

    model = model_class("pt").from_pretrained(model_dir())
    if not (directory / "transformers" / "config.json").exists():
        model.save_pretrained(directory / "transformers")
    tokenizer = WhisperTokenizer.from_pretrained(model_dir())
    tokenizer.set_prefix_tokens(language=None, task=None, predict_timestamps=False)
    ids = list(tokenizer(TRANSCRIPT.read_text(encoding="utf-8").strip())["input_ids"])
    config = model.config
    row = [*ids[1:LABEL_TOKENS], config.eos_token_id]  # the shift puts the start token back
    labels = np.asarray([row] * rows, dtype=np.int64)
    batch = {
        "input_features": speech_features(rows),
        "labels": labels,
        "decoder_input_ids": shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id),
    }
    np.savez(directory / f"batch-{rows}.npz", **batch)


def _prepared(settings: Settings) -> tuple[Path, dict[str, Any]]:
    """(Transformers' model directory, the batch), made by ``prepare`` in our environment on first use."""
    import numpy as np

    rows = SMOKE_ROWS if settings.smoke else ROWS
    directory = cache_dir() / "training-tiny.en"
    batch_file = directory / f"batch-{rows}.npz"
    if not batch_file.exists() or not (directory / "transformers" / "config.json").exists():
        directory.mkdir(parents=True, exist_ok=True)
        code = "import sys; from pathlib import Path; from benchmarks.bench_training import prepare; "
        code += "prepare(Path(sys.argv[1]), int(sys.argv[2]))"
        command = [ours_python(), "-c", code, str(directory), str(rows)]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1][:300]
            raise Unavailable(f"preparing the training inputs in our environment failed: {last}")
    with np.load(batch_file) as stored:
        batch = {key: stored[key] for key in stored.files}
    return directory / "transformers", batch


def _total_steps(settings: Settings) -> int:
    return SETUP_STEPS + settings.warmups + settings.runs


def _stepper(step: Callable[[int], object], settings: Settings) -> Callable[[], object]:
    """The measured call: the next step, numbered 0, 1, 2, ... after the setup's untimed steps."""
    taken = 0
    for _ in range(0 if settings.smoke else SETUP_STEPS):
        step(taken)
        taken += 1

    def call() -> object:
        nonlocal taken
        loss = step(taken)
        taken += 1
        return loss

    return call


# --- ours -------------------------------------------------------------------------------------------------------------
def _ours(backend: str, freeze_encoder: bool, settings: Settings) -> Callable[[], object]:
    from whisper_multi.training.options import TrainingOptions

    _, batch = _prepared(settings)
    spec = BACKENDS[backend]
    model = spec.model_class().from_pretrained(model_dir())
    steps = _total_steps(settings)
    options = TrainingOptions(
        steps=steps, batch_size=len(batch["labels"]), learning_rate=LEARNING_RATE, freeze_encoder=freeze_encoder
    )
    trainer = spec.module("training").Trainer(model, options, total_steps=steps)
    return _stepper(lambda step: trainer.train_step([batch], step), settings)


# --- Transformers -------------------------------------------------------------------------------------------------
def _transformers(freeze_encoder: bool, settings: Settings) -> Callable[[], object]:
    os.environ.setdefault("USE_TF", "0")  # the peers' environment also holds TF and jax: PyTorch only
    os.environ.setdefault("USE_FLAX", "0")
    try:
        import torch
        from transformers import WhisperForConditionalGeneration, get_linear_schedule_with_warmup
    except ImportError as error:
        raise Unavailable(f"Transformers (PyTorch) is not installed: {error}") from error
    directory, batch = _prepared(settings)
    model = WhisperForConditionalGeneration.from_pretrained(directory)
    if freeze_encoder:
        model.freeze_encoder()
    model.train()
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    no_decay = [p for name, p in named if name.endswith(".bias") or "layer_norm" in name]
    decay = [p for name, p in named if not (name.endswith(".bias") or "layer_norm" in name)]
    groups = [{"params": decay, "weight_decay": 0.0}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=LEARNING_RATE, betas=(0.9, 0.999), eps=1e-8)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, _total_steps(settings))
    parameters = [p for _, p in named]
    inputs = {key: torch.from_numpy(value) for key, value in batch.items()}

    def step(_: int) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        scheduler.step()
        return float(loss.detach())

    return _stepper(step, settings)


def cases() -> list[Case]:
    result = []
    for variant, frozen in VARIANTS.items():
        theirs = Run(f"transformers pt ({variant})", partial(_transformers, frozen), env="peers")
        for backend in BACKENDS:
            ours = Run(f"whisper_multi {backend} ({variant})", partial(_ours, backend, frozen))
            name = f"training/{backend}/{variant}"
            peer = Peer(theirs, target=TARGET)
            result.append(Case(name, "training", ours, (peer,), report_peak_rss=True))
    return result
