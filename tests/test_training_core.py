"""The framework-free half of fine-tuning: options, schedule, batch order, collator and checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from whisper_multi.errors import CheckpointError, InputError
from whisper_multi.finetuning import checkpoints
from whisper_multi.finetuning.loop import _check_same_run, _new_state
from whisper_multi.training import optimizer
from whisper_multi.training.batches import step_batches
from whisper_multi.training.options import TrainingOptions, step_seed, steps_per_epoch
from whisper_multi.training.schedule import learning_rate

GPT2_HELLO_THERE = [15496, 612, 13]  # "Hello", " there", "." in the GPT-2 byte-level vocabulary tiny.en uses
EOT, SOT, NO_TIMESTAMPS = 50256, 50257, 50362  # tiny.en's <|endoftext|>, <|startoftranscript|>, <|notimestamps|>


# --- options -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({}, "exactly one of steps"),
        ({"steps": 3, "epochs": 1.0}, "exactly one of steps"),
        ({"steps": 0}, "steps must be positive, got 0"),
        ({"steps": 3, "batch_size": 0}, "batch_size must be positive, got 0"),
        ({"steps": 3, "learning_rate": 0.0}, "learning_rate must be positive"),
        ({"steps": 3, "warmup_steps": -1}, "warmup_steps (-1)"),
    ],
)
def test_options_refuse_what_cannot_train(values: dict, named: str) -> None:
    with pytest.raises(InputError, match=named.replace("(", r"\(").replace(")", r"\)")):
        TrainingOptions(**values)


def test_epochs_count_whole_batches_of_accumulated_steps() -> None:
    options = TrainingOptions(epochs=2.5, batch_size=4, gradient_accumulation_steps=2)
    assert steps_per_epoch(37, options) == 4  # 37 // 8
    assert options.total_steps(37) == 10
    assert TrainingOptions(steps=7).total_steps(1000) == 7
    assert TrainingOptions.from_dict({**options.to_dict(), "unknown": 1}) == options


def test_step_seeds_depend_on_the_seed_and_step_only() -> None:
    assert step_seed(3, 10) == step_seed(3, 10)
    assert len({step_seed(seed, step) for seed in range(5) for step in range(50)}) == 250


# --- schedule: Transformers' get_linear_schedule_with_warmup, values worked out by hand ---------------------------
def test_linear_schedule_with_warmup() -> None:
    options = TrainingOptions(steps=10, learning_rate=2.0, warmup_steps=2)
    found = [learning_rate(step, options, 10) for step in range(11)]
    assert found == pytest.approx([0.0, 1.0, 2.0, 1.75, 1.5, 1.25, 1.0, 0.75, 0.5, 0.25, 0.0])
    assert learning_rate(np.arange(11), options, 10, xp=np) == pytest.approx(found)


def test_linear_schedule_without_warmup_starts_at_the_peak() -> None:
    options = TrainingOptions(steps=4, learning_rate=1.0)
    assert [learning_rate(step, options, 4) for step in range(5)] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])


# --- which parameters train and decay -------------------------------------------------------------------------------
def test_trained_and_decayed_parameters_by_canonical_name() -> None:
    frozen = TrainingOptions(steps=1, freeze_encoder=True)
    assert not optimizer.is_trained("model.encoder.embed_positions.weight", TrainingOptions(steps=1))
    assert not optimizer.is_trained("model.encoder.layers.0.fc1.weight", frozen)
    assert optimizer.is_trained("model.decoder.layers.0.fc1.weight", frozen)
    assert optimizer.is_trained("model.decoder.embed_positions.weight", frozen)
    assert not optimizer.is_decayed("model.decoder.layers.0.fc1.bias")
    assert not optimizer.is_decayed("model.decoder.layers.0.self_attn_layer_norm.weight")
    assert not optimizer.is_decayed("model.encoder.layer_norm.weight")
    assert optimizer.is_decayed("model.decoder.embed_tokens.weight")


# --- batch order ----------------------------------------------------------------------------------------------------
def test_each_epoch_visits_whole_batches_in_a_seeded_order() -> None:
    options = TrainingOptions(steps=100, batch_size=3, seed=7)
    epoch0 = np.concatenate([step_batches(step, 10, options)[0] for step in range(3)])
    epoch1 = np.concatenate([step_batches(step, 10, options)[0] for step in range(3, 6)])
    assert len(set(epoch0.tolist())) == 9 and len(set(epoch1.tolist())) == 9  # one example waits each epoch
    assert epoch0.tolist() != epoch1.tolist()
    assert [b.tolist() for b in step_batches(4, 10, options)] == [b.tolist() for b in step_batches(4, 10, options)]
    other_seed = TrainingOptions(steps=100, batch_size=3, seed=8)
    assert step_batches(0, 10, other_seed)[0].tolist() != step_batches(0, 10, options)[0].tolist()


def test_accumulation_takes_consecutive_batches_of_the_epoch() -> None:
    single = TrainingOptions(steps=10, batch_size=2, seed=1)
    accumulated = TrainingOptions(steps=10, batch_size=2, gradient_accumulation_steps=2, seed=1)
    assert [b.tolist() for b in step_batches(1, 12, accumulated)] == [
        step_batches(2, 12, single)[0].tolist(),
        step_batches(3, 12, single)[0].tolist(),
    ]


def test_a_data_set_smaller_than_a_batch_is_one_batch() -> None:
    options = TrainingOptions(steps=3, batch_size=8)
    assert sorted(step_batches(2, 5, options)[0].tolist()) == [0, 1, 2, 3, 4]


# --- collator -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_en_collator():
    from whisper_multi import WhisperConfig, WhisperProcessor
    from whisper_multi.training.collator import SpeechSeq2SeqCollator
    from whisper_multi.weights.packages import embedded_model_path

    try:
        path = embedded_model_path()
    except Exception as error:
        pytest.skip(f"tiny.en weights not installed: {error}")
    return SpeechSeq2SeqCollator.for_model(WhisperProcessor.from_pretrained(path), WhisperConfig.from_pretrained(path))


def test_labels_are_the_prefix_less_start_the_text_and_end_padded_with_ignore(tiny_en_collator) -> None:
    batch = tiny_en_collator([np.zeros(8000, np.float32)] * 2, ["Hello there.", "Hello there. Hello there."])
    first = [NO_TIMESTAMPS, *GPT2_HELLO_THERE, EOT]
    assert batch["labels"].shape == (2, 16) and batch["labels"].dtype == np.int64
    assert batch["labels"][0].tolist() == first + [-100] * 11
    assert batch["labels"][1, :4].tolist() == [NO_TIMESTAMPS, *GPT2_HELLO_THERE]
    assert batch["decoder_input_ids"][0].tolist() == [SOT, *first[:-1]] + [EOT] * 11
    assert batch["input_features"].shape == (2, 80, 3000) and batch["input_features"].dtype == np.float32


def test_the_collator_names_a_transcript_too_long_for_the_decoder(tiny_en_collator) -> None:
    with pytest.raises(InputError, match="more than max_target_positions=448"):
        tiny_en_collator.labels(["word " * 500])


# --- checkpoints ----------------------------------------------------------------------------------------------------
def _writer(step: int, fail: bool = False):
    def write(directory: Path) -> None:
        (directory / "weights.bin").write_bytes(bytes([step]) * 100)
        if fail:
            raise KeyboardInterrupt  # a kill in the middle of the write
        checkpoints.write_state(directory, {"step": step})

    return write


def test_a_checkpoint_killed_while_written_leaves_the_previous_one(tmp_path: Path) -> None:
    checkpoints.write_checkpoint(tmp_path, 2, _writer(2), kept=2)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.write_checkpoint(tmp_path, 4, _writer(4, fail=True), kept=2)
    latest = checkpoints.latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "step-0000002"
    assert checkpoints.read_state(latest) == {"step": 2}
    removed = checkpoints.remove_partial_checkpoints(tmp_path)
    assert [path.name for path in removed] == [f".step-0000004{checkpoints.PARTIAL_MARK}{__import__('os').getpid()}"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest.json", "step-0000002"]


def test_only_the_newest_checkpoints_are_kept(tmp_path: Path) -> None:
    for step in (1, 2, 3, 4):
        checkpoints.write_checkpoint(tmp_path, step, _writer(step), kept=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest.json", "step-0000003", "step-0000004"]
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text()) == {
        "step": 4,
        "directory": "step-0000004",
    }


def test_a_run_without_checkpoints_has_no_latest(tmp_path: Path) -> None:
    assert checkpoints.latest_checkpoint(tmp_path) is None


def test_a_latest_pointer_to_a_removed_checkpoint_is_named(tmp_path: Path) -> None:
    checkpoints.write_checkpoint(tmp_path, 1, _writer(1), kept=2)
    (tmp_path / "checkpoints" / "step-0000001" / checkpoints.STATE_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"step-0000001, which has no training_state\.json"):
        checkpoints.latest_checkpoint(tmp_path)


def test_resume_refuses_a_run_with_other_options(tmp_path: Path) -> None:
    saved = _new_state(TrainingOptions(steps=10, learning_rate=1e-5), 10, 32, "pt")
    same_but_eval = _new_state(TrainingOptions(steps=10, learning_rate=1e-5, eval_every=2), 10, 32, "pt")
    _check_same_run(saved, same_but_eval, tmp_path)
    other = _new_state(TrainingOptions(steps=10, learning_rate=3e-5), 10, 32, "tf")
    with pytest.raises(CheckpointError, match=r"learning_rate: 1e-05 in the checkpoint, 3e-05 now.*backend: 'pt'"):
        _check_same_run(saved, other, tmp_path)
