"""PyTorch fine-tuning (whisper_multi.pt.training): the Trainer's steps against a hand-written torch.optim loop,
freezing, weight decay, resuming, gradient accumulation, bf16 autocast and gradient checkpointing.

The reference loop below builds its own AdamW, LambdaLR and schedule formula, so it checks the Trainer and the core
schedule rather than reusing them. Tiny random models (d_model 64, 2+2 layers, 32 mel frames, 500 tokens) on the CPU.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conformance.configs import SMALL_VOCABULARY, random_config, random_features  # noqa: E402

from whisper_multi.errors import CheckpointError, InputError  # noqa: E402
from whisper_multi.modeling.utils import shift_tokens_right, sinusoids  # noqa: E402
from whisper_multi.pt import WhisperForConditionalGeneration  # noqa: E402
from whisper_multi.pt.training import Trainer, make_optimizer, make_scheduler, train  # noqa: E402
from whisper_multi.training import TrainingOptions  # noqa: E402
from whisper_multi.weights.table import canonical_parameters  # noqa: E402

LENGTH = 8


def new_model(seed: int = 0, **overrides) -> WhisperForConditionalGeneration:
    torch.manual_seed(seed)
    return WhisperForConditionalGeneration(random_config("tiny", **SMALL_VOCABULARY, **overrides)).eval()


def make_batch(config, size: int = 2, seed: int = 0, ignored: int = 0) -> dict[str, np.ndarray]:
    """A collator-shaped batch; the last ``ignored`` labels of the first row are -100."""
    labels = np.random.default_rng(seed).integers(2, config.vocab_size, (size, LENGTH)).astype(np.int64)
    if ignored:
        labels[0, -ignored:] = -100
    return {
        "input_features": random_features(config, size, seed=seed + 100),
        "labels": labels,
        "decoder_input_ids": shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id),
    }


def options(**overrides) -> TrainingOptions:
    values = {"steps": 4, "batch_size": 2, "learning_rate": 1e-3, "warmup_steps": 1, "weight_decay": 0.1}
    return TrainingOptions(**{**values, **overrides})


def max_difference(a: WhisperForConditionalGeneration, b: WhisperForConditionalGeneration) -> float:
    first, second = a.state_dict(), b.state_dict()
    return max(float((first[name].double() - second[name].double()).abs().max()) for name in first)


def run(trainer: Trainer, batches: list[list[dict[str, np.ndarray]]], first: int = 0) -> list[float]:
    return [trainer.train_step(step_batches, first + step) for step, step_batches in enumerate(batches)]


# --- the step against torch.optim written by hand -------------------------------------------------------------------
def test_the_first_step_loss_is_the_models_own_loss():
    model = new_model()
    batch = make_batch(model.config, ignored=3)
    with torch.no_grad():
        expected = model(**{name: torch.from_numpy(array) for name, array in batch.items()}).loss
    assert Trainer(model, options(), 4).train_step([batch], 0) == float(expected)


def reference_run(model, batches, total_steps: int, lr: float, warmup: int, wd: float, clip: float) -> list[float]:
    """torch.optim.AdamW + LambdaLR over Transformers' linear schedule, written out here; biases, layer norms and
    the sinusoids sorted by name."""
    decayed, plain = [], []
    for name, parameter in model.named_parameters():
        if name != "model.encoder.embed_positions.weight":
            (plain if name.endswith(".bias") or "layer_norm" in name else decayed).append(parameter)
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": wd}, {"params": plain, "weight_decay": 0.0}], lr=lr, eps=1e-8
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / warmup if s < warmup else max(0.0, (total_steps - s) / (total_steps - warmup))
    )
    losses = []
    model.train()
    for batch in batches:
        optimizer.zero_grad()
        loss = model(**{name: torch.from_numpy(array) for name, array in batch.items()}).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decayed + plain, clip)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return losses


def test_steps_equal_a_hand_written_adamw_loop_with_warmup_decay_and_clipping():
    model = new_model()
    reference = copy.deepcopy(model)
    batches = [make_batch(model.config, seed=step, ignored=step) for step in range(4)]
    settings = options(learning_rate=3e-3, warmup_steps=2, weight_decay=0.1, max_grad_norm=0.5)
    trainer = Trainer(model, settings, total_steps=4)
    losses = run(trainer, [[batch] for batch in batches])
    expected = reference_run(reference, batches, total_steps=4, lr=3e-3, warmup=2, wd=0.1, clip=0.5)
    assert losses == pytest.approx(expected, rel=1e-6, abs=0)
    assert max_difference(model, reference) <= 1e-6
    assert max_difference(model, new_model()) > 1e-3  # it did train
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0  # decayed to 0 at the last step


def test_the_schedule_is_the_core_one():
    model = new_model()
    optimizer = make_optimizer(model, options(learning_rate=2.0, warmup_steps=2))
    scheduler = make_scheduler(optimizer, options(learning_rate=2.0, warmup_steps=2), total_steps=6)
    rates = []
    for _ in range(7):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.0, 1.0, 2.0, 1.5, 1.0, 0.5, 0.0])


def test_train_is_the_trainer_over_groups_of_micro_batches():
    model, twin = new_model(), new_model()
    batches = [make_batch(model.config, seed=i) for i in range(5)]
    settings = options(steps=None, epochs=1, gradient_accumulation_steps=2)
    losses = train(model, batches, settings)  # 3 steps: 2 + 2 + the short last group of 1
    trainer = Trainer(twin, settings, total_steps=3)
    assert losses == run(trainer, [batches[0:2], batches[2:4], batches[4:]])
    assert max_difference(model, twin) == 0.0
    with pytest.raises(InputError, match="total_steps"):
        train(new_model(), iter(batches), settings)


# --- what is trained and decayed -------------------------------------------------------------------------------------
def test_a_frozen_encoder_and_the_sinusoids_never_change():
    model = new_model()
    before = copy.deepcopy(model.state_dict())
    trainer = Trainer(model, options(freeze_encoder=True, warmup_steps=0), total_steps=4)
    run(trainer, [[make_batch(model.config, seed=step)] for step in range(2)])
    after = model.state_dict()
    encoder = [name for name in after if name.startswith("model.encoder.")]
    assert encoder and all(torch.equal(after[name], before[name]) for name in encoder)
    assert not torch.equal(after["model.decoder.layers.0.fc1.weight"], before["model.decoder.layers.0.fc1.weight"])
    table = after["model.encoder.embed_positions.weight"].numpy()
    assert np.array_equal(table, sinusoids(*table.shape).astype(np.float32))


def test_the_sinusoids_stay_fixed_when_the_encoder_trains():
    model = new_model()
    table = model.model.encoder.embed_positions.weight.detach().clone()
    encoder_weight = model.model.encoder.conv1.weight.detach().clone()
    run(Trainer(model, options(warmup_steps=0), total_steps=4), [[make_batch(model.config)]])
    assert torch.equal(model.model.encoder.embed_positions.weight, table)
    assert not torch.equal(model.model.encoder.conv1.weight, encoder_weight)


def test_encoder_outputs_in_the_batch_give_the_loss_of_the_features():
    model = new_model()
    trainer = Trainer(model, options(freeze_encoder=True), total_steps=4)
    batch = make_batch(model.config)
    cached = {**batch, "encoder_outputs": trainer.encode(batch["input_features"])}
    del cached["input_features"]
    with torch.no_grad():
        expected = model(**{name: torch.from_numpy(array) for name, array in batch.items()}).loss
    assert cached["encoder_outputs"].shape == (2, model.config.max_source_positions, model.config.d_model)
    assert trainer.train_step([cached], 0) == pytest.approx(float(expected), rel=1e-6)


def test_biases_and_layer_norms_with_zero_gradients_are_not_decayed():
    model = new_model()
    optimizer = make_optimizer(model, options(learning_rate=0.1, weight_decay=0.5))
    names = {id(p): name for name, p in model.named_parameters()}
    decayed = {names[id(p)] for p in optimizer.param_groups[0]["params"]}
    plain = {names[id(p)] for p in optimizer.param_groups[1]["params"]}
    assert plain and all(name.endswith(".bias") or "layer_norm" in name for name in plain)
    assert "model.decoder.layer_norm.weight" in plain and "model.encoder.conv1.bias" in plain
    assert "model.decoder.embed_tokens.weight" in decayed and "model.encoder.embed_positions.weight" not in decayed
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    for name, parameter in model.named_parameters():
        if name in plain:
            assert torch.equal(parameter, before[name]), name
        elif name in decayed:
            assert torch.equal(parameter, before[name] * (1 - 0.1 * 0.5)), name  # decoupled decay alone


# --- resuming --------------------------------------------------------------------------------------------------------
def test_a_resumed_run_gives_the_losses_of_an_uninterrupted_one(tmp_path):
    """Dropout on, so the per-step seeds matter as much as AdamW's moments and the scheduler's count."""
    settings = options(learning_rate=2e-3, warmup_steps=1)
    batches = [[make_batch(random_config("tiny", **SMALL_VOCABULARY), seed=step)] for step in range(4)]
    whole = new_model(dropout=0.1)
    expected = run(Trainer(whole, settings, total_steps=4), batches)

    first = new_model(dropout=0.1)
    stopped = Trainer(first, settings, total_steps=4)
    losses = run(stopped, batches[:2])
    stopped.save_state(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["optimizer.pt"]
    torch.manual_seed(123)  # whatever happens to the RNG in between
    resumed_model = new_model(seed=99, dropout=0.1)
    resumed_model.load_state_dict(first.state_dict())
    resumed = Trainer(resumed_model, settings, total_steps=4)
    resumed.load_state(tmp_path)
    losses += run(resumed, batches[2:], first=2)
    assert losses == expected
    assert max_difference(resumed_model, whole) == 0.0


def test_steps_out_of_order_and_missing_state_are_refused(tmp_path):
    trainer = Trainer(new_model(), options(), total_steps=4)
    with pytest.raises(InputError, match="step=1"):
        trainer.train_step([make_batch(trainer.model.config)], 1)
    with pytest.raises(CheckpointError, match=r"optimizer\.pt"):
        trainer.load_state(tmp_path)


# --- accumulation, precision, checkpointing --------------------------------------------------------------------------
def test_two_micro_batches_of_two_equal_one_batch_of_four():
    """Every row has LENGTH labels, so the mean of the two micro-batch losses is the mean over all tokens. The
    gradients agree to float32 rounding; AdamW's first updates are lr * g / (|g| + eps), so a gradient near zero that
    rounds differently moves its weight by a visible fraction of lr: the weights are compared to lr / 100."""
    split, whole = new_model(), new_model()
    halves = [make_batch(split.config, seed=1), make_batch(split.config, seed=2)]
    joined = {name: np.concatenate([halves[0][name], halves[1][name]]) for name in halves[0]}
    accumulated = Trainer(split, options(warmup_steps=0, max_grad_norm=0.5, gradient_accumulation_steps=2), 4)
    single = Trainer(whole, options(warmup_steps=0, max_grad_norm=0.5, batch_size=4), 4)
    losses = [accumulated.train_step(halves, 0)], [single.train_step([joined], 0)]
    gradients = dict(whole.named_parameters())
    for name, parameter in split.named_parameters():
        if parameter.grad is not None:
            assert float((parameter.grad - gradients[name].grad).abs().max()) <= 1e-7, name
    losses[0].append(accumulated.train_step(halves, 1))
    losses[1].append(single.train_step([joined], 1))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6, abs=0)
    assert max_difference(split, whole) <= 1e-3 / 100


def test_a_bf16_autocast_step_gives_a_finite_loss_and_trains():
    model = new_model()
    before = model.model.decoder.layers[0].fc1.weight.detach().clone()
    loss = Trainer(model, options(bf16=True, warmup_steps=0), total_steps=4).train_step([make_batch(model.config)], 0)
    assert math.isfinite(loss) and model.dtype == torch.float32
    assert not torch.equal(model.model.decoder.layers[0].fc1.weight, before)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    plain, recomputed = new_model(), new_model()
    batch = make_batch(plain.config, ignored=2)
    plain_trainer = Trainer(plain, options(), total_steps=4)
    recomputed_trainer = Trainer(recomputed, options(gradient_checkpointing=True), total_steps=4)
    assert recomputed.is_gradient_checkpointing and not plain.is_gradient_checkpointing
    losses = plain_trainer.train_step([batch], 0), recomputed_trainer.train_step([batch], 0)
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    gradients = dict(recomputed.named_parameters())
    for name, parameter in plain.named_parameters():
        if parameter.grad is not None:
            assert float((parameter.grad - gradients[name].grad).abs().max()) <= 1e-6, name


# --- the protocol's read-outs ----------------------------------------------------------------------------------------
def test_canonical_weights_are_the_table_names_copied():
    model = new_model()
    trainer = Trainer(model, options(), total_steps=4)
    weights = trainer.canonical_weights()
    assert list(weights) == list(canonical_parameters(model.config))  # proj_out.weight (tied) left out
    name = "model.decoder.layers.0.fc1.weight"
    assert np.array_equal(weights[name], model.state_dict()[name].numpy())
    with torch.no_grad():
        model.model.decoder.layers[0].fc1.weight.add_(1.0)
    assert not np.array_equal(weights[name], model.state_dict()[name].numpy())  # a copy, not a view


def test_encode_is_the_encoders_hidden_state_in_eval_mode():
    model = new_model(dropout=0.5).train()
    features = make_batch(model.config)["input_features"]
    encoded = Trainer(model, options(), total_steps=4).encode(features)
    with torch.no_grad():
        expected = model.eval().get_encoder()(torch.from_numpy(features)).last_hidden_state.numpy()
    assert encoded.dtype == np.float32 and np.array_equal(encoded, expected)


def test_the_labels_shift_in_the_graph_equals_the_cores():
    from whisper_multi.pt.modeling_whisper import _shift_tokens_right

    labels = make_batch(new_model().config, ignored=3)["labels"]
    shifted = _shift_tokens_right(torch.from_numpy(labels), 0, 1)
    assert np.array_equal(shifted.numpy(), shift_tokens_right(labels, 0, 1))
    with pytest.raises(InputError, match="pad_token_id"):
        _shift_tokens_right(torch.from_numpy(labels), None, 1)
