"""The Flax trainer (whisper_multi.flax.training): a jitted optax step against torch.optim.AdamW, scanned and
checkpointed layers, a frozen encoder, Orbax checkpoints and gradient accumulation.

The reference trajectory is PyTorch's, built here from torch.optim.AdamW, LambdaLR over the core's schedule and
clip_grad_norm_, on our PyTorch model loaded with the Flax model's initial canonical weights: the same batches, the
same options, no dropout. Models are tiny random ones (conformance.configs) so that every step compiles in seconds.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
pytest.importorskip("optax")
from conformance.configs import SMALL_VOCABULARY, random_config, random_tensors  # noqa: E402

from whisper_multi.errors import InputError  # noqa: E402
from whisper_multi.flax import FlaxWhisperForConditionalGeneration  # noqa: E402
from whisper_multi.flax import training as flax_training  # noqa: E402
from whisper_multi.flax.training import Trainer  # noqa: E402
from whisper_multi.modeling.utils import IGNORE_INDEX  # noqa: E402
from whisper_multi.training.optimizer import is_decayed, is_trained  # noqa: E402
from whisper_multi.training.options import TrainingOptions  # noqa: E402
from whisper_multi.training.schedule import learning_rate_factor  # noqa: E402

CONFIG = random_config(
    "tiny", **SMALL_VOCABULARY, d_model=16, encoder_attention_heads=2, decoder_attention_heads=2,
    encoder_ffn_dim=64, decoder_ffn_dim=64,
)  # fmt: skip
TENSORS = random_tensors(CONFIG)
STEPS = 5
# A learning rate large enough to move the weights visibly in five steps; a warmup, decay and clipping that all act.
OPTIONS = TrainingOptions(
    steps=STEPS, batch_size=2, gradient_accumulation_steps=2, learning_rate=3e-3, warmup_steps=2, weight_decay=0.1,
    max_grad_norm=1.0,
)  # fmt: skip
TOLERANCE = 1e-5  # relative: losses, and each weight tensor's difference norm over its norm
# Each element against the tensor's largest magnitude: where a gradient is near zero, Adam's m / sqrt(v) turns float32
# rounding into a visible step, so PyTorch float32 itself is this far from PyTorch float64 on these runs.
ELEMENT_TOLERANCE = 1e-4


def make_batch(seed: int, batch: int = 2, length: int = 8, ignored: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """Random features and labels, row i's last ignored[i] labels -100."""
    rng = np.random.default_rng(seed)
    frames = 2 * CONFIG.max_source_positions
    labels = rng.integers(2, CONFIG.vocab_size, (batch, length)).astype(np.int64)
    for row, count in enumerate(ignored):
        labels[row, length - count :] = IGNORE_INDEX
    features = rng.standard_normal((batch, CONFIG.num_mel_bins, frames)).astype(np.float32)
    return {"input_features": features, "labels": labels}


# Two micro-batches of different label lengths and counts (the step pads them to one length), the same at every step
# so that the loss falls.
BATCHES = [[make_batch(0, ignored=(2, 0)), make_batch(1, length=5)]] * STEPS


def flax_model(**kwargs) -> FlaxWhisperForConditionalGeneration:
    return FlaxWhisperForConditionalGeneration.from_state_dict(CONFIG, TENSORS, **kwargs)


def train(trainer: Trainer, batches: list, first: int = 0) -> list[float]:
    return [trainer.train_step(step_batches, first + index) for index, step_batches in enumerate(batches)]


def relative(found: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """The difference's norm over the expected tensor's norm, and its largest element over the largest magnitude."""
    expected = np.asarray(expected, np.float64)
    difference = np.asarray(found, np.float64) - expected
    norm = np.linalg.norm(difference) / max(np.linalg.norm(expected), 1e-30)
    return float(norm), float(np.abs(difference).max() / max(np.abs(expected).max(), 1e-30))


def assert_close_weights(found: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(found) == sorted(expected)
    differences = {name: relative(found[name], expected[name]) for name in expected}
    assert max(norm for norm, _ in differences.values()) <= TOLERANCE, differences
    assert max(element for _, element in differences.values()) <= ELEMENT_TOLERANCE, differences


def assert_close_losses(found: list[float], expected: list[float]) -> None:
    assert len(found) == len(expected)
    assert max(abs(a - b) / abs(b) for a, b in zip(found, expected)) <= TOLERANCE, (found, expected)


def torch_trajectory(options: TrainingOptions, batches: list) -> tuple[list[float], dict[str, np.ndarray], list]:
    """Losses, final canonical weights and the gradient norms before clipping of the PyTorch reference."""
    torch = pytest.importorskip("torch")
    from whisper_multi.pt import WhisperForConditionalGeneration

    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(CONFIG)
    model.load_state_dict({name: torch.from_numpy(array) for name, array in TENSORS.items()}, strict=False)
    model.train()
    trained = [(name, p) for name, p in model.named_parameters() if is_trained(name, options)]
    groups = [
        {"params": [p for name, p in trained if is_decayed(name)], "weight_decay": options.weight_decay},
        {"params": [p for name, p in trained if not is_decayed(name)], "weight_decay": 0.0},
    ]
    adamw = torch.optim.AdamW(
        groups, lr=options.learning_rate, betas=(options.adam_beta1, options.adam_beta2), eps=options.adam_epsilon
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        adamw, lambda step: learning_rate_factor(step, options.warmup_steps, STEPS)
    )
    losses, norms = [], []
    for step_batches in batches:
        adamw.zero_grad()
        step_losses = []
        for batch in step_batches:
            loss = model(torch.from_numpy(batch["input_features"]), labels=torch.from_numpy(batch["labels"])).loss
            (loss / len(step_batches)).backward()
            step_losses.append(loss.item())
        norms.append(float(torch.nn.utils.clip_grad_norm_([p for _, p in trained], options.max_grad_norm)))
        adamw.step()
        scheduler.step()
        losses.append(float(np.mean(step_losses)))
    weights = {name: p.detach().numpy().copy() for name, p in model.state_dict().items() if name in TENSORS}
    return losses, weights, norms


@pytest.fixture(scope="module")
def reference():
    return torch_trajectory(OPTIONS, BATCHES)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The Flax run of the five steps: losses, final canonical weights, and the directory of the checkpoints it
    wrote after steps 2 and 3 the loop's way (weights by save_pretrained, the optimizer by save_state)."""
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    trainer = Trainer(flax_model(), OPTIONS, STEPS)
    losses = train(trainer, BATCHES[:2])
    for step in (2, 3):
        trainer.model.save_pretrained(checkpoints / f"step-{step}")
        trainer.save_state(checkpoints / f"step-{step}")  # the second save goes into a fresh directory
        if step == 2:
            losses += train(trainer, BATCHES[2:3], first=2)
    losses += train(trainer, BATCHES[3:], first=3)
    return losses, trainer.canonical_weights(), checkpoints


# --- the step -------------------------------------------------------------------------------------------------------
def test_the_jitted_step_zero_loss_is_the_models_loss():
    model = flax_model()
    batch = BATCHES[0][0]
    # The model's call, compiled (faster than op by op here); the labels are shifted into decoder inputs in the graph.
    loss = jax.jit(lambda params: model(batch["input_features"], labels=batch["labels"], params=params).loss)
    expected = float(loss(model.params))
    options = TrainingOptions(**{**OPTIONS.to_dict(), "warmup_steps": 0})  # a first step that moves the weights
    trainer = Trainer(model, options, STEPS)
    assert abs(trainer.train_step([batch], 0) - expected) <= TOLERANCE * abs(expected)
    assert trainer.model is model and trainer.steps_taken == 1
    # The model holds the updated weights; the encoder's sinusoids stay as they were.
    weights = trainer.canonical_weights()
    assert not np.array_equal(weights["model.decoder.layer_norm.weight"], TENSORS["model.decoder.layer_norm.weight"])
    assert np.array_equal(
        weights["model.encoder.embed_positions.weight"], TENSORS["model.encoder.embed_positions.weight"]
    )


def test_five_steps_match_torch_adamw_lambdalr_and_clipping(reference, uninterrupted):
    expected_losses, expected_weights, norms = reference
    losses, weights, _ = uninterrupted
    assert max(norms) > OPTIONS.max_grad_norm  # the clipping acts
    assert losses[-1] < losses[0] - 0.1  # it learns the batch
    assert_close_losses(losses, expected_losses)
    assert_close_weights(weights, expected_weights)


@pytest.mark.parametrize(
    ("scan_layers", "remat"), [(True, False), (False, True), (True, True)], ids=["scanned", "remat", "scanned-remat"]
)
def test_scanned_and_checkpointed_layers_give_the_same_trajectory(uninterrupted, scan_layers, remat):
    options = TrainingOptions(**{**OPTIONS.to_dict(), "gradient_checkpointing": remat})
    trainer = Trainer(flax_model(scan_layers=scan_layers), options, STEPS)
    losses = train(trainer, BATCHES)
    expected_losses, expected_weights, _ = uninterrupted
    assert_close_losses(losses, expected_losses)
    assert_close_weights(trainer.canonical_weights(), expected_weights)


# --- a frozen encoder -----------------------------------------------------------------------------------------------
def test_a_frozen_encoder_stays_bit_exact_also_when_its_outputs_are_cached():
    options = TrainingOptions(**{**OPTIONS.to_dict(), "freeze_encoder": True})
    with_features = Trainer(flax_model(), options, STEPS)
    losses = train(with_features, BATCHES)
    # PyTorch's frozen parameters have no gradient: they count neither in the clipping norm nor in the update.
    expected_losses, expected_weights, _ = torch_trajectory(options, BATCHES)
    assert_close_losses(losses, expected_losses)
    assert_close_weights(with_features.canonical_weights(), expected_weights)
    batches = BATCHES[:3]
    cached = Trainer(flax_model(), options, STEPS)
    # The loop's cache: the encoder's output stands in for the features of a frozen encoder.
    cached_batches = [
        [{"encoder_outputs": cached.encode(b["input_features"]), "labels": b["labels"]} for b in step_batches]
        for step_batches in batches
    ]
    assert cached_batches[0][0]["encoder_outputs"].dtype == np.float32
    cached_losses = train(cached, cached_batches)
    assert_close_losses(cached_losses, losses[:3])
    for trainer in (with_features, cached):
        weights = trainer.canonical_weights()
        encoder = [name for name in TENSORS if name.startswith("model.encoder.")]
        assert all(np.array_equal(weights[name], TENSORS[name]) for name in encoder)
        assert not np.array_equal(
            weights["model.decoder.embed_tokens.weight"], TENSORS["model.decoder.embed_tokens.weight"]
        )


# --- Orbax checkpoints ----------------------------------------------------------------------------------------------
def test_a_run_resumed_from_an_orbax_checkpoint_continues_bit_identically(uninterrupted):
    expected_losses, expected_weights, checkpoints = uninterrupted
    shutil.rmtree(checkpoints / "step-2")  # the loop keeps the newest checkpoints only
    assert (checkpoints / "step-3" / "optimizer").is_dir()
    resumed = Trainer(FlaxWhisperForConditionalGeneration.from_pretrained(checkpoints / "step-3"), OPTIONS, STEPS)
    with pytest.raises(InputError, match="load_state"):
        resumed.train_step(BATCHES[3], 3)  # a fresh optimizer has taken no step yet
    resumed.load_state(checkpoints / "step-3")
    assert resumed.steps_taken == 3
    losses = train(resumed, BATCHES[3:], first=3)
    assert losses == expected_losses[3:]
    weights = resumed.canonical_weights()
    assert all(np.array_equal(weights[name], expected_weights[name]) for name in expected_weights)


# --- gradient accumulation ------------------------------------------------------------------------------------------
def test_accumulating_two_batches_of_two_equals_one_batch_of_four():
    halves = [[make_batch(100 + step), make_batch(200 + step)] for step in range(2)]  # 16 labels each
    whole = [[{key: np.concatenate([a[key], b[key]]) for key in a}] for a, b in halves]
    accumulated = Trainer(flax_model(), OPTIONS, STEPS)
    accumulated_losses = train(accumulated, halves)
    options = TrainingOptions(**{**OPTIONS.to_dict(), "batch_size": 4, "gradient_accumulation_steps": 1})
    single = Trainer(flax_model(), options, STEPS)
    single_losses = train(single, whole)
    assert_close_losses(accumulated_losses, single_losses)
    assert_close_weights(accumulated.canonical_weights(), single.canonical_weights())


def test_the_accumulation_scan_equals_the_unrolled_accumulation(monkeypatch):
    # CPU unrolls the micro-batches (XLA's CPU loops are slow); accelerators keep the lax.scan: the same step.
    halves = [[make_batch(100 + step), make_batch(200 + step)] for step in range(2)]
    unrolled = Trainer(flax_model(), OPTIONS, STEPS)
    unrolled_losses = train(unrolled, halves)
    monkeypatch.setattr(flax_training, "_unrolls_accumulation", lambda: False)
    scanned = Trainer(flax_model(), OPTIONS, STEPS)
    scanned_losses = train(scanned, halves)
    assert_close_losses(scanned_losses, unrolled_losses)
    assert_close_weights(scanned.canonical_weights(), unrolled.canonical_weights())


# --- bfloat16 -------------------------------------------------------------------------------------------------------
def test_bf16_computes_in_bfloat16_and_keeps_float32_parameters(uninterrupted):
    options = TrainingOptions(**{**OPTIONS.to_dict(), "bf16": True})
    trainer = Trainer(flax_model(), options, STEPS)
    losses = train(trainer, BATCHES[:2])
    assert trainer.model.module.dtype == np.float32  # generation keeps the model's own dtype
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(trainer.model.params)} == {np.dtype(np.float32)}
    # bfloat16 keeps 8 bits of mantissa: near float32's losses, not equal to them.
    assert max(abs(a - b) / abs(b) for a, b in zip(losses, uninterrupted[0][:2])) <= 2e-2
    assert losses != uninterrupted[0][:2]  # it did compute in bfloat16
