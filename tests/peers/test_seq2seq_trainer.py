"""Our PyTorch WhisperForConditionalGeneration trains under Transformers 4.57's Seq2SeqTrainer, step for step as our
own ``whisper_multi.pt.training.Trainer`` trains it with the same settings.

Runs in the `peers` nox session (Transformers 4.57 and accelerate beside whisper_multi installed without its
dependencies). The data set holds one collator-shaped batch, given to Transformers' loader as one item, so its
shuffling cannot reorder anything: each of the three steps trains on that batch in both trainers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers", reason="Transformers runs in the `nox -s peers` session")
pytest.importorskip("accelerate", reason="Transformers' Trainer needs accelerate (the `nox -s peers` session)")

from whisper_multi.configuration import WhisperConfig  # noqa: E402
from whisper_multi.modeling.utils import shift_tokens_right  # noqa: E402
from whisper_multi.pt import WhisperForConditionalGeneration  # noqa: E402
from whisper_multi.pt.training import Trainer  # noqa: E402
from whisper_multi.training import TrainingOptions  # noqa: E402

STEPS, BATCH, LENGTH, FRAMES = 3, 4, 8, 32
SETTINGS = {"learning_rate": 1e-3, "warmup_steps": 1, "weight_decay": 0.01, "max_grad_norm": 1.0, "seed": 0}
# Transformers logs each step's loss rounded to 4 decimals.
LOGGED_DIGITS = 5e-5


def tiny_config() -> WhisperConfig:
    """d_model 64, 2+2 layers, 32 mel frames, a 500-token vocabulary with its special ids at the start; no dropout."""
    return WhisperConfig(
        d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=256, decoder_ffn_dim=256, max_source_positions=FRAMES // 2, max_target_positions=32,
        vocab_size=500, decoder_start_token_id=1, pad_token_id=0, bos_token_id=0, eos_token_id=0,
        begin_suppress_tokens=None,
    )  # fmt: skip


def collator_batch(config: WhisperConfig) -> dict[str, np.ndarray]:
    """What ``SpeechSeq2SeqCollator`` gives, from random arrays: features, labels with -100 padding, decoder inputs."""
    rng = np.random.default_rng(0)
    labels = rng.integers(2, config.vocab_size, (BATCH, LENGTH)).astype(np.int64)
    labels[0, -3:] = -100
    return {
        "input_features": rng.standard_normal((BATCH, config.num_mel_bins, FRAMES)).astype(np.float32),
        "labels": labels,
        "decoder_input_ids": shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id),
    }


class OneBatch(torch.utils.data.Dataset):
    def __init__(self, batch: dict[str, np.ndarray]):
        self.batch = batch

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.batch


def unwrap(items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """The loader's list of one item back to the batch, as tensors."""
    return {name: torch.from_numpy(array) for name, array in items[0].items()}


class RecordingTrainer(transformers.Seq2SeqTrainer):
    """Seq2SeqTrainer keeping each step's unrounded loss (what ``training_step`` returns) beside its rounded log."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_losses: list[float] = []

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.step_losses.append(float(loss))
        return loss


def training_arguments(output_dir: Path, **overrides: object) -> transformers.Seq2SeqTrainingArguments:
    """Transformers' defaults (linear schedule, AdamW) with our SETTINGS; no checkpoint unless asked: Transformers
    saves a model that is not its own ``PreTrainedModel`` as a bare state dict, which safetensors refuses while
    ``proj_out`` is tied to the token embedding."""
    values = {
        "output_dir": str(output_dir), "max_steps": STEPS, "per_device_train_batch_size": 1, "logging_steps": 1,
        "learning_rate": SETTINGS["learning_rate"], "warmup_steps": SETTINGS["warmup_steps"],
        "weight_decay": SETTINGS["weight_decay"], "max_grad_norm": SETTINGS["max_grad_norm"],
        "seed": SETTINGS["seed"], "report_to": [], "use_cpu": True, "save_strategy": "no",
        "remove_unused_columns": False, "disable_tqdm": True,
    }  # fmt: skip
    return transformers.Seq2SeqTrainingArguments(**{**values, **overrides})


def new_model() -> WhisperForConditionalGeneration:
    torch.manual_seed(0)
    return WhisperForConditionalGeneration(tiny_config())


def our_losses(batch: dict[str, np.ndarray]) -> tuple[list[float], WhisperForConditionalGeneration]:
    model = new_model()
    trainer = Trainer(model, TrainingOptions(steps=STEPS, batch_size=BATCH, **SETTINGS), total_steps=STEPS)
    return [trainer.train_step([batch], step) for step in range(STEPS)], model


def max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    first, second = a.state_dict(), b.state_dict()
    return max(float((first[name] - second[name]).abs().max()) for name in first)


def test_seq2seq_trainer_trains_our_model_as_our_trainer_does(tmp_path: Path) -> None:
    model = new_model()
    batch = collator_batch(model.config)
    theirs = RecordingTrainer(
        model=model, args=training_arguments(tmp_path), train_dataset=OneBatch(batch), data_collator=unwrap
    )
    result = theirs.train()
    logged = [entry["loss"] for entry in theirs.state.log_history if "loss" in entry]
    expected, ours = our_losses(batch)

    assert theirs.step_losses == pytest.approx(expected, rel=1e-5, abs=0)
    assert logged == pytest.approx(expected, rel=1e-5, abs=LOGGED_DIGITS)
    assert result.training_loss == pytest.approx(float(np.mean(expected)), rel=1e-5)
    assert max_difference(model, new_model()) > 1e-3  # the weights moved
    assert max_difference(model, ours) <= 1e-5


def test_seq2seq_trainer_resumes_from_a_pickled_checkpoint(tmp_path: Path) -> None:
    """``save_safetensors=False`` makes Transformers' checkpoints ``torch.save`` state dicts, which hold tied
    tensors; resuming restores its optimizer, schedule and weights, and the last step's loss is ours."""
    batch = collator_batch(tiny_config())
    saving = training_arguments(tmp_path, save_strategy="steps", save_steps=2, save_safetensors=False)
    first = RecordingTrainer(model=new_model(), args=saving, train_dataset=OneBatch(batch), data_collator=unwrap)
    first.train()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-3"]
    resumed_model = new_model()
    resumed = RecordingTrainer(model=resumed_model, args=saving, train_dataset=OneBatch(batch), data_collator=unwrap)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    expected, ours = our_losses(batch)
    assert resumed.step_losses == pytest.approx(expected[2:], rel=1e-5, abs=0)
    assert max_difference(resumed_model, ours) <= 1e-5
