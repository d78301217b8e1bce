"""What only the Flax models have: the ``decode`` wrapper and the compiled functions, optax training, dropout keys,
SpecAugment as JAX draws it, scanned layers, Transformers' msgpack files, Flax dtypes, real tiny.en weights.

What the three backends share is tested once for all of them in tests/test_models.py (float32 on CPU, default
matmul precision: XLA's CPU float32 matmul is exact float32, no reduced-precision passes). Real tiny.en weights come
from the embedded CTranslate2 package; their references are tests/fixtures/pt/ (Transformers 4.57, see
scripts/make_pt_fixtures.py).
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
import jax.numpy as jnp  # noqa: E402
from conformance.configs import random_config, random_features, random_labels, random_tensors, random_token_ids  # noqa: E402

from conftest import float32_pair_bound, load_tiny_en  # noqa: E402
from whisper_multi.errors import InputError  # noqa: E402
from whisper_multi.flax import FlaxWhisperForAudioClassification, FlaxWhisperForConditionalGeneration  # noqa: E402

BATCH, LENGTH = 2, 6  # random_labels are 6 long
TOLERANCE = 1e-5
PREFIX = [50257, 50362]  # <|startoftranscript|><|notimestamps|> of tiny.en
EOT = 50256
CONFIG = random_config("tiny")


def features(batch: int = BATCH, seed: int = 1) -> np.ndarray:
    return random_features(CONFIG, batch, seed)


def token_ids(batch: int = BATCH, length: int = LENGTH, seed: int = 2) -> np.ndarray:
    return random_token_ids(CONFIG, batch, length, seed)


def max_abs(a, b) -> float:
    return float(np.abs(np.asarray(a).astype(np.float64) - np.asarray(b).astype(np.float64)).max())


@pytest.fixture(scope="module", params=["tiny", "odd"])
def random_model(request):
    """A model of random canonical weights (conformance.configs) per config."""
    config = random_config(request.param)
    return FlaxWhisperForConditionalGeneration.from_state_dict(config, random_tensors(config))


@pytest.fixture(scope="module")
def model():
    return FlaxWhisperForConditionalGeneration(CONFIG, seed=0)


# --- the decode wrapper and the compiled functions ------------------------------------------------------------------
def test_the_decode_wrapper_and_the_compiled_step_give_the_full_pass_logits(random_model):
    config = random_model.config
    ids = random_token_ids(config, length=LENGTH)
    expected = np.asarray(random_model(random_features(config), decoder_input_ids=ids).logits)
    encoder_states = random_model.jit_encode(random_model.params, jnp.asarray(random_features(config)))
    # Dynamic cache (grows by concatenation), through the wrapper: two tokens, then one at a time.
    out = random_model.decode(ids[:, :2], (encoder_states,))
    dynamic = [np.asarray(out.logits)]
    for step in range(2, LENGTH):
        out = random_model.decode(ids[:, step : step + 1], (encoder_states,), past_key_values=out.past_key_values)
        dynamic.append(np.asarray(out.logits))
    assert max_abs(expected, np.concatenate(dynamic, axis=1)) <= TOLERANCE
    # Static cache, through the compiled step.
    cache = random_model.init_cache(BATCH, max_length=8)
    static = []
    for start, stop in [(0, 2), *((step, step + 1) for step in range(2, LENGTH))]:
        logits, cache = random_model.jit_decode_step(
            random_model.params, jnp.asarray(ids[:, start:stop]), cache, encoder_states, jnp.arange(start, stop)
        )
        static.append(np.asarray(logits))
    assert max_abs(expected, np.concatenate(static, axis=1)) <= TOLERANCE


def test_compiled_functions_trace_once_per_shape(model):
    encoder_states = model.jit_encode(model.params, jnp.asarray(features()))
    model.jit_encode(model.params, jnp.asarray(features(seed=5)))
    assert model.jit_encode._cache_size() == 1
    cache = model.init_cache(BATCH, max_length=12)
    _, cache = model.jit_decode_step(
        model.params, jnp.asarray(token_ids(length=2)), cache, encoder_states, jnp.arange(2)
    )
    assert model.jit_decode_step._cache_size() == 1  # the prefix, filling the cross-attention pairs
    for step in range(2, 12):
        _, cache = model.jit_decode_step(
            model.params, jnp.full((BATCH, 1), step, jnp.int32), cache, encoder_states, jnp.arange(step, step + 1)
        )
    assert model.jit_decode_step._cache_size() == 2  # one more for the single-token step, reused ten times


# --- training ------------------------------------------------------------------------------------------------------
def _value_and_grad(flax_model, labels):
    """A compiled ``params -> (loss, gradients)`` on the fixed features and labels."""

    def loss_fn(params):
        return flax_model(features(), labels=labels, params=params).loss

    return jax.jit(jax.value_and_grad(loss_fn))


def test_an_optax_step_lowers_the_loss_and_remat_in_training_keeps_it():
    optax = pytest.importorskip("optax")
    model = FlaxWhisperForConditionalGeneration(CONFIG, seed=1)
    labels = jnp.asarray(random_labels(CONFIG))
    value_and_grad = _value_and_grad(model, labels)
    loss, grads = value_and_grad(model.params)
    checkpointed = FlaxWhisperForConditionalGeneration(CONFIG, seed=1, gradient_checkpointing=True)
    checkpointed.params = model.params
    trained = checkpointed(features(), labels=labels, train=True, dropout_rng=jax.random.PRNGKey(0)).loss
    assert abs(float(loss) - float(trained)) <= TOLERANCE  # no dropout in the config: training = eval

    optimizer = optax.adam(1e-3)
    state = optimizer.init(model.params)
    params = model.params
    for _ in range(3):
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        loss_after, grads = value_and_grad(params)
    assert float(loss_after) < float(loss) - 0.1


def test_dropout_needs_a_key_and_changes_outputs_only_in_training():
    model = FlaxWhisperForConditionalGeneration(random_config("tiny", dropout=0.5), seed=0)
    ids = token_ids()
    with pytest.raises(InputError, match="dropout_rng"):
        model(features(), decoder_input_ids=ids, train=True)
    eval_logits = model(features(), decoder_input_ids=ids).logits
    assert np.array_equal(eval_logits, model(features(), decoder_input_ids=ids).logits)
    first = model(features(), decoder_input_ids=ids, train=True, dropout_rng=jax.random.PRNGKey(1)).logits
    again = model(features(), decoder_input_ids=ids, train=True, dropout_rng=jax.random.PRNGKey(1)).logits
    other = model(features(), decoder_input_ids=ids, train=True, dropout_rng=jax.random.PRNGKey(2)).logits
    assert np.array_equal(first, again) and not np.allclose(first, other) and not np.allclose(first, eval_logits)


def test_spec_augment_masks_spans_only_when_training_and_enabled():
    config = random_config("tiny", apply_spec_augment=True, mask_time_prob=0.3, mask_time_length=4, mask_time_min_masks=1,
                         mask_feature_prob=0.2, mask_feature_length=5)  # fmt: skip
    model = FlaxWhisperForConditionalGeneration(config, seed=0)
    values = jnp.asarray(np.abs(features()) + 1.0)  # no zeros of its own

    def mask(deterministic: bool, seed: int = 7) -> np.ndarray:
        bound = model.module.bind({"params": model.params}, rngs={"dropout": jax.random.PRNGKey(seed)})
        return np.asarray(bound.model._mask_input_features(values, None, deterministic))

    assert np.array_equal(mask(True), values)
    masked = mask(False)
    assert np.array_equal(masked, mask(False))  # the same key, the same masks
    assert not np.array_equal(masked, mask(False, seed=8))
    zero = masked == 0
    frames_zeroed = zero.all(axis=1)  # (batch, frames): whole frames
    bins_zeroed = zero.all(axis=2)  # (batch, mels): whole mel bins
    assert np.array_equal(zero, frames_zeroed[:, None, :] | bins_zeroed[:, :, None])
    for row in frames_zeroed:
        assert row.sum() >= 4  # at least one span of mask_time_length
    for row in bins_zeroed:
        assert 5 <= row.sum() <= 80 * 0.2 + 5 * 2


# --- scanned layers ------------------------------------------------------------------------------------------------
def test_scanned_layers_give_the_unscanned_outputs_and_weights(random_model):
    flax_model = random_model
    config = flax_model.config
    scanned = FlaxWhisperForConditionalGeneration.from_state_dict(config, flax_model.state_dict(), scan_layers=True)
    assert scanned.params["model"]["encoder"]["layers"]["fc1"]["kernel"].shape[0] == config.encoder_layers
    kwargs = {"decoder_input_ids": token_ids(), "labels": random_labels(CONFIG), "output_attentions": True,
              "output_hidden_states": True}  # fmt: skip
    # One compiled loop body instead of unrolled layers: XLA may fuse the float32 sums differently, by a few ulps.
    unscanned, found = flax_model(features(), **kwargs), scanned(features(), **kwargs)
    assert list(unscanned.keys()) == list(found.keys())
    for name in unscanned.keys():
        expected, leaves = jax.tree_util.tree_leaves(unscanned[name]), jax.tree_util.tree_leaves(found[name])
        assert len(expected) == len(leaves) and max(max_abs(a, b) for a, b in zip(expected, leaves)) <= TOLERANCE, name
    encoder_states = scanned.jit_encode(scanned.params, jnp.asarray(features()))
    cache = scanned.init_cache(BATCH, max_length=8)
    _, cache = scanned.jit_decode_step(
        scanned.params, jnp.asarray(token_ids()[:, :2]), cache, encoder_states, jnp.arange(2)
    )
    logits, _ = scanned.jit_decode_step(
        scanned.params, jnp.asarray(token_ids()[:, 2:3]), cache, encoder_states, jnp.arange(2, 3)
    )
    full = flax_model(features(), decoder_input_ids=token_ids()[:, :3]).logits
    assert max_abs(full[:, 2:3], logits) <= TOLERANCE
    original, converted = flax_model.state_dict(), scanned.state_dict()
    assert all(np.array_equal(original[name], converted[name]) for name in original)


# --- loading and saving --------------------------------------------------------------------------------------------
def test_transformers_msgpack_loads_and_heads_hold_their_param_trees(model, tmp_path):
    from whisper_multi.weights.hf_formats import write_flax

    model.config.save_pretrained(tmp_path)
    write_flax(tmp_path, model.config, model.state_dict())  # Transformers' flax_model.msgpack
    from_msgpack = FlaxWhisperForConditionalGeneration.from_pretrained(tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(model.params), jax.tree_util.tree_leaves(from_msgpack.params)))  # fmt: skip
    with pytest.warns(UserWarning, match="newly initialised: projector.weight"):
        classifier = FlaxWhisperForAudioClassification.from_pretrained(tmp_path)
    assert set(classifier.params) == {"encoder", "projector", "classifier"}


def test_dtypes(model):
    half = FlaxWhisperForConditionalGeneration(CONFIG, dtype=jnp.bfloat16, _do_init=False)
    half.params = model.params
    out = half(features(), decoder_input_ids=token_ids())
    assert out.logits.dtype == jnp.bfloat16 and out.encoder_last_hidden_state.dtype == jnp.bfloat16
    assert half.init_cache(1, 4)[0][0].dtype == jnp.bfloat16
    full = model(features(), decoder_input_ids=token_ids()).logits
    assert max_abs(full, out.logits.astype(jnp.float32)) < 0.1
    stored = FlaxWhisperForConditionalGeneration(CONFIG, param_dtype=jnp.bfloat16, seed=0)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(stored.params)} == {jnp.dtype(jnp.bfloat16)}


# --- real weights: tiny.en -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_en():
    path, model, reference = load_tiny_en(FlaxWhisperForConditionalGeneration.from_pretrained)
    encoder_states = model.jit_encode(model.params, jnp.asarray(reference["input_features"]))
    return path, model, reference, encoder_states


def greedy_tokens(model, encoder_states, length: int) -> list[int]:
    """Greedy decoding with the compiled step and a static cache, from tiny.en's forced prefix."""
    tokens = list(PREFIX)
    cache = model.init_cache(1, max_length=length + 1)
    step_ids = jnp.asarray([tokens])
    while len(tokens) < length:
        position = jnp.arange(len(tokens) - step_ids.shape[1], len(tokens))
        logits, cache = model.jit_decode_step(model.params, step_ids, cache, encoder_states, position)
        tokens.append(int(logits[0, -1].argmax()))
        step_ids = jnp.asarray([[tokens[-1]]])
        if tokens[-1] == EOT:
            break
    return tokens


@pytest.mark.slow
def test_tiny_en_logits_match_pytorch_and_transformers_within_float32_error(tiny_en):
    torch = pytest.importorskip("torch")
    from whisper_multi.pt import WhisperForConditionalGeneration

    path, model, reference, encoder_states = tiny_en
    ids = reference["decoder_input_ids"]
    logits = np.asarray(model(encoder_outputs=(encoder_states,), decoder_input_ids=ids).logits[0])
    pt_model = WhisperForConditionalGeneration.from_ct2(path)
    with torch.no_grad():
        pt_encoder = pt_model.get_encoder()(torch.from_numpy(reference["input_features"])).last_hidden_state
        pt_logits = pt_model(encoder_outputs=(pt_encoder,), decoder_input_ids=torch.from_numpy(ids)).logits[0]
    pt_encoder, pt_logits = pt_encoder.numpy(), pt_logits.numpy()
    assert max_abs(pt_encoder[0], encoder_states[0]) <= float32_pair_bound(pt_encoder, "encoder_last_hidden_state")
    assert max_abs(pt_logits, logits) <= float32_pair_bound(pt_logits)
    assert np.abs(logits[:, reference["vocab_ids"]] - reference["logits"]).max() <= float32_pair_bound(
        reference["logits"]
    )


@pytest.mark.slow
def test_tiny_en_greedy_tokens_in_float32_and_bfloat16(tiny_en):
    path, model, reference, encoder_states = tiny_en
    expected = reference["greedy_tokens"].tolist()
    assert greedy_tokens(model, encoder_states, len(expected)) == expected
    half = FlaxWhisperForConditionalGeneration.from_pretrained(path, dtype=jnp.bfloat16)
    half_states = half.jit_encode(half.params, jnp.asarray(reference["input_features"]))
    assert half_states.dtype == jnp.bfloat16
    assert greedy_tokens(half, half_states, len(expected)) == expected


def test_layer_norm_keeps_the_digits_of_a_large_mean():
    """A residual stream of mean 1000 and spread 0.5: the one-pass variance E[x^2] - E[x]^2 rounds at 0.06 in float32."""
    from types import SimpleNamespace

    from whisper_multi.flax.modeling_flax_whisper import _layer_norm

    x = 1000.0 + 0.5 * np.random.default_rng(0).standard_normal((2, 384))
    norm = _layer_norm(SimpleNamespace(dtype=jnp.float32, param_dtype=jnp.float32))
    params = norm.init(jax.random.PRNGKey(0), jnp.zeros((1, 384)))
    found = np.asarray(norm.apply(params, jnp.asarray(x, jnp.float32)), dtype=np.float64)
    centred = x.astype(np.float32).astype(np.float64) - x.astype(np.float32).astype(np.float64).mean(-1, keepdims=True)
    expected = centred / np.sqrt(centred.var(-1, keepdims=True) + 1e-5)
    assert np.abs(found - expected).max() <= 1e-3
