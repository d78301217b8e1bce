"""TF Keras Whisper models: variable names, parity with the PyTorch models, cache, graph mode, training, loading.

The PyTorch models are the reference: both backends load the same canonical weights (random tiny configs, and the
real tiny.en weights for the real clip), so a difference isolates the model code. TensorFlow's oneDNN CPU kernels
are turned off (TF_ENABLE_ONEDNN_OPTS=0, set here before TensorFlow is imported unless the environment already sets
it) for the closest agreement with PyTorch's CPU kernels; the 1e-5 bounds hold either way on the tiny configs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from conftest import float32_pair_bound  # noqa: E402
from whisper_multi.configuration import WhisperConfig  # noqa: E402
from whisper_multi.errors import CheckpointError, InputError  # noqa: E402
from whisper_multi.tf import (  # noqa: E402
    Seq2SeqLMOutput,
    TFWhisperForAudioClassification,
    TFWhisperForConditionalGeneration,
    TFWhisperModel,
    export_saved_model,
)
from whisper_multi.tf.loading import canonical_state_dict, load_tensors, model_variables  # noqa: E402
from whisper_multi.weights.pretrained import prepare_tensors  # noqa: E402
from whisper_multi.weights.table import canonical_parameters, framework_names, from_framework_layout  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "pt"
BATCH, LENGTH = 2, 5
VOCAB = 51865
TOLERANCE = 1e-5
CONFIGS = {
    # 32 mel frames keep the random models fast.
    "tiny": {"d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "heads": 4},
    "odd": {"d_model": 48, "encoder_layers": 3, "decoder_layers": 1, "heads": 6},
}


def tiny_config(name: str = "tiny", **overrides) -> WhisperConfig:
    shape = CONFIGS[name]
    fields = {
        "d_model": shape["d_model"],
        "encoder_layers": shape["encoder_layers"],
        "decoder_layers": shape["decoder_layers"],
        "encoder_attention_heads": shape["heads"],
        "decoder_attention_heads": shape["heads"],
        "encoder_ffn_dim": 2 * shape["d_model"],
        "decoder_ffn_dim": 2 * shape["d_model"],
        "max_source_positions": 16,
        "max_target_positions": 32,
        "vocab_size": VOCAB,
        "num_labels": 3,
    }
    return WhisperConfig(**{**fields, **overrides})


def features(batch: int = BATCH, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 80, 32)).astype(np.float32)


def token_ids(batch: int = BATCH, length: int = LENGTH, seed: int = 2) -> np.ndarray:
    ids = np.random.default_rng(seed).integers(0, 50000, (batch, length))
    ids[:, 0] = 50257
    return ids


def max_abs(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def new_tf_model(cls=TFWhisperForConditionalGeneration, config_name: str = "tiny", seed: int = 0, **overrides):
    keras.utils.set_random_seed(seed)
    return cls(tiny_config(config_name, **overrides))


# --- variables are the table's TF names ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "head"),
    [
        (TFWhisperForConditionalGeneration, "conditional_generation"),
        (TFWhisperModel, "base"),
        (TFWhisperForAudioClassification, "audio_classification"),
    ],
)
def test_variable_paths_are_the_table_tf_names(cls, head):
    config = tiny_config(use_weighted_layer_sum=True)
    model = cls(config)
    paths = sorted(f"{v.path}:0" for v in model.weights)
    expected = framework_names(config, "tf", head)
    # The path is the table name, under the model's own name where Keras roots it there.
    prefix = "" if head == "conditional_generation" else f"{model.name}/"
    assert paths == sorted(prefix + name for name in expected.values())
    assert len(model.weights) == len(expected)
    assert model.num_parameters() == sum(int(np.prod(v.shape)) for v in model.weights)


def test_importing_with_another_keras_backend_raises_backend_error():
    code = "import whisper_multi.tf"
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "BackendError" in result.stderr and "KERAS_BACKEND=tensorflow" in result.stderr


# --- parity with PyTorch -------------------------------------------------------------------------------------------
torch = None


def pt_modules():
    global torch
    torch = pytest.importorskip("torch")
    from whisper_multi import pt

    return pt


def pt_and_tf(kind: str, config: WhisperConfig, seed: int = 0):
    """A random PyTorch model and the TF model holding the same canonical weights."""
    pt = pt_modules()
    pt_cls, tf_cls = {
        "generation": (pt.WhisperForConditionalGeneration, TFWhisperForConditionalGeneration),
        "classification": (pt.WhisperForAudioClassification, TFWhisperForAudioClassification),
    }[kind]
    torch.manual_seed(seed)
    reference = pt_cls(config).eval()
    with torch.no_grad():
        for parameter in reference.parameters():  # larger than the 0.02 init, so differences show
            parameter.add_(0.05 * torch.randn_like(parameter))
    model = tf_cls(config)
    tensors = {n: t.numpy() for n, t in reference.state_dict().items() if n != "proj_out.weight"}
    load_tensors(model, prepare_tensors(tensors, model.head, config, "the PyTorch model"))
    return reference, model


def flat_arrays(value) -> list[np.ndarray]:
    if value is None:
        return []
    if isinstance(value, (tuple, list)):
        return [array for item in value for array in flat_arrays(item)]
    return [value.detach().numpy() if hasattr(value, "detach") else np.asarray(value)]


PARITY: dict[str, float] = {}  # output -> worst max abs difference seen, printed at the end of the module


def record(name: str, difference: float) -> float:
    PARITY[name] = max(PARITY.get(name, 0.0), difference)
    return difference


@pytest.fixture(scope="module", autouse=True)
def report_parity():
    yield
    if PARITY:
        print("\nTF vs PyTorch max abs difference:", json.dumps(PARITY, indent=1))


@pytest.mark.parametrize("config_name", ["tiny", "odd"])
def test_every_output_matches_pytorch(config_name):
    config = tiny_config(config_name)
    reference, model = pt_and_tf("generation", config)
    labels = token_ids(seed=4)
    labels[0, 3:] = -100
    kwargs = {"output_attentions": True, "output_hidden_states": True}
    with torch.no_grad():
        expected = reference(torch.from_numpy(features()), labels=torch.from_numpy(labels), **kwargs)
    out = model(features(), labels=labels, **kwargs)
    assert isinstance(out, Seq2SeqLMOutput) and out.keys() == expected.keys()
    assert out.logits.shape == (BATCH, LENGTH, VOCAB)
    for name in expected.keys():
        ours, theirs = flat_arrays(out[name]), flat_arrays(expected[name])
        assert len(ours) == len(theirs) and [a.shape for a in ours] == [b.shape for b in theirs], name
        difference = record(name, max(max_abs(a, b) for a, b in zip(ours, theirs)))
        assert difference <= TOLERANCE, f"{config_name} {name}: max abs {difference:.3g}"


@pytest.mark.parametrize("config_name", ["tiny", "odd"])
def test_cached_steps_match_pytorch_and_the_full_sequence(config_name):
    config = tiny_config(config_name)
    reference, model = pt_and_tf("generation", config)
    ids = token_ids(length=6)
    with torch.no_grad():
        full = reference(torch.from_numpy(features()), decoder_input_ids=torch.from_numpy(ids)).logits.numpy()
    encoder_outputs = model.get_encoder()(features())
    for static in (False, True):
        cache = model.init_cache(BATCH, max_length=config.max_target_positions) if static else None
        out = model(
            encoder_outputs=encoder_outputs,
            decoder_input_ids=ids[:, :2],
            past_key_values=cache,
            cache_position=tf.range(2) if static else None,
        )
        steps, cache = [out.logits], out.past_key_values
        for t in range(2, 6):
            out = model(
                encoder_outputs=encoder_outputs,
                decoder_input_ids=ids[:, t : t + 1],
                past_key_values=cache,
                cache_position=tf.constant([t]) if static else None,
            )
            assert out.past_key_values[0][0].shape[2] == (config.max_target_positions if static else t + 1)
            assert out.past_key_values[0][2] is cache[0][2]  # cross keys are computed once and reused
            steps.append(out.logits)
            cache = out.past_key_values
        difference = record("cached step logits", max_abs(tf.concat(steps, axis=1), full))
        assert difference <= TOLERANCE


@pytest.mark.parametrize("weighted", [False, True])
def test_audio_classification_matches_pytorch(weighted):
    config = tiny_config("odd", use_weighted_layer_sum=weighted)
    reference, model = pt_and_tf("classification", config)
    labels = np.array([2, 0])
    with torch.no_grad():
        expected = reference(torch.from_numpy(features()), labels=torch.from_numpy(labels))
    out = model(features(), labels=labels)
    assert out.logits.shape == (BATCH, 3) and (out.hidden_states is not None) == weighted
    assert record("classification logits", max_abs(out.logits, expected.logits)) <= TOLERANCE
    assert record("classification loss", max_abs(out.loss, expected.loss)) <= TOLERANCE


def test_head_masks_and_padding_mask_match_pytorch():
    config = tiny_config()
    reference, model = pt_and_tf("generation", config)
    rng = np.random.default_rng(9)
    masks = {
        "head_mask": (rng.random((2, 4)) > 0.3).astype(np.float32),
        "decoder_head_mask": (rng.random((2, 4)) > 0.3).astype(np.float32),
        "cross_attn_head_mask": (rng.random((2, 4)) > 0.3).astype(np.float32),
        "decoder_attention_mask": np.array([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]]),
    }
    with torch.no_grad():
        expected = reference(
            torch.from_numpy(features()),
            decoder_input_ids=torch.from_numpy(token_ids()),
            output_attentions=True,
            **{name: torch.from_numpy(mask) for name, mask in masks.items()},
        )
    out = model(features(), decoder_input_ids=token_ids(), output_attentions=True, **masks)
    for name in ("logits", "encoder_attentions", "decoder_attentions", "cross_attentions"):
        difference = max(max_abs(a, b) for a, b in zip(flat_arrays(out[name]), flat_arrays(expected[name])))
        assert record(f"masked {name}", difference) <= TOLERANCE, name
    per_head = np.abs(out.encoder_attentions[0].numpy()).max(axis=(0, 2, 3))  # (heads,)
    assert np.array_equal(per_head > 0, masks["head_mask"][0] > 0)


def test_gradients_match_pytorch():
    config = tiny_config()
    reference, model = pt_and_tf("generation", config)
    labels = token_ids(seed=6)
    labels[1, 3:] = -100  # shifted into pad tokens in the decoder input: the padding row gets no gradient
    reference.train()  # the tiny config has no dropout: training mode is deterministic
    reference(torch.from_numpy(features()), labels=torch.from_numpy(labels)).loss.backward()
    expected = {n: p.grad.numpy() for n, p in reference.named_parameters() if p.grad is not None}
    names = {v.path: n for n, v in model_variables(model).items()}
    kinds = {name: spec.kind for name, spec in canonical_parameters(config).items()}
    with tf.GradientTape() as tape:
        loss = model(features(), labels=labels, training=True).loss
    gradients = tape.gradient(loss, model.trainable_weights)
    checked = 0
    for variable, gradient in zip(model.trainable_weights, gradients):
        name = names[variable.path]
        ours = from_framework_layout(tf.convert_to_tensor(gradient).numpy(), kinds[name], "tf")
        theirs = expected[name]
        scale = max(float(np.abs(theirs).max()), 1e-6)
        relative = max_abs(ours, theirs) / scale
        assert relative <= 1e-4, f"{name}: relative difference {relative:.3g}"
        checked += 1
        record("gradients (max relative)", relative)
    assert checked == len(expected) == len(model.trainable_weights)


# --- graph mode ----------------------------------------------------------------------------------------------------
def test_compiled_forward_and_static_decoding_step_do_not_retrace():
    model = new_tf_model()
    eager = model(features(), decoder_input_ids=token_ids())

    forward = tf.function(lambda x, ids: model(x, decoder_input_ids=ids).logits, jit_compile=True)
    assert max_abs(forward(features(), token_ids()), eager.logits) <= TOLERANCE

    @tf.function(jit_compile=True)
    def step(ids, position, states, cache):
        out = model(encoder_outputs=(states,), decoder_input_ids=ids, past_key_values=cache, cache_position=position)
        return out.logits, out.past_key_values

    ids = token_ids()
    states = eager.encoder_last_hidden_state
    cache = model.init_cache(BATCH, max_length=8)
    # The first step fills the cross pairs; from then on every step has the same shapes.
    first = model(encoder_outputs=(states,), decoder_input_ids=ids[:, :1], past_key_values=cache, cache_position=[0])
    cache, logits = first.past_key_values, [first.logits]
    for t in range(1, LENGTH):
        step_logits, cache = step(tf.constant(ids[:, t : t + 1]), tf.constant([t]), states, cache)
        logits.append(step_logits)
    assert step.experimental_get_tracing_count() == 1
    assert max_abs(tf.concat(logits, axis=1), eager.logits) <= TOLERANCE


def test_mixed_precision_gives_finite_logits():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = new_tf_model()
        out = model(features(), decoder_input_ids=token_ids(), labels=token_ids(seed=3))
        float32 = new_tf_model()
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert out.logits.dtype == tf.float16 and model.weights[0].dtype == "float32"
    assert np.isfinite(out.logits.numpy()).all() and np.isfinite(float(out.loss))
    reference = float32(features(), decoder_input_ids=token_ids()).logits
    assert max_abs(out.logits, reference) < 0.05


# --- training ------------------------------------------------------------------------------------------------------
def test_a_few_optimizer_steps_lower_the_loss():
    small_vocab = {
        "vocab_size": 500,
        "decoder_start_token_id": 1,
        "pad_token_id": 0,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "begin_suppress_tokens": None,
    }
    model = new_tf_model(**small_vocab)
    labels = token_ids(seed=5) % 500
    optimizer = keras.optimizers.Adam(learning_rate=1e-3)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = model(x, labels=y, training=True).loss
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_weights), model.trainable_weights))
        return loss

    losses = [float(train_step(features(), labels)) for _ in range(4)]
    assert losses[-1] < losses[0] - 0.5


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model = new_tf_model(dropout=0.0)
        if checkpointing:
            model.gradient_checkpointing_enable()
            assert model.is_gradient_checkpointing
        with tf.GradientTape() as tape:
            loss = model(features(), labels=token_ids(seed=6), training=True).loss
        grads.append([tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, model.trainable_weights)])
    assert len(grads[0]) == len(grads[1]) > 40
    assert max(max_abs(a, b) for a, b in zip(*grads)) <= 1e-6


def test_spec_augment_and_layerdrop_apply_only_in_training():
    spec = {"apply_spec_augment": True, "mask_time_prob": 0.5, "mask_time_length": 4, "mask_feature_prob": 0.2}
    augmented = new_tf_model(TFWhisperModel, mask_feature_length=8, **spec)
    x = tf.constant(features())
    assert augmented._mask_input_features(x) is x  # not training: untouched
    keras.utils.set_random_seed(7)
    masked = augmented._mask_input_features(x, training=True).numpy()
    assert (masked == 0).all(axis=1).any() and (masked == 0).all(axis=2).any()
    assert np.array_equal(masked[masked != 0], features()[masked != 0])
    keras.utils.set_random_seed(7)
    assert np.array_equal(augmented._mask_input_features(x, training=True).numpy(), masked)

    dropping = new_tf_model(encoder_layerdrop=1.0, decoder_layerdrop=1.0)
    plain = new_tf_model()
    assert (
        max_abs(dropping(x, decoder_input_ids=token_ids()).logits, plain(x, decoder_input_ids=token_ids()).logits) == 0
    )
    out = dropping(x, decoder_input_ids=token_ids(), output_attentions=True, training=True)
    assert out.encoder_attentions == (None, None) and out.decoder_attentions == ()


# --- loading and saving --------------------------------------------------------------------------------------------
def test_save_load_round_trips_with_pytorch_are_bit_exact(tmp_path):
    pt = pt_modules()
    model = new_tf_model()
    files = model.save_pretrained(tmp_path / "tf")
    assert [f.name for f in files] == ["config.json", "model.safetensors"]
    saved = canonical_state_dict(model)
    # TF -> canonical -> PyTorch
    from_tf = pt.WhisperForConditionalGeneration.from_pretrained(tmp_path / "tf")
    pt_state = {n: t.numpy() for n, t in from_tf.state_dict().items() if n != "proj_out.weight"}
    assert pt_state.keys() == saved.keys()
    assert all(np.array_equal(pt_state[n], saved[n]) for n in saved)
    # PyTorch -> canonical -> TF
    torch.manual_seed(3)
    reference = pt.WhisperForConditionalGeneration(model.config)
    reference.save_pretrained(tmp_path / "pt")
    loaded = TFWhisperForConditionalGeneration.from_pretrained(tmp_path / "pt")
    ours = canonical_state_dict(loaded)
    assert all(np.array_equal(ours[n], t.numpy()) for n, t in reference.state_dict().items() if n in ours)
    # TF -> TF, sharded, and into the other heads.
    model.save_pretrained(tmp_path / "sharded", max_shard_size="2MB")
    again = TFWhisperForConditionalGeneration.from_pretrained(tmp_path / "sharded")
    assert all(np.array_equal(a, b) for a, b in zip(canonical_state_dict(again).values(), saved.values()))
    base = TFWhisperModel.from_pretrained(tmp_path / "tf")
    assert np.array_equal(
        canonical_state_dict(base)["decoder.layers.1.fc2.weight"], saved["model.decoder.layers.1.fc2.weight"]
    )
    with pytest.warns(UserWarning, match="classifier.weight"):
        classifier = TFWhisperForAudioClassification.from_pretrained(tmp_path / "tf")
    assert np.array_equal(canonical_state_dict(classifier)["encoder.conv1.weight"], saved["model.encoder.conv1.weight"])


def test_transformers_tf_h5_loads_through_the_weights_reader(tmp_path):
    hf_formats = pytest.importorskip("whisper_multi.weights.hf_formats")
    pytest.importorskip("h5py")
    model = new_tf_model()
    model.config.save_pretrained(tmp_path)
    hf_formats.write_tf(tmp_path, model.config, canonical_state_dict(model))
    loaded = TFWhisperForConditionalGeneration.from_pretrained(tmp_path)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(canonical_state_dict(loaded).values(), canonical_state_dict(model).values())
    )


@pytest.mark.parametrize("change", ["extra", "missing", "shape"])
def test_a_checkpoint_with_a_wrong_name_or_shape_is_refused_naming_it(change):
    model = new_tf_model()
    tensors = dict(canonical_state_dict(model))
    name = "model.decoder.layers.1.encoder_attn.v_proj.bias"
    if change == "extra":
        name = "model.decoder.layers.1.encoder_attn.k_proj.bias"
        tensors[name] = np.zeros(64, np.float32)
    elif change == "missing":
        del tensors[name]
    else:
        tensors[name] = np.zeros(65, np.float32)
    title = {"extra": "unexpected", "missing": "missing", "shape": "wrong shape"}[change]
    with pytest.raises(CheckpointError, match=r"(?s)" + title + ".*" + name.replace(".", r"\.")):
        load_tensors(model, prepare_tensors(tensors, model.head, model.config, "a checkpoint"))


def test_input_checks_name_the_expected_shape():
    model = new_tf_model()
    with pytest.raises(InputError, match=r"\(batch, 80, 32\)"):
        model(np.zeros((1, 128, 32), np.float32), decoder_input_ids=token_ids(1))
    with pytest.raises(InputError, match="max_target_positions=32"):
        model(features(1), decoder_input_ids=np.zeros((1, 33), np.int64))
    with pytest.raises(InputError, match=r"\(2, 4\)"):
        model(features(1), decoder_input_ids=token_ids(1), head_mask=np.ones((3, 4), np.float32))


# --- SavedModel ----------------------------------------------------------------------------------------------------
def test_saved_model_serves_the_same_logits_in_a_fresh_process(tmp_path):
    model = new_tf_model()
    export_saved_model(model, tmp_path / "saved", batch_size=1, max_length=8)
    ids = token_ids(1, 4)
    np.save(tmp_path / "features.npy", features(1))
    np.save(tmp_path / "ids.npy", ids)
    expected = model(features(1), decoder_input_ids=ids).logits.numpy()
    script = textwrap.dedent(
        f"""
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({str(tmp_path / "saved")!r})
        ids = np.load({str(tmp_path / "ids.npy")!r}).astype(np.int32)
        start = loaded.signatures["encode"](input_features=tf.constant(np.load({str(tmp_path / "features.npy")!r})))
        cache = {{name: start[name] for name in ("self_k", "self_v", "cross_k", "cross_v")}}
        logits = []
        for t in range(ids.shape[1]):
            out = loaded.signatures["decode_step"](
                decoder_input_ids=tf.constant(ids[:, t : t + 1]),
                cache_position=tf.constant([t], tf.int32),
                encoder_hidden_states=start["encoder_hidden_states"],
                **cache,
            )
            cache.update(self_k=out["self_k"], self_v=out["self_v"])
            logits.append(out["logits"].numpy())
        np.save({str(tmp_path / "served.npy")!r}, np.concatenate(logits, axis=1))
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    served = np.load(tmp_path / "served.npy")
    assert served.shape == expected.shape
    assert record("SavedModel logits", max_abs(served, expected)) <= TOLERANCE


# --- real weights: tiny.en -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_en_logits_match_pytorch_on_the_real_clip_within_float32_error():
    pt = pt_modules()
    from whisper_multi.weights.packages import embedded_model_path

    try:
        path = embedded_model_path()
    except Exception as error:  # the package of real weights is an optional install
        pytest.skip(f"tiny.en weights not installed: {error}")
    reference = dict(np.load(FIXTURES / "tiny_en_reference.npz"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float32 weights: no dequantization warning expected
        model = TFWhisperForConditionalGeneration.from_pretrained(path)
        torch_model = pt.WhisperForConditionalGeneration.from_ct2(path)
    input_features, ids = reference["input_features"], reference["decoder_input_ids"]
    out = model(input_features, decoder_input_ids=ids)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(input_features), decoder_input_ids=torch.from_numpy(ids))
    encoder_difference = record(
        "tiny.en encoder states", max_abs(out.encoder_last_hidden_state, expected.encoder_last_hidden_state)
    )
    difference = record("tiny.en logits", max_abs(out.logits, expected.logits))
    transformers_difference = record(
        "tiny.en logits vs Transformers fixture",
        max_abs(out.logits[0].numpy()[:, reference["vocab_ids"]], reference["logits"]),
    )
    assert difference <= float32_pair_bound(expected.logits.numpy())
    assert transformers_difference <= float32_pair_bound(reference["logits"])
    assert encoder_difference <= float32_pair_bound(expected.encoder_last_hidden_state, "encoder_last_hidden_state")
    assert np.array_equal(out.logits[0, -1].numpy().argmax(), expected.logits[0, -1].numpy().argmax())


def test_the_exact_gelu_is_exact_in_float64_and_float32():
    import math

    from whisper_multi.tf.modeling_tf_whisper import ACTIVATIONS

    x = np.linspace(-8.0, 8.0, 1001)
    expected = np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x])
    assert np.abs(ACTIVATIONS["gelu"](tf.constant(x)).numpy() - expected).max() <= 1e-14
    single = x.astype(np.float32)
    expected = np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in single.astype(np.float64)])
    assert np.abs(ACTIVATIONS["gelu"](tf.constant(single)).numpy() - expected).max() <= 1e-6
