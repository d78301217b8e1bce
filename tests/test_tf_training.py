"""Keras fine-tuning (whisper_multi.tf.training): the XLA-compiled Trainer against a torch.optim.AdamW loop written
here, Keras' fit/evaluate/callbacks on the model's own loss, ``.keras`` saving, SpecAugment drawn in the graph,
freezing, cached encoder outputs, resuming and the optimizer's epsilon.

Tiny random models (d_model 16, 1+1 layers, 32 mel frames, 500 tokens) on the CPU. Most of each test's time is XLA
compiling the train step, so the compiled runs are shared through module fixtures. TensorFlow's oneDNN kernels are
off (as in tests/test_tf_models.py) for the closest agreement with PyTorch.
"""

from __future__ import annotations

import os
from itertools import combinations

import numpy as np
import pytest

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from conformance.configs import SMALL_VOCABULARY, random_config, random_features  # noqa: E402

from whisper_multi.errors import CheckpointError, InputError  # noqa: E402
from whisper_multi.tf import TFWhisperForAudioClassification, TFWhisperForConditionalGeneration, TFWhisperModel  # noqa: E402
from whisper_multi.tf.loading import canonical_state_dict, model_variables  # noqa: E402
from whisper_multi.tf.training import TorchAdamW, Trainer, make_optimizer, to_tf_dataset  # noqa: E402
from whisper_multi.training import TrainingOptions  # noqa: E402
from whisper_multi.training.optimizer import is_decayed, is_trained  # noqa: E402
from whisper_multi.training.schedule import learning_rate_factor  # noqa: E402

LENGTH = 8
SHAPE = {
    "d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
    "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
}  # fmt: skip
# The three backends' trajectory target (1e-4) tightened tenfold: the losses relative, each weight tensor's largest
# difference over its largest value. The measured agreement lies well inside (see the commit message).
TORCH_BOUND = 1e-5


def tiny_config(**overrides):
    return random_config("tiny", **SMALL_VOCABULARY, **{**SHAPE, **overrides})


def new_model(cls=TFWhisperForConditionalGeneration, seed: int = 0, **overrides):
    keras.utils.set_random_seed(seed)
    return cls(tiny_config(**overrides))


def make_batch(config, seed: int, size: int = 2, ignored: int = 2) -> dict[str, np.ndarray]:
    """A collator-shaped batch (without decoder_input_ids: the model shifts the labels); the last ``ignored``
    labels of the first row are -100."""
    labels = np.random.default_rng(seed).integers(2, config.vocab_size, (size, LENGTH)).astype(np.int64)
    if ignored:
        labels[0, -ignored:] = -100
    return {"input_features": random_features(config, size, seed=seed + 100), "labels": labels}


def options(**overrides) -> TrainingOptions:
    values = {
        "steps": 5, "batch_size": 2, "gradient_accumulation_steps": 2, "learning_rate": 1e-3, "warmup_steps": 2,
        "weight_decay": 0.1, "max_grad_norm": 0.5,
    }  # fmt: skip
    return TrainingOptions(**{**values, **overrides})


def relative(a, b) -> float:
    """Largest difference over the largest reference value."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def eager_loss(model, batch) -> float:
    return float(model(batch["input_features"], labels=batch["labels"]).loss)


# --- the compiled Trainer against torch.optim.AdamW ------------------------------------------------------------------
STEPS = [[make_batch(tiny_config(), seed=10 * step + micro) for micro in range(2)] for step in range(5)]


@pytest.fixture(scope="module")
def trajectory(tmp_path_factory):
    """Five compiled steps of two micro-batches each (accumulation, clipping, weight decay, warmup and decay), the
    initial weights saved for torch and the checkpoint after two steps saved for resuming."""
    directory = tmp_path_factory.mktemp("trajectory")
    model = new_model()
    model.save_pretrained(directory / "initial")
    first_losses = [eager_loss(model, batch) for batch in STEPS[0]]
    trainer = Trainer(model, options(), total_steps=5)
    losses = []
    for step, batches in enumerate(STEPS):
        losses.append(trainer.train_step(batches, step))
        if step == 1:
            model.save_pretrained(directory / "step-2")
            trainer.save_state(directory / "step-2")
    return {
        "directory": directory,
        "first_losses": first_losses,
        "losses": losses,
        "weights": trainer.canonical_weights(),
        "trainer": trainer,
    }


def test_the_compiled_first_step_loss_is_the_eager_models_loss(trajectory):
    assert trajectory["trainer"]._micro_step.experimental_get_tracing_count() == 1  # one trace for every step
    assert trajectory["losses"][0] == pytest.approx(np.mean(trajectory["first_losses"]), rel=1e-6)


def torch_reference(directory, steps, opts: TrainingOptions) -> tuple[list[float], dict[str, np.ndarray]]:
    """torch.optim.AdamW + LambdaLR over the core schedule: groups by the core's rules, mean gradient over the
    micro-batches, global-norm clipping."""
    torch = pytest.importorskip("torch")
    from whisper_multi.pt import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(directory).train()
    decayed, plain = [], []
    for name, parameter in model.named_parameters():
        if not is_trained(name, opts):
            parameter.requires_grad_(False)
        else:
            (decayed if is_decayed(name) else plain).append(parameter)
    groups = [{"params": decayed, "weight_decay": opts.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    betas = (opts.adam_beta1, opts.adam_beta2)
    optimizer = torch.optim.AdamW(groups, lr=opts.learning_rate, betas=betas, eps=opts.adam_epsilon)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, opts.warmup_steps, len(steps))
    )
    losses = []
    for batches in steps:
        optimizer.zero_grad()
        step_losses = []
        for batch in batches:
            loss = model(**{name: torch.from_numpy(array) for name, array in batch.items()}).loss
            (loss / len(batches)).backward()
            step_losses.append(float(loss.detach()))
        torch.nn.utils.clip_grad_norm_(decayed + plain, opts.max_grad_norm)
        optimizer.step()
        schedule.step()
        losses.append(float(np.mean(step_losses)))
    return losses, {name: tensor.detach().numpy() for name, tensor in model.state_dict().items()}


def test_five_steps_follow_torch_adamw(trajectory):
    losses, weights = torch_reference(trajectory["directory"] / "initial", STEPS, options())
    assert relative(trajectory["losses"], losses) <= TORCH_BOUND
    assert trajectory["losses"][-1] < trajectory["losses"][0]
    for name, value in trajectory["weights"].items():
        assert relative(value, weights[name]) <= TORCH_BOUND, name


def restore(trainer: Trainer, directory) -> None:
    """What the loop does to resume: the weights back from ``save_pretrained``'s files, then ``load_state``. The
    trainer's compiled step is kept, so no test pays for a second XLA compilation."""
    reloaded = type(trainer.model).from_pretrained(directory)
    for variable, saved in zip(trainer.model.weights, reloaded.weights):
        variable.assign(saved)
    trainer.load_state(directory)


def test_resuming_from_a_checkpoint_continues_bit_identically(trajectory):
    trainer = trajectory["trainer"]
    restore(trainer, trajectory["directory"] / "step-2")
    losses = [trainer.train_step(batches, step) for step, batches in enumerate(STEPS[2:], start=2)]
    assert losses == trajectory["losses"][2:]
    resumed = trainer.canonical_weights()
    assert all(np.array_equal(resumed[name], value) for name, value in trajectory["weights"].items())


def test_a_step_out_of_order_or_a_wrong_state_file_is_refused(trajectory, tmp_path):
    trainer = trajectory["trainer"]
    with pytest.raises(InputError, match=r"asked for step 3, but the optimizer has taken 5 steps"):
        trainer.train_step(STEPS[3], 3)
    with pytest.raises(InputError, match=r"got 1 micro-batches, expected gradient_accumulation_steps=2"):
        trainer.train_step(STEPS[0][:1], 5)
    with pytest.raises(CheckpointError, match=r"no TF optimizer state"):
        trainer.load_state(tmp_path)
    np.savez(tmp_path / "optimizer.npz", only=np.zeros(3))
    with pytest.raises(CheckpointError, match=r"holds 1 optimizer variables"):
        trainer.load_state(tmp_path)


# --- the optimizer -------------------------------------------------------------------------------------------------
def test_torch_adamw_adds_epsilon_after_the_bias_correction():
    """One step on a gradient near epsilon: torch's update is lr * g / (|g| + eps) (Adam's first step); Keras' AdamW
    adds epsilon before the bias correction and lands measurably off it."""
    gradient = np.full((3,), 2e-8, np.float32)

    def first_update(optimizer) -> np.ndarray:
        variable = keras.Variable(np.zeros(3, np.float32))
        optimizer.apply_gradients([(tf.constant(gradient), variable)])
        return -variable.numpy()

    settings = {"learning_rate": 1e-3, "weight_decay": 0.0, "epsilon": 1e-8}
    expected = 1e-3 * 2e-8 / (2e-8 + 1e-8)
    np.testing.assert_allclose(first_update(TorchAdamW(**settings)), expected, rtol=1e-5)
    assert abs(first_update(keras.optimizers.AdamW(**settings))[0] - expected) > 0.1 * expected


def test_make_optimizer_excludes_biases_and_layer_norms_from_weight_decay():
    model = new_model()
    optimizer = make_optimizer(model, options(), 5)
    optimizer.build(model.trainable_variables)
    decayed = {name for name, variable in model_variables(model).items() if optimizer._use_weight_decay(variable)}
    assert decayed == {name for name in model_variables(model) if is_decayed(name)}
    assert optimizer.global_clipnorm == 0.5 and optimizer.gradient_accumulation_steps == 2


# --- freezing and cached encoder outputs ---------------------------------------------------------------------------
def test_a_frozen_encoder_is_unchanged_and_its_cached_outputs_train_the_decoder():
    model = new_model()
    before = canonical_state_dict(model)
    trainer = Trainer(model, options(freeze_encoder=True, gradient_accumulation_steps=1), total_steps=5)
    batch = STEPS[0][0]
    states = trainer.encode(batch["input_features"])
    eager_states = model.get_encoder()(batch["input_features"]).last_hidden_state.numpy()
    np.testing.assert_allclose(states, eager_states, rtol=0, atol=1e-5)  # XLA's kernels round a little apart
    cached = {"encoder_outputs": states, "labels": batch["labels"]}
    expected = eager_loss(model, batch)
    losses = [trainer.train_step([cached], step) for step in range(3)]
    assert losses[0] == pytest.approx(expected, rel=1e-6) and losses[-1] < losses[0]
    after = trainer.canonical_weights()
    encoder = [name for name in after if name.startswith("model.encoder.")]
    assert encoder and all(np.array_equal(after[name], before[name]) for name in encoder)
    assert not np.array_equal(after["model.decoder.layers.0.fc1.weight"], before["model.decoder.layers.0.fc1.weight"])


# --- random draws: dropout and SpecAugment, seeded per step --------------------------------------------------------
def test_dropout_is_drawn_from_the_step_seed_so_a_resumed_run_repeats_it(tmp_path):
    """Dropout in the compiled step draws from the generator reset to the step's seed: resumed from the checkpoint
    after two steps, the run draws (and loses) what it drew before. A stateful op would keep drawing on."""
    opts = options(steps=4, gradient_accumulation_steps=1, seed=7)
    batch = STEPS[0][0]  # one batch: the losses differ only by the draws and the updates
    model = new_model(dropout=0.2)
    trainer = Trainer(model, opts, total_steps=4)
    losses = []
    for step in range(4):
        losses.append(trainer.train_step([batch], step))
        if step == 1:
            model.save_pretrained(tmp_path)
            trainer.save_state(tmp_path)
    restore(trainer, tmp_path)
    assert [trainer.train_step([batch], step) for step in (2, 3)] == losses[2:]
    assert losses[0] != pytest.approx(eager_loss(new_model(dropout=0.2), batch), rel=1e-4)  # dropout drew


def spec_augment_model(**overrides):
    spec = {"apply_spec_augment": True, "mask_time_prob": 0.3, "mask_time_length": 4, "mask_time_min_masks": 2}
    return new_model(TFWhisperModel, **{**spec, **overrides})


def masked_frames(function, features, seed: int) -> np.ndarray:
    tf.random.get_global_generator().reset_from_seed(seed)
    return (function(features).numpy() == 0).all(axis=1)  # (batch, frames): every mel bin zeroed


def expected_fraction(length: int, spans: dict[int, float], mask_length: int = 4) -> float:
    """The expected masked share of a row of ``length`` when ``k`` distinct starts (probability ``spans[k]``) are
    drawn uniformly from the ``length - mask_length + 1`` allowed: every subset of starts enumerated."""
    starts = range(length - mask_length + 1)
    expected = 0.0
    for count, probability in spans.items():
        covered = [len({s + i for s in subset for i in range(mask_length)}) for subset in combinations(starts, count)]
        expected += probability * float(np.mean(covered)) / length
    return expected


def runs(row: np.ndarray) -> list[int]:
    """The lengths of the runs of True in a boolean row."""
    edges = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
    return list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))


def test_spec_augment_draws_whole_spans_in_an_xla_graph_at_the_expected_rate():
    model = spec_augment_model()
    features = tf.constant(np.ones((64, 80, 32), np.float32))
    lengths = np.array([32] * 32 + [20] * 32)
    mask = tf.constant((np.arange(32)[None, :] < lengths[:, None]).astype(np.int32))
    function = tf.function(lambda x: model._mask_input_features(x, mask, training=True), jit_compile=True)
    draws = np.stack([masked_frames(function, features, seed) for seed in range(100)])  # (draws, batch, frames)
    assert function.experimental_get_tracing_count() == 1
    np.testing.assert_array_equal(draws[3], masked_frames(function, features, 3))  # the seed decides
    assert not np.array_equal(draws[3], draws[4])
    # Zeroed frames are whole spans of mask_length, inside each row's unpadded length.
    assert all(min(runs(row), default=4) >= 4 for row in draws.reshape(-1, 32))
    assert not draws[:, 32:, 20:].any()
    # The masked fraction against its exact expectation under the core rule (compute_mask_indices): the standard
    # error of the mean over these draws is below 0.006, the bound about four of them.
    full, padded = draws[:, :32].mean(), draws[:, 32:, :20].mean()
    assert abs(full - expected_fraction(32, {2: 0.6, 3: 0.4})) < 0.025  # int(0.3 * 32 / 4 + u): 2 spans or 3
    assert abs(padded - expected_fraction(20, {2: 1.0})) < 0.025  # int(0.3 * 20 / 4 + u) < 2 = min_masks


def test_the_training_graph_has_no_python_callback():
    """The label shift and SpecAugment are TensorFlow ops: nothing leaves the graph (tf.numpy_function is a PyFunc)."""
    model = new_model(
        TFWhisperForConditionalGeneration, apply_spec_augment=True, mask_time_prob=0.3, mask_time_length=4
    )
    batch = STEPS[0][0]
    step = tf.function(lambda x, y: model(x, labels=y, training=True).loss)
    graph = step.get_concrete_function(tf.constant(batch["input_features"]), tf.constant(batch["labels"])).graph
    definition = graph.as_graph_def()
    ops = {node.op for node in definition.node} | {
        node.op for function in definition.library.function for node in function.node_def
    }
    assert "TopKV2" in ops and "StatelessRandomUniformV2" in ops  # the spans' draw is in the graph
    assert not {op for op in ops if "PyFunc" in op or "NumpyFunction" in op}


def test_eager_spec_augment_is_reproduced_by_keras_set_random_seed():
    model = spec_augment_model()
    features = tf.constant(np.ones((4, 80, 32), np.float32))
    keras.utils.set_random_seed(3)
    first = model._mask_input_features(features, training=True).numpy()
    keras.utils.set_random_seed(3)
    np.testing.assert_array_equal(model._mask_input_features(features, training=True).numpy(), first)
    assert (first == 0).all(axis=1).any()


# --- Keras' fit, evaluate, callbacks and .keras files ---------------------------------------------------------------
def test_fit_with_xla_lowers_the_loss_and_runs_checkpoint_and_early_stopping_callbacks(tmp_path):
    model = new_model()
    batch = make_batch(model.config, seed=1)
    dataset = to_tf_dataset([batch])
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=3e-3, weight_decay=0.01), jit_compile=True)
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="loss", save_best_only=True)
    history = model.fit(dataset, epochs=5, callbacks=[checkpoint], shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert losses[0] == pytest.approx(eager_loss(new_model(), batch), rel=1e-5)
    assert losses[-1] < losses[0] - 0.1
    assert (tmp_path / "best.keras").is_file()
    assert model.evaluate(dataset, verbose=0) == pytest.approx(eager_loss(model, batch), rel=1e-5)
    # An improvement no epoch makes (min_delta): the run stops once patience is spent, after the second epoch.
    stopping = keras.callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=1)
    assert len(model.fit(dataset, epochs=10, callbacks=[stopping], shuffle=False, verbose=0).history["loss"]) == 2


def test_to_tf_dataset_pads_labels_to_one_static_shape():
    config = tiny_config()
    short, long = make_batch(config, seed=1), make_batch(config, seed=2)
    short["labels"] = short["labels"][:, :5]
    dataset = to_tf_dataset([short, long])
    assert dataset.element_spec["labels"].shape == (2, LENGTH)
    padded = next(iter(dataset))["labels"].numpy()
    np.testing.assert_array_equal(padded[:, :5], short["labels"])
    assert (padded[:, 5:] == -100).all()
    model = new_model()
    assert float(model(short["input_features"], labels=padded).loss) == pytest.approx(
        eager_loss(model, short), rel=1e-6
    )


@pytest.mark.parametrize("cls", [TFWhisperForConditionalGeneration, TFWhisperForAudioClassification])
def test_a_keras_file_round_trips_with_identical_logits(tmp_path, cls):
    model = new_model(cls, num_labels=3)
    model.compile(optimizer=make_optimizer(model, options(gradient_accumulation_steps=1), 5))
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(3)  # a state to carry over
    features = random_features(model.config, 2)
    inputs = {"decoder_input_ids": STEPS[0][0]["labels"].clip(0)} if cls is TFWhisperForConditionalGeneration else {}
    expected = model(features, **inputs).logits.numpy()
    model.save(tmp_path / "model.keras")
    keras.utils.set_random_seed(99)  # fresh weights are not these
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded) is cls and loaded.config == model.config
    np.testing.assert_array_equal(loaded(features, **inputs).logits.numpy(), expected)
    assert isinstance(loaded.optimizer, TorchAdamW) and int(loaded.optimizer.iterations) == 3
