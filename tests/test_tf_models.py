"""What only the TF Keras models have: variable paths, the Keras backend guard, graph mode, mixed precision, Keras
training, SpecAugment as TensorFlow draws it, Transformers' TF h5 files, SavedModel export, real tiny.en weights.

What the three backends share is tested once for all of them in tests/test_models.py. TensorFlow's oneDNN CPU
kernels are turned off (TF_ENABLE_ONEDNN_OPTS=0, set here before TensorFlow is imported unless the environment
already sets it) for the closest agreement with PyTorch's CPU kernels; the 1e-5 bounds hold either way on the tiny
configs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from conformance.configs import SMALL_VOCABULARY, random_config, random_features, random_token_ids  # noqa: E402

from conftest import float32_pair_bound, load_tiny_en  # noqa: E402
from whisper_multi.tf import (  # noqa: E402
    TFWhisperForAudioClassification,
    TFWhisperForConditionalGeneration,
    TFWhisperModel,
    export_saved_model,
)
from whisper_multi.tf.loading import canonical_state_dict  # noqa: E402
from whisper_multi.weights.table import framework_names  # noqa: E402

BATCH, LENGTH = 2, 5
TOLERANCE = 1e-5
CONFIG = random_config("tiny", num_labels=3)


def features(batch: int = BATCH, seed: int = 1) -> np.ndarray:
    return random_features(CONFIG, batch, seed)


def token_ids(batch: int = BATCH, length: int = LENGTH, seed: int = 2) -> np.ndarray:
    return random_token_ids(CONFIG, batch, length, seed)


def max_abs(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def new_tf_model(cls=TFWhisperForConditionalGeneration, seed: int = 0, **overrides):
    keras.utils.set_random_seed(seed)
    return cls(random_config("tiny", num_labels=3, **overrides))


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
    config = random_config("tiny", use_weighted_layer_sum=True)
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
    model = new_tf_model(**SMALL_VOCABULARY)
    labels = random_token_ids(model.config, seed=5)
    optimizer = keras.optimizers.Adam(learning_rate=1e-3)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = model(x, labels=y, training=True).loss
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_weights), model.trainable_weights))
        return loss

    losses = [float(train_step(features(), labels)) for _ in range(4)]
    assert losses[-1] < losses[0] - 0.5


def test_spec_augment_applies_only_in_training():
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


def test_a_dropped_layer_leaves_no_attention_weights():
    dropping = new_tf_model(encoder_layerdrop=1.0, decoder_layerdrop=1.0)
    out = dropping(features(), decoder_input_ids=token_ids(), output_attentions=True, training=True)
    assert out.encoder_attentions == (None, None) and out.decoder_attentions == ()


# --- loading and saving --------------------------------------------------------------------------------------------
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
    assert max_abs(served, expected) <= TOLERANCE


# --- real weights: tiny.en -----------------------------------------------------------------------------------------
torch = None


def pt_modules():
    global torch
    torch = pytest.importorskip("torch")
    from whisper_multi import pt

    return pt


@pytest.mark.slow
def test_tiny_en_logits_match_pytorch_on_the_real_clip_within_float32_error():
    pt = pt_modules()

    def load_both(path):
        tf_model = TFWhisperForConditionalGeneration.from_pretrained(path)
        return tf_model, pt.WhisperForConditionalGeneration.from_ct2(path)

    _, (model, torch_model), reference = load_tiny_en(load_both)
    input_features, ids = reference["input_features"], reference["decoder_input_ids"]
    out = model(input_features, decoder_input_ids=ids)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(input_features), decoder_input_ids=torch.from_numpy(ids))
    encoder_difference = max_abs(out.encoder_last_hidden_state, expected.encoder_last_hidden_state)
    difference = max_abs(out.logits, expected.logits)
    transformers_difference = max_abs(out.logits[0].numpy()[:, reference["vocab_ids"]], reference["logits"])
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
