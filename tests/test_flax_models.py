"""Flax Whisper models against the PyTorch ones, on the same canonical weights.

Every random-weight comparison builds the PyTorch model, hands its ``state_dict`` to the Flax model through the
canonical table, and compares every output by max absolute difference (float32 on CPU, default matmul precision:
XLA's CPU float32 matmul is exact float32, no reduced-precision passes). Real tiny.en weights come from the embedded
CTranslate2 package; their references are tests/fixtures/pt/ (Transformers 4.57, see scripts/make_pt_fixtures.py).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
import jax.numpy as jnp  # noqa: E402

from conftest import float32_pair_bound  # noqa: E402
from whisper_multi.configuration import WhisperConfig  # noqa: E402
from whisper_multi.errors import CheckpointError, InputError  # noqa: E402
from whisper_multi.flax import (  # noqa: E402
    FlaxWhisperForAudioClassification,
    FlaxWhisperForConditionalGeneration,
    FlaxWhisperModel,
    Seq2SeqLMOutput,
)
from whisper_multi.modeling.utils import sinusoids  # noqa: E402
from whisper_multi.weights.table import canonical_parameters  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "pt"
BATCH, LENGTH = 2, 5
SOURCE_POSITIONS, TARGET_POSITIONS = 16, 32  # 32 mel frames keep the random models fast
TOLERANCE = 1e-5
CONFIGS = {
    "d64-2+2-h4": {"d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "heads": 4},
    "d48-3+1-h6": {"d_model": 48, "encoder_layers": 3, "decoder_layers": 1, "heads": 6},
}
PREFIX = [50257, 50362]  # <|startoftranscript|><|notimestamps|> of tiny.en
EOT = 50256


def tiny_config(name: str = "d64-2+2-h4", **overrides) -> WhisperConfig:
    shape = CONFIGS[name]
    fields = {
        "d_model": shape["d_model"],
        "encoder_layers": shape["encoder_layers"],
        "decoder_layers": shape["decoder_layers"],
        "encoder_attention_heads": shape["heads"],
        "decoder_attention_heads": shape["heads"],
        "encoder_ffn_dim": 2 * shape["d_model"],
        "decoder_ffn_dim": 2 * shape["d_model"],
        "max_source_positions": SOURCE_POSITIONS,
        "max_target_positions": TARGET_POSITIONS,
        "num_labels": 3,
    }
    return WhisperConfig(**{**fields, **overrides})


def features(batch: int = BATCH, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 80, 2 * SOURCE_POSITIONS)).astype(np.float32)


def token_ids(batch: int = BATCH, length: int = LENGTH, seed: int = 2) -> np.ndarray:
    ids = np.random.default_rng(seed).integers(0, 50000, (batch, length))
    ids[:, 0] = 50257
    return ids


def labels_with_ignored(seed: int = 3) -> np.ndarray:
    labels = token_ids(seed=seed)
    labels[0, -2:] = -100
    return labels


def max_abs(a, b) -> float:
    a = a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)
    return float(np.abs(a.astype(np.float64) - np.asarray(b).astype(np.float64)).max())


def pt_state_dict(model) -> dict[str, np.ndarray]:
    return {name: tensor.detach().numpy() for name, tensor in model.state_dict().items()}


# --- pairs of models on the same weights ---------------------------------------------------------------------------
def pt_pair(name: str, flax_class=FlaxWhisperForConditionalGeneration, pt_name: str = "WhisperForConditionalGeneration", seed: int = 0, **overrides):  # fmt: skip
    torch = pytest.importorskip("torch")
    import whisper_multi.pt as pt

    torch.manual_seed(seed)
    config = tiny_config(name, **overrides)
    pt_model = getattr(pt, pt_name)(config).eval()
    return pt_model, flax_class.from_state_dict(config, pt_state_dict(pt_model))


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request):
    return pt_pair(request.param)


@pytest.fixture(scope="module")
def model():
    return FlaxWhisperForConditionalGeneration(tiny_config(), seed=0)


def _compare(pt_output, flax_output, skip=("past_key_values",)) -> dict[str, float]:
    """Max abs difference per output field (tuples: the max over their members)."""
    differences = {}
    assert list(pt_output.keys()) == list(flax_output.keys())
    for key in pt_output.keys():
        if key in skip:
            continue
        expected, found = pt_output[key], flax_output[key]
        if isinstance(expected, tuple):
            expected, found = jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(found)
            assert len(expected) == len(found), key
            differences[key] = max(max_abs(e, f) for e, f in zip(expected, found))
        else:
            differences[key] = max_abs(expected, found)
    return differences


# --- parity with PyTorch ------------------------------------------------------------------------------------------
def test_every_output_matches_pytorch(pair):
    torch = pytest.importorskip("torch")
    pt_model, flax_model = pair
    labels = labels_with_ignored()
    with torch.no_grad():
        expected = pt_model(
            torch.from_numpy(features()), labels=torch.from_numpy(labels), output_attentions=True,
            output_hidden_states=True, use_cache=True,
        )  # fmt: skip
    found = flax_model(features(), labels=labels, output_attentions=True, output_hidden_states=True, use_cache=True)
    assert isinstance(found, Seq2SeqLMOutput)
    differences = _compare(expected, found)
    assert set(differences) >= {"loss", "logits", "decoder_hidden_states", "decoder_attentions", "cross_attentions",
                                "encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions"}  # fmt: skip
    assert max(differences.values()) <= TOLERANCE, differences
    for (pk, pv, pck, pcv), (fk, fv, fck, fcv) in zip(expected.past_key_values, found.past_key_values):
        assert max(max_abs(a, b) for a, b in ((pk, fk), (pv, fv), (pck, fck), (pcv, fcv))) <= TOLERANCE


def test_base_model_and_return_dict_false_match_pytorch():
    torch = pytest.importorskip("torch")
    pt_model, flax_model = pt_pair("d64-2+2-h4", FlaxWhisperModel, "WhisperModel")
    with torch.no_grad():
        expected = pt_model(torch.from_numpy(features()), decoder_input_ids=torch.from_numpy(token_ids()))
    found = flax_model(features(), decoder_input_ids=token_ids(), return_dict=False)
    assert isinstance(found, tuple) and len(found) == len(expected.to_tuple())
    assert max_abs(expected.last_hidden_state, found[0]) <= TOLERANCE
    assert max_abs(expected.encoder_last_hidden_state, found[-1]) <= TOLERANCE


def test_head_masks_and_decoder_padding_match_pytorch(pair):
    torch = pytest.importorskip("torch")
    pt_model, flax_model = pair
    config = pt_model.config
    rng = np.random.default_rng(4)
    masks = {
        "head_mask": (rng.random((config.encoder_layers, config.encoder_attention_heads)) > 0.5).astype(np.float32),
        "decoder_head_mask": (rng.random((config.decoder_layers, config.decoder_attention_heads)) > 0.5).astype(np.float32),
        "cross_attn_head_mask": rng.random((config.decoder_layers, config.decoder_attention_heads)).astype(np.float32),
        "decoder_attention_mask": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
    }  # fmt: skip
    with torch.no_grad():
        expected = pt_model(
            torch.from_numpy(features()), decoder_input_ids=torch.from_numpy(token_ids()), output_attentions=True,
            **{name: torch.from_numpy(mask) for name, mask in masks.items()},
        )  # fmt: skip
    found = flax_model(features(), decoder_input_ids=token_ids(), output_attentions=True, **masks)
    differences = _compare(expected, found)
    assert max(differences.values()) <= TOLERANCE, differences
    silenced = np.asarray(found.encoder_attentions[0])[:, masks["head_mask"][0] == 0]
    assert np.all(silenced == 0)


def test_cached_decoding_matches_the_full_pytorch_logits(pair):
    torch = pytest.importorskip("torch")
    pt_model, flax_model = pair
    ids = token_ids()
    with torch.no_grad():
        expected = pt_model(torch.from_numpy(features()), decoder_input_ids=torch.from_numpy(ids)).logits.numpy()
    encoder_states = flax_model.jit_encode(flax_model.params, jnp.asarray(features()))
    # Dynamic cache (grows by concatenation), through the wrapper: two tokens, then one at a time.
    out = flax_model.decode(ids[:, :2], (encoder_states,))
    dynamic = [np.asarray(out.logits)]
    for step in range(2, LENGTH):
        out = flax_model.decode(ids[:, step : step + 1], (encoder_states,), past_key_values=out.past_key_values)
        dynamic.append(np.asarray(out.logits))
    assert max_abs(expected, np.concatenate(dynamic, axis=1)) <= TOLERANCE
    # Static cache, through the compiled step.
    cache = flax_model.init_cache(BATCH, max_length=8)
    logits, cache = flax_model.jit_decode_step(
        flax_model.params, jnp.asarray(ids[:, :2]), cache, encoder_states, jnp.arange(2)
    )
    static = [np.asarray(logits)]
    for step in range(2, LENGTH):
        logits, cache = flax_model.jit_decode_step(
            flax_model.params, jnp.asarray(ids[:, step : step + 1]), cache, encoder_states, jnp.arange(step, step + 1)
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


@pytest.mark.parametrize("weighted", [False, True])
def test_audio_classification_matches_pytorch(weighted):
    torch = pytest.importorskip("torch")
    pt_model, flax_model = pt_pair(
        "d48-3+1-h6",
        FlaxWhisperForAudioClassification,
        "WhisperForAudioClassification",
        use_weighted_layer_sum=weighted,
    )
    if weighted:
        with torch.no_grad():
            pt_model.layer_weights.copy_(torch.tensor([0.1, 0.4, -0.3, 0.2]))
        flax_model.load_state_dict(pt_state_dict(pt_model))
    labels = np.array([0, 2])
    with torch.no_grad():
        expected = pt_model(torch.from_numpy(features()), labels=torch.from_numpy(labels), output_attentions=True)
    found = flax_model(features(), labels=labels, output_attentions=True)
    differences = _compare(expected, found)
    assert set(differences) >= {"loss", "logits", "attentions"}
    assert max(differences.values()) <= TOLERANCE, differences


# --- training ------------------------------------------------------------------------------------------------------
def _value_and_grad(flax_model, labels):
    """A compiled ``params -> (loss, gradients)`` on the fixed features and labels."""

    def loss_fn(params):
        return flax_model(features(), labels=labels, params=params).loss

    return jax.jit(jax.value_and_grad(loss_fn))


def test_gradients_match_pytorch():
    torch = pytest.importorskip("torch")
    from whisper_multi.flax import state_dict_from_params

    pt_model, flax_model = pt_pair("d64-2+2-h4")
    labels = labels_with_ignored()
    pt_model.train()
    loss = pt_model(torch.from_numpy(features()), labels=torch.from_numpy(labels)).loss
    loss.backward()
    flax_loss, grads = _value_and_grad(flax_model, jnp.asarray(labels))(flax_model.params)
    assert abs(float(loss.detach()) - float(flax_loss)) <= TOLERANCE
    flax_grads = state_dict_from_params(flax_model.config, grads, "conditional_generation")
    worst = 0.0
    for name, parameter in pt_model.named_parameters():
        if parameter.grad is None:  # the fixed encoder positions
            assert np.all(flax_grads[name] == 0), name
            continue
        expected = parameter.grad.numpy()
        worst = max(worst, float(np.abs(flax_grads[name] - expected).max() / (np.abs(expected).max() + 1e-12)))
    assert worst <= 1e-4, f"worst relative gradient difference {worst:.3g}"


def test_an_optax_step_lowers_the_loss_and_remat_keeps_the_gradients():
    optax = pytest.importorskip("optax")
    model = FlaxWhisperForConditionalGeneration(tiny_config(), seed=1)
    labels = jnp.asarray(labels_with_ignored())
    value_and_grad = _value_and_grad(model, labels)
    loss, grads = value_and_grad(model.params)
    checkpointed = FlaxWhisperForConditionalGeneration(tiny_config(), seed=1, gradient_checkpointing=True)
    checkpointed.params = model.params

    def train_loss(params):
        return checkpointed(
            features(), labels=labels, params=params, train=True, dropout_rng=jax.random.PRNGKey(0)
        ).loss

    remat_loss, remat_grads = jax.jit(jax.value_and_grad(train_loss))(model.params)
    assert abs(float(loss) - float(remat_loss)) <= TOLERANCE  # no dropout in the config: training = eval
    assert max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(remat_grads))) <= 1e-6  # fmt: skip

    optimizer = optax.adam(1e-3)
    state = optimizer.init(model.params)
    params = model.params
    for _ in range(3):
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        loss_after, grads = value_and_grad(params)
    assert float(loss_after) < float(loss) - 0.1


def test_dropout_needs_a_key_and_changes_outputs_only_in_training():
    model = FlaxWhisperForConditionalGeneration(tiny_config(dropout=0.5), seed=0)
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
    config = tiny_config(apply_spec_augment=True, mask_time_prob=0.3, mask_time_length=4, mask_time_min_masks=1,
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


def test_layerdrop_skips_layers_only_in_training():
    config = tiny_config(encoder_layerdrop=1.0, decoder_layerdrop=1.0)
    model = FlaxWhisperForConditionalGeneration(config, seed=0)
    kwargs = {"decoder_input_ids": token_ids(), "output_hidden_states": True}
    trained = model(features(), train=True, dropout_rng=jax.random.PRNGKey(0), **kwargs)
    evaluated = model(features(), **kwargs)
    for states in (trained.encoder_hidden_states, trained.decoder_hidden_states):
        assert all(np.array_equal(states[0], state) for state in states[1:-1])  # every layer skipped
    assert not np.array_equal(evaluated.encoder_hidden_states[0], evaluated.encoder_hidden_states[1])


# --- scanned layers ------------------------------------------------------------------------------------------------
def test_scanned_layers_give_the_unscanned_outputs_and_weights(pair):
    _, flax_model = pair
    config = flax_model.config
    scanned = FlaxWhisperForConditionalGeneration.from_state_dict(config, flax_model.state_dict(), scan_layers=True)
    assert scanned.params["model"]["encoder"]["layers"]["fc1"]["kernel"].shape[0] == config.encoder_layers
    kwargs = {"decoder_input_ids": token_ids(), "labels": labels_with_ignored(), "output_attentions": True,
              "output_hidden_states": True}  # fmt: skip
    differences = _compare(flax_model(features(), **kwargs), scanned(features(), **kwargs), skip=())
    assert max(differences.values()) <= 1e-6, differences
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
def test_flax_save_loads_bit_exact_in_pytorch_and_back(tmp_path):
    torch = pytest.importorskip("torch")
    from whisper_multi.pt import WhisperForConditionalGeneration

    model = FlaxWhisperForConditionalGeneration(tiny_config("d48-3+1-h6"), seed=3)
    files = model.save_pretrained(tmp_path / "flax")
    assert [f.name for f in files] == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "flax" / "config.json").read_text())["architectures"] == ["WhisperForConditionalGeneration"]  # fmt: skip
    pt_model = WhisperForConditionalGeneration.from_pretrained(tmp_path / "flax")
    saved = model.state_dict()
    loaded = pt_state_dict(pt_model)
    assert all(np.array_equal(saved[name], loaded[name]) for name in saved)
    pt_model.save_pretrained(tmp_path / "pt")
    again = FlaxWhisperForConditionalGeneration.from_pretrained(tmp_path / "pt")
    assert all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree_util.tree_leaves(model.params), jax.tree_util.tree_leaves(again.params))
    )
    with torch.no_grad():
        expected = pt_model(torch.from_numpy(features()), decoder_input_ids=torch.from_numpy(token_ids())).logits
    assert max_abs(expected, again(features(), decoder_input_ids=token_ids()).logits) <= TOLERANCE


def test_checkpoints_load_across_classes_formats_and_shards(model, tmp_path):
    from whisper_multi.weights.hf_formats import write_flax

    model.save_pretrained(tmp_path / "sharded", max_shard_size=200_000)
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    base = FlaxWhisperModel.from_pretrained(tmp_path / "sharded")
    assert np.array_equal(
        base.params["encoder"]["conv1"]["kernel"], model.params["model"]["encoder"]["conv1"]["kernel"]
    )
    with pytest.warns(UserWarning, match="newly initialised: projector.weight"):
        classifier = FlaxWhisperForAudioClassification.from_pretrained(tmp_path / "sharded")
    assert set(classifier.params) == {"encoder", "projector", "classifier"}
    # Transformers' flax_model.msgpack, read by weights.hf_formats.
    (tmp_path / "hf").mkdir()
    model.config.save_pretrained(tmp_path / "hf")
    write_flax(tmp_path / "hf", model.config, model.state_dict())
    from_msgpack = FlaxWhisperForConditionalGeneration.from_pretrained(tmp_path / "hf")
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(model.params), jax.tree_util.tree_leaves(from_msgpack.params)))  # fmt: skip


@pytest.mark.parametrize("change", ["rename", "reshape", "drop"])
def test_a_wrong_checkpoint_is_refused_naming_the_parameter(model, change):
    tensors = dict(model.state_dict())
    name = "model.decoder.layers.1.fc1.weight"
    if change == "rename":
        tensors["model.decoder.layers.1.fc_1.weight"] = tensors.pop(name)
    elif change == "reshape":
        tensors[name] = tensors[name][:, :-1]
    else:
        del tensors[name]
    with pytest.raises(CheckpointError, match=r"model\.decoder\.layers\.1\.fc"):
        FlaxWhisperForConditionalGeneration.from_state_dict(model.config, tensors)


def test_initialisation_follows_the_table_and_pytorch(model):
    config = model.config
    tensors = model.state_dict()
    expected = canonical_parameters(config, "conditional_generation")
    assert list(tensors) == list(expected)
    assert all(tensors[name].shape == spec.shape for name, spec in expected.items())
    assert np.array_equal(tensors["model.encoder.embed_positions.weight"], sinusoids(SOURCE_POSITIONS, config.d_model))
    assert np.all(tensors["model.decoder.embed_tokens.weight"][config.pad_token_id] == 0)
    assert np.all(tensors["model.encoder.layer_norm.weight"] == 1)
    assert abs(float(tensors["model.decoder.layers.0.fc1.weight"].std()) - config.init_std) < 0.002


def test_dtypes(model):
    half = FlaxWhisperForConditionalGeneration(tiny_config(), dtype=jnp.bfloat16, _do_init=False)
    half.params = model.params
    out = half(features(), decoder_input_ids=token_ids())
    assert out.logits.dtype == jnp.bfloat16 and out.encoder_last_hidden_state.dtype == jnp.bfloat16
    assert half.init_cache(1, 4)[0][0].dtype == jnp.bfloat16
    full = model(features(), decoder_input_ids=token_ids()).logits
    assert max_abs(full, out.logits.astype(jnp.float32)) < 0.1
    stored = FlaxWhisperForConditionalGeneration(tiny_config(), param_dtype=jnp.bfloat16, seed=0)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(stored.params)} == {jnp.dtype(jnp.bfloat16)}


def test_input_checks_name_the_expected_shape(model):
    with pytest.raises(InputError, match=r"\(batch, 80, 32\)"):
        model(features()[:, :, :30], decoder_input_ids=token_ids())
    with pytest.raises(InputError, match="max_target_positions=32"):
        model(features(), decoder_input_ids=token_ids(length=33))
    with pytest.raises(InputError, match=r"\(2, 4\) = \(layers, heads\)"):
        model(features(), decoder_input_ids=token_ids(), head_mask=np.ones((2, 3)))
    with pytest.raises(InputError, match="cache_position needs a preallocated cache"):
        model(features(), decoder_input_ids=token_ids(), cache_position=jnp.arange(LENGTH))


# --- real weights: tiny.en -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_en():
    from whisper_multi.weights.packages import embedded_model_path

    try:
        path = embedded_model_path()
    except Exception as error:  # the package of real weights is an optional install
        pytest.skip(f"tiny.en weights not installed: {error}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float32 weights: no dequantization warning expected
        model = FlaxWhisperForConditionalGeneration.from_pretrained(path)
    reference = dict(np.load(FIXTURES / "tiny_en_reference.npz"))
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
