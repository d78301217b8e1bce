"""WhisperModel, WhisperForConditionalGeneration and WhisperForAudioClassification: one suite for every backend.

Each test runs once per backend of ``whisper_multi.backends.BACKENDS`` (skipped, with the reason, where that
framework is not installed). The models load random canonical weights (``conformance.configs``) from a checkpoint
directory with their own ``from_pretrained``, and are compared with the reference below: the same network written in
numpy float64 from Transformers' definition, so every backend answers to one independent computation. Float32
against float64 on these small random models stays within TOLERANCE; what only one framework has (its dtypes, its
compiled paths, its export formats) is tested in tests/test_{pt,tf,flax}_models.py.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conformance.configs import random_config, random_features, random_labels, random_tensors, random_token_ids

from conftest import installed_backend
from whisper_multi import backends
from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import CheckpointError, InputError
from whisper_multi.modeling.utils import shift_tokens_right, sinusoids
from whisper_multi.weights.safetensors_io import save_state_dict
from whisper_multi.weights.table import canonical_parameters

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # TensorFlow's closest CPU agreement; see test_tf_models.py
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH, LENGTH = 2, 6
TOLERANCE = 5e-6  # float32 against the float64 reference: two backends then agree within twice that
LABELS = 3  # classes of the audio-classification head
SEQ2SEQ_FIELDS = [
    "loss",
    "logits",
    "past_key_values",
    "decoder_hidden_states",
    "decoder_attentions",
    "cross_attentions",
    "encoder_last_hidden_state",
    "encoder_hidden_states",
    "encoder_attentions",
]


# === the reference: Whisper in numpy float64 =========================================================================
ERF = np.vectorize(math.erf)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + ERF(x / math.sqrt(2.0)))


def _linear(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    bias = w.get(f"{name}.bias")  # k_proj has none
    y = x @ w[f"{name}.weight"].T
    return y if bias is None else y + bias


def _norm(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    centred = x - x.mean(-1, keepdims=True)
    return centred / np.sqrt((centred**2).mean(-1, keepdims=True) + 1e-5) * w[f"{name}.weight"] + w[f"{name}.bias"]


def _conv(x: np.ndarray, w: dict[str, np.ndarray], name: str, stride: int) -> np.ndarray:
    """Kernel 3, padding 1, over (batch, channels, frames)."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1)))
    frames = (x.shape[-1] - 1) // stride + 1
    windows = np.stack([padded[:, :, k : k + stride * frames : stride] for k in range(3)], -1)  # (b, in, t, 3)
    return np.einsum("bitk,oik->bot", windows, w[f"{name}.weight"]) + w[f"{name}.bias"][:, None]


Arrays = dict[str, np.ndarray]


def _attention(
    x: np.ndarray,
    source: np.ndarray,
    w: Arrays,
    name: str,
    heads: int,
    allowed: np.ndarray | None = None,
    head_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The output, the weights (batch, heads, query, key) and the (key, value) pair (batch, heads, key, head_dim)."""
    batch, _, d_model = x.shape
    head_dim = d_model // heads

    def split(y: np.ndarray) -> np.ndarray:
        return y.reshape(batch, -1, heads, head_dim).transpose(0, 2, 1, 3)  # (batch, heads, time, head_dim)

    q = split(_linear(x, w, f"{name}.q_proj")) * head_dim**-0.5
    k, v = split(_linear(source, w, f"{name}.k_proj")), split(_linear(source, w, f"{name}.v_proj"))
    scores = q @ k.swapaxes(-1, -2)
    if allowed is not None:
        # The float32 minimum, as Transformers adds it: a query with no key allowed spreads evenly over all keys.
        scores = np.where(allowed, scores, np.finfo(np.float32).min)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    if head_mask is not None:
        weights = weights * head_mask[None, :, None, None]
    out = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, -1, d_model)  # (batch, time, d_model)
    return _linear(out, w, f"{name}.out_proj"), weights, (k, v)


def _feed_forward(x: np.ndarray, w: dict[str, np.ndarray], layer: str) -> np.ndarray:
    return _linear(_gelu(_linear(_norm(x, w, f"{layer}.final_layer_norm"), w, f"{layer}.fc1")), w, f"{layer}.fc2")


def reference_encoder(
    w: Arrays, config: WhisperConfig, features: np.ndarray, prefix: str = "model.", head_mask: np.ndarray | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(hidden_states, attentions) of the encoder; the last state is after the final layer norm."""
    name = f"{prefix}encoder"
    x = _gelu(_conv(_gelu(_conv(features.astype(np.float64), w, f"{name}.conv1", 1)), w, f"{name}.conv2", 2))
    x = x.transpose(0, 2, 1) + w[f"{name}.embed_positions.weight"]  # (batch, positions, d_model)
    states, attentions = [x], []
    for i in range(config.encoder_layers):
        layer, mask = f"{name}.layers.{i}", None if head_mask is None else head_mask[i]
        normed = _norm(x, w, f"{layer}.self_attn_layer_norm")
        out, weights, _ = _attention(
            normed, normed, w, f"{layer}.self_attn", config.encoder_attention_heads, None, mask
        )
        x = x + out
        x = x + _feed_forward(x, w, layer)
        states.append(x)
        attentions.append(weights)
    states[-1] = _norm(x, w, f"{name}.layer_norm")
    return states, attentions


def reference(
    w: Arrays, config: WhisperConfig, features: np.ndarray, ids: np.ndarray, masks: Arrays | None = None
) -> dict[str, Any]:
    """Every output of WhisperForConditionalGeneration, by Seq2SeqLMOutput's names (the loss left out)."""
    w = {name: array.astype(np.float64) for name, array in w.items()}
    masks = masks or {}
    encoder_states, encoder_attentions = reference_encoder(w, config, features, head_mask=masks.get("head_mask"))
    length, heads = ids.shape[1], config.decoder_attention_heads
    allowed = np.tril(np.ones((length, length), bool))[None, None]  # (1, 1, query, key)
    if masks.get("decoder_attention_mask") is not None:
        allowed = allowed & (masks["decoder_attention_mask"][:, None, None, :] > 0)
    x = w["model.decoder.embed_tokens.weight"][ids] + w["model.decoder.embed_positions.weight"][:length]
    states, self_weights, cross_weights, cache = [x], [], [], []
    for i in range(config.decoder_layers):
        layer = f"model.decoder.layers.{i}"
        self_mask, cross_mask = (None if masks.get(m) is None else masks[m][i] for m in ("decoder_head_mask", "cross_attn_head_mask"))  # fmt: skip
        normed = _norm(x, w, f"{layer}.self_attn_layer_norm")
        out, weights, self_kv = _attention(normed, normed, w, f"{layer}.self_attn", heads, allowed, self_mask)
        x = x + out
        normed = _norm(x, w, f"{layer}.encoder_attn_layer_norm")
        out, cross, cross_kv = _attention(
            normed, encoder_states[-1], w, f"{layer}.encoder_attn", heads, None, cross_mask
        )
        x = x + out
        x = x + _feed_forward(x, w, layer)
        states.append(x)
        self_weights.append(weights)
        cross_weights.append(cross)
        cache.append((*self_kv, *cross_kv))
    states[-1] = _norm(x, w, "model.decoder.layer_norm")
    return {
        "logits": states[-1] @ w["model.decoder.embed_tokens.weight"].T,
        "past_key_values": cache,
        "decoder_hidden_states": states,
        "decoder_attentions": self_weights,
        "cross_attentions": cross_weights,
        "encoder_last_hidden_state": encoder_states[-1],
        "encoder_hidden_states": encoder_states,
        "encoder_attentions": encoder_attentions,
    }


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """The mean over the labels that are not -100, in float64."""
    logits = np.asarray(logits, np.float64)
    top = logits.max(-1, keepdims=True)
    log_probs = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    kept = labels != -100
    return float(-np.take_along_axis(log_probs, np.where(kept, labels, 0)[..., None], -1)[..., 0][kept].mean())


# === one adapter per backend: tensors in, numpy out ================================================================
def to_numpy(value: Any) -> np.ndarray:
    return value.detach().numpy() if hasattr(value, "detach") else np.asarray(value)


def flat(value: Any) -> list[np.ndarray]:
    """The arrays of an output field, nested tuples flattened in order."""
    if value is None:
        return []
    if isinstance(value, (tuple, list)):
        return [array for item in value for array in flat(item)]
    return [to_numpy(value).astype(np.float64)]


def max_abs(a: Any, b: Any) -> float:
    ours, theirs = flat(a), flat(b)
    assert [x.shape for x in ours] == [y.shape for y in theirs]
    return max(float(np.abs(x - y).max()) for x, y in zip(ours, theirs))


class Adapter:
    """A backend's call conventions: numpy arrays go in as its tensors; training and gradients its own way."""

    def __init__(self, key: str):
        self.key = key
        self.spec = backends.backend(key)

    def model_class(self, head: str = "conditional_generation") -> Any:
        return backends.model_class(self.key, head)

    def tensor(self, value: Any) -> Any:
        return backends.to_tensor(value, self.spec.return_tensors) if isinstance(value, np.ndarray) else value

    def run(self, model: Any, features: np.ndarray | None = None, train: bool = False, **inputs: Any) -> Any:
        arguments = {name: self.tensor(value) for name, value in inputs.items()}
        return self._call(model, self.tensor(features), train, arguments)

    def _call(self, model: Any, features: Any, train: bool, arguments: dict[str, Any]) -> Any:
        return model(features, training=train, **arguments)

    def encode(self, model: Any, features: np.ndarray) -> Any:
        return model.get_encoder()(self.tensor(features)).last_hidden_state

    def canonical(self, model: Any) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def gradients(self, model: Any, features: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        """d loss / d parameter per canonical name, in the canonical layout (frozen parameters left out)."""
        raise NotImplementedError

    def enable_checkpointing(self, model: Any) -> None:
        model.gradient_checkpointing_enable()


class TorchAdapter(Adapter):
    def _call(self, model: Any, features: Any, train: bool, arguments: dict[str, Any]) -> Any:
        import torch

        model.train(train)
        try:
            with torch.no_grad():
                return model(features, **arguments)
        finally:
            model.eval()

    def canonical(self, model: Any) -> dict[str, np.ndarray]:
        return {name: to_numpy(tensor) for name, tensor in model.state_dict().items() if name != "proj_out.weight"}

    def gradients(self, model: Any, features: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        model.zero_grad(set_to_none=True)
        model(self.tensor(features), labels=self.tensor(labels)).loss.backward()
        return {name: to_numpy(p.grad) for name, p in model.named_parameters() if p.grad is not None}


class KerasAdapter(Adapter):
    def canonical(self, model: Any) -> dict[str, np.ndarray]:
        from whisper_multi.tf.loading import canonical_state_dict

        return dict(canonical_state_dict(model))

    def gradients(self, model: Any, features: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        import tensorflow as tf

        from whisper_multi.tf.loading import model_variables
        from whisper_multi.weights.table import from_framework_layout

        trainable = {id(variable) for variable in model.trainable_weights}
        variables = {name: v for name, v in model_variables(model).items() if id(v) in trainable}
        kinds = {name: spec.kind for name, spec in canonical_parameters(model.config, model.head).items()}
        with tf.GradientTape() as tape:
            loss = model(self.tensor(features), labels=self.tensor(labels)).loss
        found = tape.gradient(loss, list(variables.values()))
        return {
            name: from_framework_layout(tf.convert_to_tensor(gradient).numpy(), kinds[name], "tf")
            for name, gradient in zip(variables, found)
        }


class FlaxAdapter(Adapter):
    def _call(self, model: Any, features: Any, train: bool, arguments: dict[str, Any]) -> Any:
        import jax

        return model(features, train=train, dropout_rng=jax.random.PRNGKey(0) if train else None, **arguments)

    def encode(self, model: Any, features: np.ndarray) -> Any:
        return model.encode(self.tensor(features)).last_hidden_state

    def canonical(self, model: Any) -> dict[str, np.ndarray]:
        return dict(model.state_dict())

    def gradients(self, model: Any, features: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        import jax

        from whisper_multi.flax import state_dict_from_params

        def loss_of(params: Any) -> Any:
            return model(features, labels=labels, params=params).loss

        found = state_dict_from_params(model.config, jax.jit(jax.grad(loss_of))(model.params), model.head)
        # The fixed sinusoidal encoder positions are not trained (PyTorch: requires_grad=False): a zero gradient.
        assert all(np.all(found[n] == 0) for n in found if "encoder.embed_positions" in n)
        return {name: gradient for name, gradient in found.items() if "encoder.embed_positions" not in name}

    def enable_checkpointing(self, model: Any) -> None:
        model.enable_gradient_checkpointing()


ADAPTERS = {"pt": TorchAdapter, "tf": KerasAdapter, "flax": FlaxAdapter}


def adapter_for(key: str) -> Adapter:
    installed_backend(key)
    return ADAPTERS[key](key)


@pytest.fixture(scope="module", params=list(backends.BACKENDS))
def backend(request: pytest.FixtureRequest) -> Adapter:
    return adapter_for(request.param)


# === random checkpoints, written once, loaded by every backend ====================================================
Written = tuple[Path, WhisperConfig, dict[str, np.ndarray]]  # the directory, its config and canonical tensors
Loaded = tuple[Any, WhisperConfig, dict[str, np.ndarray]]  # a model read from it, with the config and tensors


class Checkpoints:
    """Directories of random canonical weights (config.json + model.safetensors), one per config and head."""

    def __init__(self, root: Path):
        self.root = root
        self.made: dict[str, Written] = {}

    def get(self, name: str = "tiny", head: str = "conditional_generation", **overrides: Any) -> Written:
        key = f"{name}-{head}-" + "-".join(f"{k}={v}" for k, v in sorted(overrides.items()))
        if key not in self.made:
            config = random_config(name, num_labels=LABELS, **overrides)
            tensors = random_tensors(config, head=head)
            directory = self.root / re.sub(r"[^\w.=-]", "_", key)
            config.save_pretrained(directory)
            save_state_dict(directory, tensors)
            self.made[key] = (directory, config, tensors)
        return self.made[key]

    def load(
        self, backend: Adapter, name: str = "tiny", head: str = "conditional_generation", **overrides: Any
    ) -> Loaded:
        """The model, its config and its canonical tensors."""
        directory, config, tensors = self.get(name, head, **overrides)
        return backend.model_class(head).from_pretrained(directory), config, tensors


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Checkpoints:
    return Checkpoints(tmp_path_factory.mktemp("random-checkpoints"))


@pytest.fixture(scope="module")
def tiny(backend: Adapter, checkpoints: Checkpoints) -> Loaded:
    """The speech-to-text model of the "tiny" config, with its config and tensors."""
    return checkpoints.load(backend)


def inputs(config: WhisperConfig, batch: int = BATCH, length: int = LENGTH) -> tuple[np.ndarray, np.ndarray]:
    return random_features(config, batch), random_token_ids(config, batch, length)


# === outputs =======================================================================================================
def test_every_documented_output_has_its_shape(backend: Adapter, tiny: Loaded) -> None:
    model, config, _ = tiny
    features, ids = inputs(config)
    out = backend.run(model, features, decoder_input_ids=ids, output_attentions=True, output_hidden_states=True)
    d_model, heads, layers, positions = config.d_model, config.decoder_attention_heads, config.decoder_layers, 16
    assert type(out).__name__ == "Seq2SeqLMOutput" and out.loss is None
    assert list(out.keys()) == [name for name in SEQ2SEQ_FIELDS if name != "loss"]
    assert out.logits.shape == (BATCH, LENGTH, config.vocab_size)
    assert len(out.past_key_values) == layers
    for self_k, self_v, cross_k, cross_v in out.past_key_values:
        assert self_k.shape == self_v.shape == (BATCH, heads, LENGTH, d_model // heads)
        assert cross_k.shape == cross_v.shape == (BATCH, heads, positions, d_model // heads)
    assert [h.shape for h in out.decoder_hidden_states] == [(BATCH, LENGTH, d_model)] * (layers + 1)
    assert [a.shape for a in out.decoder_attentions] == [(BATCH, heads, LENGTH, LENGTH)] * layers
    assert [a.shape for a in out.cross_attentions] == [(BATCH, heads, LENGTH, positions)] * layers
    assert out.encoder_last_hidden_state.shape == (BATCH, positions, d_model)
    assert [h.shape for h in out.encoder_hidden_states] == [(BATCH, positions, d_model)] * (config.encoder_layers + 1)
    assert [a.shape for a in out.encoder_attentions] == [(BATCH, heads, positions, positions)] * config.encoder_layers
    # The last hidden state of each stack is the one after its final layer norm.
    assert np.array_equal(to_numpy(out.encoder_hidden_states[-1]), to_numpy(out.encoder_last_hidden_state))
    # Causal: no weight on later positions; every row sums to one.
    upper = np.triu(np.ones((LENGTH, LENGTH), bool), k=1)
    assert float(np.abs(to_numpy(out.decoder_attentions[0])[..., upper]).max()) == 0.0
    assert float(np.abs(to_numpy(out.cross_attentions[1]).sum(-1) - 1).max()) < 1e-5


@pytest.mark.parametrize("config_name", ["tiny", "odd"])
def test_every_output_matches_the_reference(backend: Adapter, checkpoints: Checkpoints, config_name: str) -> None:
    model, config, tensors = checkpoints.load(backend, config_name)
    features, labels = random_features(config), random_labels(config)
    out = backend.run(model, features, labels=labels, output_attentions=True, output_hidden_states=True)
    shifted = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
    expected = reference(tensors, config, features, shifted)
    assert list(out.keys()) == SEQ2SEQ_FIELDS
    for name, value in expected.items():
        difference = max_abs(out[name], value)
        assert difference <= TOLERANCE, f"{config_name} {name}: max abs {difference:.3g}"
    assert abs(float(to_numpy(out.loss)) - cross_entropy(expected["logits"], labels)) <= TOLERANCE


def test_shift_tokens_right_replaces_ignored_labels() -> None:
    labels = np.array([[5, 6, -100, -100], [7, -100, 8, 9]])
    assert shift_tokens_right(labels, 0, 1).tolist() == [[1, 5, 6, 0], [1, 7, 0, 8]]


def test_labels_are_shifted_into_the_decoder_input_and_give_the_mean_cross_entropy(
    backend: Adapter, tiny: Loaded
) -> None:
    model, config, _ = tiny
    labels = random_token_ids(config, seed=4)
    labels[0, 3:] = -100
    shifted = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
    assert (shifted[:, 0] == config.decoder_start_token_id).all() and shifted[0, 4] == config.pad_token_id
    out = backend.run(model, random_features(config), labels=labels)
    by_hand = backend.run(model, random_features(config), decoder_input_ids=shifted)
    assert np.array_equal(to_numpy(out.logits), to_numpy(by_hand.logits))
    assert abs(float(to_numpy(out.loss)) - cross_entropy(to_numpy(out.logits), labels)) <= 1e-5


def test_return_dict_false_gives_the_tuple_in_transformers_order(backend: Adapter, tiny: Loaded) -> None:
    model, config, _ = tiny
    features, labels = random_features(config), random_labels(config)
    out = backend.run(model, features, labels=labels, output_hidden_states=True)
    tup = backend.run(model, features, labels=labels, output_hidden_states=True, return_dict=False)
    names = ["loss", "logits", "past_key_values", "decoder_hidden_states", "encoder_last_hidden_state", "encoder_hidden_states"]  # fmt: skip
    assert list(out.keys()) == names and isinstance(tup, tuple) and len(tup) == len(names)
    for index, name in enumerate(names):
        assert max_abs(tup[index], out[name]) == 0.0, name
    assert max_abs(out[1], out["logits"]) == 0.0 and out.to_tuple()[4] is out[4]


def test_the_base_model_and_the_encoder_alone_give_the_full_model_states(
    backend: Adapter, checkpoints: Checkpoints, tiny: Loaded
) -> None:
    full, config, tensors = tiny
    directory, _, _ = checkpoints.get()
    base = backend.model_class("base").from_pretrained(directory)  # "model." names into the base model
    features, ids = inputs(config)
    out = backend.run(base, features, decoder_input_ids=ids)
    logits = backend.run(full, features, decoder_input_ids=ids).logits
    assert type(out).__name__ == "Seq2SeqModelOutput" and out.last_hidden_state.shape == (BATCH, LENGTH, config.d_model)
    embedding = tensors["model.decoder.embed_tokens.weight"].astype(np.float64)
    assert max_abs(to_numpy(out.last_hidden_state).astype(np.float64) @ embedding.T, logits) <= 1e-5
    assert max_abs(backend.encode(full, features), out.encoder_last_hidden_state) <= 1e-6
    states = backend.run(base, features, decoder_input_ids=ids, use_cache=False, return_dict=False)
    assert len(states) == 2 and max_abs(states[0], out.last_hidden_state) == 0.0
    assert max_abs(states[1], reference(tensors, config, features, ids)["encoder_last_hidden_state"]) <= TOLERANCE


# === the cache and given encoder states ============================================================================
@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
def test_cached_steps_with_given_encoder_states_give_the_full_pass_logits(
    backend: Adapter, tiny: Loaded, static: bool
) -> None:
    model, config, _ = tiny
    features, ids = inputs(config)
    full = backend.run(model, features, decoder_input_ids=ids).logits
    encoder_outputs = (backend.encode(model, features),)
    cache = model.init_cache(BATCH, max_length=config.max_target_positions) if static else None
    if static:
        assert cache[0][0].shape == (BATCH, config.decoder_attention_heads, config.max_target_positions, config.d_model // config.decoder_attention_heads)  # fmt: skip
    # A prefix of two tokens, then one token at a time.
    out = backend.run(model, encoder_outputs=encoder_outputs, decoder_input_ids=ids[:, :2], past_key_values=cache,
                      cache_position=np.arange(2) if static else None)  # fmt: skip
    steps, cache = [out.logits], out.past_key_values
    for t in range(2, LENGTH):
        out = backend.run(model, encoder_outputs=encoder_outputs, decoder_input_ids=ids[:, t : t + 1],
                          past_key_values=cache, cache_position=np.array([t]) if static else None)  # fmt: skip
        assert out.past_key_values[0][0].shape[2] == (config.max_target_positions if static else t + 1)
        # The cross-attention pair is computed once and carried over (the same object, but from JAX's pure calls).
        carried = out.past_key_values[0][2]
        assert carried is cache[0][2] or (backend.key == "flax" and np.array_equal(carried, cache[0][2]))
        steps.append(out.logits)
        cache = out.past_key_values
    assert max_abs(np.concatenate([to_numpy(s) for s in steps], axis=1), full) <= 1e-5


# === masks =========================================================================================================
def test_head_masks_and_the_decoder_padding_mask_match_the_reference(backend: Adapter, tiny: Loaded) -> None:
    model, config, tensors = tiny
    features, ids = inputs(config)
    rng = np.random.default_rng(9)
    layers_heads = (config.decoder_layers, config.decoder_attention_heads)
    masks = {
        "head_mask": (rng.random((config.encoder_layers, config.encoder_attention_heads)) > 0.3).astype(np.float32),
        "decoder_head_mask": (rng.random(layers_heads) > 0.3).astype(np.float32),
        "cross_attn_head_mask": rng.random(layers_heads).astype(np.float32) * (rng.random(layers_heads) > 0.3),
        # The second row is left-padded: its first query sees no key, and spreads evenly as in Transformers.
        "decoder_attention_mask": np.array([[1, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]]),
    }
    assert (masks["head_mask"] == 0).any() and (masks["cross_attn_head_mask"] == 0).any()
    out = backend.run(model, features, decoder_input_ids=ids, output_attentions=True, **masks)
    expected = reference(tensors, config, features, ids, masks)
    for name in ("logits", "encoder_attentions", "decoder_attentions", "cross_attentions"):
        difference = max_abs(out[name], expected[name])
        assert difference <= TOLERANCE, f"{name}: max abs {difference:.3g}"
    for attentions, mask in ((out.encoder_attentions, masks["head_mask"]), (out.decoder_attentions, masks["decoder_head_mask"]), (out.cross_attentions, masks["cross_attn_head_mask"])):  # fmt: skip
        for layer, weights in enumerate(attentions):
            per_head = np.abs(to_numpy(weights)).max(axis=(0, 2, 3))  # (heads,)
            assert np.array_equal(per_head > 0, mask[layer] > 0)
    unmasked = to_numpy(backend.run(model, features, decoder_input_ids=ids, output_attentions=True).decoder_attentions[0])  # fmt: skip
    padded_key = to_numpy(out.decoder_attentions[0])[0, :, 2:, 1]  # row 0 hides key 1 from every later query
    assert float(np.abs(padded_key).max()) == 0.0 and float(np.abs(unmasked[0, :, 2:, 1]).min()) > 0.0


# === audio classification ==========================================================================================
@pytest.mark.parametrize("weighted", [False, True], ids=["last-layer", "weighted-layer-sum"])
def test_audio_classification_matches_the_reference(backend: Adapter, checkpoints: Checkpoints, weighted: bool) -> None:
    model, config, tensors = checkpoints.load(backend, "odd", "audio_classification", use_weighted_layer_sum=weighted)
    features, labels = random_features(config), np.array([2, 0])
    out = backend.run(model, features, labels=labels, output_attentions=True)
    w = {name: array.astype(np.float64) for name, array in tensors.items()}
    states, attentions = reference_encoder(w, config, features, prefix="")
    if weighted:
        layer_weights = np.exp(w["layer_weights"]) / np.exp(w["layer_weights"]).sum()
        hidden = sum(weight * state for weight, state in zip(layer_weights, states))
    else:
        hidden = states[-1]
    logits = _linear(_linear(hidden, w, "projector").mean(axis=1), w, "classifier")
    assert out.logits.shape == (BATCH, LABELS) and max_abs(out.logits, logits) <= TOLERANCE
    assert abs(float(to_numpy(out.loss)) - cross_entropy(logits, labels)) <= TOLERANCE
    assert max_abs(out.attentions, attentions) <= TOLERANCE
    assert (out.hidden_states is not None) == weighted  # the weighted sum needs every layer's states


# === training ======================================================================================================
def test_gradients_match_another_backend(backend: Adapter, checkpoints: Checkpoints, tiny: Loaded) -> None:
    """Against PyTorch (PyTorch against TensorFlow): the same weights give the same gradient of every parameter."""
    model, config, _ = tiny
    other_key = next((key for key in backends.BACKENDS if key != backend.key and backends.backend(key).available()), None)  # fmt: skip
    if other_key is None:
        pytest.skip("no second framework installed to compare the gradients with")
    other = adapter_for(other_key)
    features, labels = random_features(config), random_labels(config)
    ours = backend.gradients(model, features, labels)
    theirs = other.gradients(other.model_class().from_pretrained(checkpoints.get()[0]), features, labels)
    assert ours.keys() == theirs.keys() and len(ours) > 40
    for name, expected in theirs.items():
        relative = float(np.abs(ours[name] - expected).max()) / max(float(np.abs(expected).max()), 1e-6)
        assert relative <= 1e-4, f"{name}: relative difference {relative:.3g}"


def test_gradient_checkpointing_gives_the_same_gradients(backend: Adapter, checkpoints: Checkpoints) -> None:
    plain, config, _ = checkpoints.load(backend)
    checkpointed, _, _ = checkpoints.load(backend)
    backend.enable_checkpointing(checkpointed)
    features, labels = random_features(config), random_labels(config)
    expected, found = backend.gradients(plain, features, labels), backend.gradients(checkpointed, features, labels)
    assert expected.keys() == found.keys() and len(expected) > 40
    assert max(float(np.abs(expected[n] - found[n]).max()) for n in expected) <= 1e-6


def test_freeze_encoder_stops_its_gradients(backend: Adapter, checkpoints: Checkpoints) -> None:
    model, config, _ = checkpoints.load(backend)
    if not hasattr(model, "freeze_encoder"):
        pytest.skip(f"{backend.spec.framework} parameters are a tree passed to the optimizer: freeze with its mask")
    model.freeze_encoder()
    gradients = backend.gradients(model, random_features(config), random_labels(config))
    assert not any(".encoder." in f".{name}" for name in gradients)
    assert "model.decoder.layers.0.fc1.weight" in gradients and np.abs(gradients["model.decoder.layers.0.fc1.weight"]).max() > 0  # fmt: skip


def test_layerdrop_skips_every_layer_only_in_training(backend: Adapter, checkpoints: Checkpoints, tiny: Loaded) -> None:
    plain, config, _ = tiny
    dropping, _, _ = checkpoints.load(backend, encoder_layerdrop=1.0, decoder_layerdrop=1.0)
    features, ids = inputs(config)
    evaluated = backend.run(dropping, features, decoder_input_ids=ids)
    assert max_abs(evaluated.logits, backend.run(plain, features, decoder_input_ids=ids).logits) == 0.0
    trained = backend.run(dropping, features, train=True, decoder_input_ids=ids, output_hidden_states=True)
    for states in (trained.encoder_hidden_states, trained.decoder_hidden_states):
        assert all(np.array_equal(to_numpy(states[0]), to_numpy(state)) for state in states[1:-1])


# === loading and saving ============================================================================================
def test_save_then_load_round_trip(backend: Adapter, tiny: Loaded, tmp_path: Path) -> None:
    model, config, tensors = tiny
    files = model.save_pretrained(tmp_path / "one")
    assert [f.name for f in files] == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "one" / "config.json").read_text())["architectures"] == ["WhisperForConditionalGeneration"]  # fmt: skip
    loaded = backend.model_class().from_pretrained(tmp_path / "one")
    assert loaded.config == model.config and loaded.config.d_model == config.d_model
    saved = backend.canonical(model)
    assert saved.keys() == tensors.keys() and all(np.array_equal(saved[n], tensors[n]) for n in tensors)
    assert all(np.array_equal(array, saved[name]) for name, array in backend.canonical(loaded).items())
    model.save_pretrained(tmp_path / "sharded", max_shard_size="2MB")
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2 and "proj_out.weight" not in index["weight_map"]
    again = backend.model_class().from_pretrained(tmp_path / "sharded")
    assert all(np.array_equal(array, saved[name]) for name, array in backend.canonical(again).items())
    features, ids = inputs(config)
    assert max_abs(backend.run(again, features, decoder_input_ids=ids).logits, backend.run(model, features, decoder_input_ids=ids).logits) == 0.0  # fmt: skip


def test_a_checkpoint_saved_by_one_backend_loads_bit_exact_in_every_other(
    backend: Adapter, tiny: Loaded, tmp_path: Path
) -> None:
    model, _, _ = tiny
    model.save_pretrained(tmp_path)
    saved = backend.canonical(model)
    others = [ADAPTERS[key](key) for key, spec in backends.BACKENDS.items() if key != backend.key and spec.available()]
    if not others:
        pytest.skip("no second framework installed to load the checkpoint")
    for other in others:
        loaded = other.canonical(other.model_class().from_pretrained(tmp_path))
        assert loaded.keys() == saved.keys(), other.key
        assert all(np.array_equal(loaded[name], saved[name]) for name in saved), other.key


def test_checkpoints_load_across_model_classes(backend: Adapter, tiny: Loaded, tmp_path: Path) -> None:
    model, _, tensors = tiny
    model.save_pretrained(tmp_path / "full")
    base = backend.model_class("base").from_pretrained(tmp_path / "full")
    base_weights = backend.canonical(base)
    assert all(np.array_equal(base_weights[name], tensors[f"model.{name}"]) for name in base_weights)
    base.save_pretrained(tmp_path / "base")  # names without the "model." prefix
    full = backend.canonical(backend.model_class().from_pretrained(tmp_path / "base"))
    assert all(np.array_equal(full[name], tensors[name]) for name in tensors)
    with pytest.warns(UserWarning, match="classifier.weight"):
        classifier = backend.model_class("audio_classification").from_pretrained(tmp_path / "full")
    weights = backend.canonical(classifier)
    assert np.array_equal(weights["encoder.layers.0.fc1.weight"], tensors["model.encoder.layers.0.fc1.weight"])


@pytest.mark.parametrize("change", ["extra", "missing", "shape", "rename"])
def test_a_wrong_checkpoint_is_refused_naming_the_parameter(
    backend: Adapter, checkpoints: Checkpoints, tmp_path: Path, change: str
) -> None:
    _, config, tensors = checkpoints.get()
    tensors = dict(tensors)
    name = "model.decoder.layers.1.encoder_attn.v_proj.bias"
    if change == "extra":
        name = "model.decoder.layers.1.encoder_attn.k_proj.bias"  # k_proj has no bias
        tensors[name] = np.zeros(config.d_model, np.float32)
    elif change == "missing":
        del tensors[name]
    elif change == "shape":
        tensors[name] = np.zeros(config.d_model + 1, np.float32)
    else:
        name = "model.decoder.layers.1.fc_1.weight"
        tensors[name] = tensors.pop("model.decoder.layers.1.fc1.weight")
    config.save_pretrained(tmp_path)
    save_state_dict(tmp_path, tensors)
    title = {"extra": "unexpected", "missing": "missing", "shape": "wrong shape", "rename": "unexpected"}[change]
    with pytest.raises(CheckpointError, match=r"(?s)" + title + ".*" + re.escape(name)):
        backend.model_class().from_pretrained(tmp_path)


def test_initialisation_follows_the_table(backend: Adapter, checkpoints: Checkpoints) -> None:
    _, config, _ = checkpoints.get()
    model = backend.model_class()(config)
    tensors = backend.canonical(model)
    expected = canonical_parameters(config, "conditional_generation")
    assert sorted(tensors) == sorted(expected)
    assert all(tensors[name].shape == spec.shape for name, spec in expected.items())
    assert np.array_equal(tensors["model.encoder.embed_positions.weight"], sinusoids(16, config.d_model))
    assert np.all(tensors["model.decoder.embed_tokens.weight"][config.pad_token_id] == 0)
    assert np.all(tensors["model.encoder.layer_norm.weight"] == 1)
    assert abs(float(tensors["model.decoder.layers.0.fc1.weight"].std()) - config.init_std) < 0.002


# === input checks ==================================================================================================
def test_input_checks_name_the_expected_shape(backend: Adapter, tiny: Loaded) -> None:
    model, config, _ = tiny
    features, ids = inputs(config, batch=1)
    with pytest.raises(InputError, match=r"\(batch, 80, 32\)"):
        backend.run(model, np.zeros((1, 128, 32), np.float32), decoder_input_ids=ids)
    with pytest.raises(InputError, match=r"30 frames.*\(batch, 80, 32\)"):
        backend.run(model, features[:, :, :30], decoder_input_ids=ids)
    with pytest.raises(InputError, match="rank 3"):
        backend.run(model, features[0], decoder_input_ids=ids)
    with pytest.raises(InputError, match="max_target_positions=32"):
        backend.run(model, features, decoder_input_ids=np.zeros((1, 33), np.int64))
    with pytest.raises(InputError, match="labels"):
        backend.run(model, features, labels=np.zeros((1, 33), np.int64))
    with pytest.raises(InputError, match=r"\(2, 4\) = \(layers, heads\)"):
        backend.run(model, features, decoder_input_ids=ids, head_mask=np.ones((3, 4), np.float32))
    cache = backend.run(model, features, decoder_input_ids=np.zeros((1, 30), np.int64)).past_key_values
    with pytest.raises(InputError, match="after 30 cached positions"):
        backend.run(model, features, decoder_input_ids=np.zeros((1, 3), np.int64), past_key_values=cache)
    with pytest.raises(InputError, match=r"expected \(1, 31\)"):  # the mask covers the new position, not the cached
        backend.run(model, features, decoder_input_ids=ids[:, :1], past_key_values=cache, decoder_attention_mask=np.ones((1, 1), np.int64))  # fmt: skip
    with pytest.raises(InputError, match="cache_position needs a preallocated cache"):
        backend.run(model, features, decoder_input_ids=ids, cache_position=np.arange(LENGTH))
