"""Whisper in Flax Linen: encoder, decoder, the speech-to-text model and the audio classifier.

This file mirrors the PyTorch one (``pt/modeling_whisper.py``) line for line: same classes in the same order, same
attribute and local names, same comments. Linen spells a few things its own way: ``setup`` for ``__init__``,
``__call__`` for ``forward``, a ``deterministic`` argument for PyTorch's ``self.training`` (dropout, LayerDrop and
SpecAugment draw from the "dropout" PRNG stream), and each public model is a wrapper (``FlaxWhisperModel``, ...)
holding ``config``, ``params`` and its Linen module (``FlaxWhisperModule``, ...), as in Transformers.

Parameter tree: Transformers' Flax names (``weights.table.framework_names(config, "flax")``) with ``layers/N``
written ``layers_N``, Linen's name for the N-th module of a list. With ``scan_layers=True`` the layers of a stack
are one module ``layers`` whose parameters carry a leading layer axis; ``flax.loading`` converts between the two.

Key/value cache (functional, no mutable collection): ``past_key_values`` is a tuple with one entry per decoder
layer, ``(self_k, self_v, cross_k, cross_v)``, each (batch, heads, time, head_dim). Attention takes its pair and
returns the new pair. Without ``cache_position`` the self-attention pair grows by concatenation (a dynamic cache);
with ``cache_position`` the pair is preallocated (``FlaxWhisperDecoder.init_cache``) and the new keys are written at
those positions (a static cache: fixed shapes, so ``jax.jit`` compiles one decoding step). The cross-attention pair
is computed from the audio when it is None and reused unchanged afterwards.

Unlike Transformers' Flax models, ``labels`` are accepted and the loss (mean cross-entropy, -100 ignored) is
computed in the model, as in PyTorch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import InputError
from whisper_multi.flax.generation import FlaxWhisperGenerationMixin
from whisper_multi.flax.loading import FlaxPreTrainedModelMixin
from whisper_multi.modeling import arguments
from whisper_multi.modeling.outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Cache,
    ModelOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    SequenceClassifierOutput,
)
from whisper_multi.modeling.utils import (
    IGNORE_INDEX,
    compute_mask_indices,
    expected_num_frames,
    sinusoids,
)

LayerCache = tuple[Any, Any, Any, Any]  # (self_k, self_v, cross_k, cross_v); the cross pair may be None


def _quick_gelu(x: jax.Array) -> jax.Array:
    return x * jax.nn.sigmoid(1.702 * x)


def _erf_gelu(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=False)


def _tanh_gelu(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=True)


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": _erf_gelu,
    "gelu_new": _tanh_gelu,
    "gelu_fast": _tanh_gelu,
    "gelu_pytorch_tanh": _tanh_gelu,
    "quick_gelu": _quick_gelu,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}


def _token_id_range(ids: jax.Array) -> tuple[int, int] | None:
    """The smallest and largest token id; None inside a compiled graph, where reading values would break it."""
    if isinstance(ids, jax.core.Tracer) or ids.size == 0:
        return None
    values = np.asarray(ids)  # numpy: a jnp reduction would itself be traced when a jit is being built
    return int(values.min()), int(values.max())


def _at_least_float32(x: jax.Array) -> jax.Array:
    """Half precision in float32 for the softmax and the loss; float32 and float64 as they are."""
    return x if x.dtype in (jnp.float32, jnp.float64) else x.astype(jnp.float32)


# --- Flax only: pytrees, initialisers, dropout ----------------------------------------------------------------------
def _register_output_pytrees() -> None:
    """Make the shared output dataclasses pytrees, so ``jax.jit`` can return them (None fields are empty leaves)."""
    for cls in (
        BaseModelOutput,
        BaseModelOutputWithPastAndCrossAttentions,
        Seq2SeqModelOutput,
        Seq2SeqLMOutput,
        SequenceClassifierOutput,
    ):
        names = tuple(cls.__dataclass_fields__)
        try:
            jax.tree_util.register_dataclass(cls, data_fields=list(names), meta_fields=[])
        except ValueError:  # already registered (module reloaded)
            pass


_register_output_pytrees()


def _normal(std: float) -> Callable[..., jax.Array]:
    return jax.nn.initializers.normal(stddev=std)


def _token_embedding_init(std: float, padding_idx: int | None) -> Callable[..., jax.Array]:
    """Normal(0, std) with the padding row zeroed, as PyTorch's ``nn.Embedding(padding_idx=...)`` is initialised."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        table = jax.random.normal(key, shape, dtype) * std
        return table if padding_idx is None else table.at[padding_idx].set(0)

    return init


def _sinusoid_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    del key  # fixed, not random
    return jnp.asarray(sinusoids(*shape), dtype)


def _dropout(module: nn.Module, x: jax.Array, rate: float, deterministic: bool) -> jax.Array:
    """PyTorch's ``F.dropout``: while training, zero each value with probability ``rate`` and rescale the rest."""
    if deterministic or rate == 0.0:
        return x
    if rate >= 1.0:
        return jnp.zeros_like(x)
    keep = jax.random.bernoulli(module.make_rng("dropout"), 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def _layer_dropped(module: nn.Module, layerdrop: float, deterministic: bool) -> jax.Array | None:
    """LayerDrop: while training, skip a whole layer with probability ``layerdrop`` (a traced boolean, or None)."""
    if deterministic or layerdrop <= 0:
        return None
    return jax.random.uniform(module.make_rng("dropout"), ()) < layerdrop


def _unless_dropped(dropped: jax.Array | None, skipped: Any, computed: Any) -> Any:
    """``computed``, or ``skipped`` where LayerDrop dropped the layer; shapes stay static under ``jax.jit``."""
    if dropped is None:
        return computed
    return jax.tree_util.tree_map(lambda s, c: jnp.where(dropped, s, c), skipped, computed)


def _framework_kwargs(module: nn.Module) -> dict[str, Any]:
    return {"init_std": module.config.init_std, "dtype": module.dtype, "param_dtype": module.param_dtype}


def _linear(module: nn.Module, features: int, use_bias: bool = True) -> nn.Dense:
    return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=module.dtype,
        param_dtype=module.param_dtype,
        kernel_init=_normal(module.config.init_std),
    )


def _layer_norm(module: nn.Module) -> nn.LayerNorm:
    # PyTorch's epsilon, and its two-pass variance: Linen's default one-pass E[x^2] - E[x]^2 cancels digits where the
    # residual stream's mean is large, and the final layer norm multiplies that error into every logit.
    return nn.LayerNorm(epsilon=1e-5, dtype=module.dtype, param_dtype=module.param_dtype, use_fast_variance=False)


def _cross_entropy(logits: jax.Array, labels: jax.Array, ignore_index: int | None = None) -> jax.Array:
    """PyTorch's ``F.cross_entropy``: the mean over the labels not equal to ``ignore_index`` (NaN if none is kept)."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    kept = jnp.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    safe_labels = jnp.where(kept, labels, 0)
    picked = jnp.take_along_axis(log_probs, safe_labels[:, None], axis=-1)[:, 0]  # (rows,)
    return -jnp.sum(jnp.where(kept, picked, 0.0)) / jnp.sum(kept)


def _shift_tokens_right(labels: jax.Array, pad_token_id: int | None, decoder_start_token_id: int) -> jax.Array:
    """Decoder inputs for teacher forcing, in the graph: the start token, then the labels less the last, -100 made pad."""
    if pad_token_id is None:
        raise InputError("config.pad_token_id is None; it is needed to replace ignored labels (-100)")
    labels = jnp.asarray(labels)  # numpy int64 as JAX int32 once, so no op below asks for int64
    start = jnp.full_like(labels[:, :1], decoder_start_token_id)  # (batch, 1)
    shifted = jnp.concatenate([start, labels[:, :-1]], axis=1)  # (batch, time)
    return jnp.where(shifted == IGNORE_INDEX, pad_token_id, shifted)


# ======================================================================================================================
# Layers
# ======================================================================================================================
class FlaxWhisperAttention(nn.Module):
    """Multi-head attention; self-attention when ``key_value_states`` is None, cross-attention otherwise."""

    embed_dim: int
    num_heads: int
    dropout: float = 0.0
    attn_implementation: str = "sdpa"
    init_std: float = 0.02
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        self.head_dim = self.embed_dim // self.num_heads
        self.scaling = self.head_dim**-0.5
        linear = functools.partial(
            nn.Dense, self.embed_dim, dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=_normal(self.init_std)
        )
        # The key has no bias: it would add the same score to every key of a query, which the softmax cancels.
        self.k_proj = linear(use_bias=False)
        self.v_proj = linear()
        self.q_proj = linear()
        self.out_proj = linear()

    def _split_heads(self, x: jax.Array) -> jax.Array:
        batch, time = x.shape[0], x.shape[1]
        x = x.reshape(batch, time, self.num_heads, self.head_dim)  # (batch, time, heads, head_dim)
        return x.transpose(0, 2, 1, 3)  # (batch, heads, time, head_dim)

    def __call__(
        self,
        hidden_states: jax.Array,
        key_value_states: jax.Array | None = None,
        past_key_value: tuple[jax.Array, jax.Array] | None = None,
        attention_mask: jax.Array | None = None,
        layer_head_mask: jax.Array | None = None,
        output_attentions: bool = False,
        cache_position: jax.Array | None = None,
        deterministic: bool = True,
    ) -> tuple[jax.Array, jax.Array | None, tuple[jax.Array, jax.Array]]:
        """Return (output, attention weights or None, the new (k, v) cache pair)."""
        batch, time = hidden_states.shape[0], hidden_states.shape[1]
        is_cross_attention = key_value_states is not None
        # The query is scaled before the product, as the reference does, so the rounding matches it.
        q = self._split_heads(self.q_proj(hidden_states) * self.scaling)

        if is_cross_attention and past_key_value is not None and past_key_value[0] is not None:
            # The audio does not change while decoding: its keys and values were computed at the first step.
            k, v = past_key_value
        else:
            source = key_value_states if is_cross_attention else hidden_states
            k = self._split_heads(self.k_proj(source))
            v = self._split_heads(self.v_proj(source))
            if not is_cross_attention and past_key_value is not None:
                k, v = self._update_cache(past_key_value, k, v, cache_position)

        wv, qk = self._attend(q, k, v, attention_mask, layer_head_mask, output_attentions, deterministic)
        wv = wv.transpose(0, 2, 1, 3)  # (batch, time, heads, head_dim)
        wv = wv.reshape(batch, time, self.embed_dim)  # (batch, time, d_model)
        return self.out_proj(wv), qk, (k, v)

    def _update_cache(
        self,
        past_key_value: tuple[jax.Array, jax.Array],
        k: jax.Array,
        v: jax.Array,
        cache_position: jax.Array | None,
    ) -> tuple[jax.Array, jax.Array]:
        past_k, past_v = past_key_value
        if cache_position is None:
            # Dynamic cache: the new positions follow the cached ones.
            return jnp.concatenate([past_k, k], axis=2), jnp.concatenate([past_v, v], axis=2)
        # Static cache: the pair is preallocated; write the new positions in place of zeros.
        k, v = k.astype(past_k.dtype), v.astype(past_v.dtype)
        return past_k.at[:, :, cache_position].set(k), past_v.at[:, :, cache_position].set(v)

    def _attend(
        self,
        q: jax.Array,
        k: jax.Array,
        v: jax.Array,
        attention_mask: jax.Array | None,
        layer_head_mask: jax.Array | None,
        output_attentions: bool,
        deterministic: bool,
    ) -> tuple[jax.Array, jax.Array | None]:
        dropout = 0.0 if deterministic else self.dropout
        fused = self.attn_implementation == "sdpa" and not output_attentions and layer_head_mask is None
        # XLA has no fused kernel on CPU: there the call is the product below plus a transpose of the keys and values
        # each way (slower on the encoder, and per step on the cached audio pairs), so CPU takes the product.
        if fused and not dropout and jax.default_backend() != "cpu":
            # Fused kernel; the query is already scaled. It takes (batch, time, heads, head_dim).
            wv = jax.nn.dot_product_attention(
                q.transpose(0, 2, 1, 3),
                k.transpose(0, 2, 1, 3),
                v.transpose(0, 2, 1, 3),
                bias=attention_mask,
                scale=1.0,
            )
            return wv.transpose(0, 2, 1, 3), None  # (batch, heads, time, head_dim)
        # Contracting head_dim of both directly: with ``q @ k.swapaxes(-1, -2)`` XLA on CPU wrote a transposed copy
        # of the keys first, every decoding step (a copy of each layer's cached audio keys).
        qk = jnp.einsum("bhqd,bhkd->bhqk", q, k)  # (batch, heads, query_time, key_time)
        if attention_mask is not None:
            qk = qk + attention_mask
        w = jax.nn.softmax(_at_least_float32(qk), axis=-1).astype(q.dtype)
        if layer_head_mask is not None:
            w = w * layer_head_mask.reshape(1, -1, 1, 1)  # (1, heads, 1, 1)
        w_dropped = _dropout(self, w, dropout, deterministic)
        return w_dropped @ v, (w if output_attentions else None)


class FlaxWhisperEncoderLayer(nn.Module):
    """Pre-norm block: self-attention, then a two-layer feed-forward, each added to its input."""

    config: WhisperConfig
    attn_implementation: str = "sdpa"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        config = self.config
        self.embed_dim = config.d_model
        self.self_attn = FlaxWhisperAttention(
            self.embed_dim, config.encoder_attention_heads, config.attention_dropout, self.attn_implementation,
            **_framework_kwargs(self),
        )  # fmt: skip
        self.self_attn_layer_norm = _layer_norm(self)
        self.dropout = config.dropout
        self.activation_fn = ACTIVATIONS[config.activation_function]
        self.activation_dropout = config.activation_dropout
        self.fc1 = _linear(self, config.encoder_ffn_dim)
        self.fc2 = _linear(self, self.embed_dim)
        self.final_layer_norm = _layer_norm(self)

    def __call__(
        self,
        hidden_states: jax.Array,
        layer_head_mask: jax.Array | None = None,
        output_attentions: bool = False,
        deterministic: bool = True,
    ) -> tuple[jax.Array, jax.Array | None]:
        residual = hidden_states
        hidden_states = self.self_attn_layer_norm(hidden_states)
        hidden_states, attn_weights, _ = self.self_attn(
            hidden_states, layer_head_mask=layer_head_mask, output_attentions=output_attentions,
            deterministic=deterministic,
        )  # fmt: skip
        hidden_states = _dropout(self, hidden_states, self.dropout, deterministic)
        hidden_states = residual + hidden_states

        residual = hidden_states
        hidden_states = self.final_layer_norm(hidden_states)
        hidden_states = self.activation_fn(self.fc1(hidden_states))
        hidden_states = _dropout(self, hidden_states, self.activation_dropout, deterministic)
        hidden_states = self.fc2(hidden_states)
        hidden_states = _dropout(self, hidden_states, self.dropout, deterministic)
        hidden_states = residual + hidden_states

        if hidden_states.dtype == jnp.float16:
            # Half precision overflows in long audio; keep values finite.
            limit = jnp.finfo(hidden_states.dtype).max - 1000
            hidden_states = jnp.clip(hidden_states, -limit, limit)
        return hidden_states, attn_weights


class FlaxWhisperDecoderLayer(nn.Module):
    """Pre-norm block: causal self-attention, cross-attention to the audio, then the feed-forward."""

    config: WhisperConfig
    attn_implementation: str = "sdpa"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        config = self.config
        self.embed_dim = config.d_model
        self.self_attn = FlaxWhisperAttention(
            self.embed_dim, config.decoder_attention_heads, config.attention_dropout, self.attn_implementation,
            **_framework_kwargs(self),
        )  # fmt: skip
        self.dropout = config.dropout
        self.activation_fn = ACTIVATIONS[config.activation_function]
        self.activation_dropout = config.activation_dropout
        self.self_attn_layer_norm = _layer_norm(self)
        self.encoder_attn = FlaxWhisperAttention(
            self.embed_dim, config.decoder_attention_heads, config.attention_dropout, self.attn_implementation,
            **_framework_kwargs(self),
        )  # fmt: skip
        self.encoder_attn_layer_norm = _layer_norm(self)
        self.fc1 = _linear(self, config.decoder_ffn_dim)
        self.fc2 = _linear(self, self.embed_dim)
        self.final_layer_norm = _layer_norm(self)

    def __call__(
        self,
        hidden_states: jax.Array,
        attention_mask: jax.Array | None = None,
        encoder_hidden_states: jax.Array | None = None,
        layer_head_mask: jax.Array | None = None,
        cross_attn_layer_head_mask: jax.Array | None = None,
        past_key_value: LayerCache | None = None,
        output_attentions: bool = False,
        cache_position: jax.Array | None = None,
        deterministic: bool = True,
    ) -> tuple[jax.Array, jax.Array | None, jax.Array | None, LayerCache]:
        """Return (hidden states, self-attention weights, cross-attention weights, the new layer cache)."""
        self_cache = None if past_key_value is None else (past_key_value[0], past_key_value[1])
        cross_cache = None if past_key_value is None else (past_key_value[2], past_key_value[3])

        residual = hidden_states
        hidden_states = self.self_attn_layer_norm(hidden_states)
        hidden_states, self_attn_weights, self_cache = self.self_attn(
            hidden_states,
            past_key_value=self_cache,
            attention_mask=attention_mask,
            layer_head_mask=layer_head_mask,
            output_attentions=output_attentions,
            cache_position=cache_position,
            deterministic=deterministic,
        )
        hidden_states = _dropout(self, hidden_states, self.dropout, deterministic)
        hidden_states = residual + hidden_states

        cross_attn_weights = None
        if encoder_hidden_states is not None:
            residual = hidden_states
            hidden_states = self.encoder_attn_layer_norm(hidden_states)
            hidden_states, cross_attn_weights, cross_cache = self.encoder_attn(
                hidden_states,
                key_value_states=encoder_hidden_states,
                past_key_value=cross_cache,
                layer_head_mask=cross_attn_layer_head_mask,
                output_attentions=output_attentions,
                deterministic=deterministic,
            )
            hidden_states = _dropout(self, hidden_states, self.dropout, deterministic)
            hidden_states = residual + hidden_states
        cross_k, cross_v = (None, None) if cross_cache is None else cross_cache

        residual = hidden_states
        hidden_states = self.final_layer_norm(hidden_states)
        hidden_states = self.activation_fn(self.fc1(hidden_states))
        hidden_states = _dropout(self, hidden_states, self.activation_dropout, deterministic)
        hidden_states = self.fc2(hidden_states)
        hidden_states = _dropout(self, hidden_states, self.dropout, deterministic)
        hidden_states = residual + hidden_states
        return hidden_states, self_attn_weights, cross_attn_weights, (self_cache[0], self_cache[1], cross_k, cross_v)


# ======================================================================================================================
# Models
# ======================================================================================================================
class FlaxWhisperPreTrainedModel(FlaxPreTrainedModelMixin):
    """Holds ``config``, the Linen ``module`` and its ``params``: initialisation, calls, loading and saving."""

    config_class = WhisperConfig
    main_input_name = "input_features"
    base_model_prefix = "model"
    head = "base"  # the name of this model's parameter set in weights.table
    module_class: type[nn.Module]

    def __init__(
        self,
        config: WhisperConfig,
        input_shape: tuple[int, ...] | None = None,
        seed: int = 0,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        _do_init: bool = True,
        gradient_checkpointing: bool = False,
        scan_layers: bool = False,
        attn_implementation: str | None = None,
    ):
        if not isinstance(config, WhisperConfig):
            raise TypeError(f"{type(self).__name__} expects a WhisperConfig, got {type(config).__name__}")
        implementation = arguments.attn_implementation(config, attn_implementation)
        self.config = config
        self.dtype = jnp.dtype(dtype)
        self.param_dtype = jnp.dtype(param_dtype)
        self.scan_layers = scan_layers
        self.module = self.module_class(
            config,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            gradient_checkpointing=gradient_checkpointing,
            scan_layers=scan_layers,
            attn_implementation=implementation,
        )
        self.input_shape = input_shape or (1, config.num_mel_bins, expected_num_frames(config))
        self.key = jax.random.PRNGKey(seed)
        self._compiled: dict[str, Callable[..., Any]] = {}
        self._params: dict[str, Any] | None = self.init_weights(self.key, self.input_shape) if _do_init else None

    # --- parameters ---------------------------------------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        if self._params is None:
            raise InputError(f"{type(self).__name__} has no params yet: it was built with _do_init=False")
        return self._params

    @params.setter
    def params(self, params: dict[str, Any]) -> None:
        self._params = params

    def _dummy_inputs(self, input_shape: tuple[int, ...]) -> dict[str, jax.Array]:
        inputs = {"input_features": jnp.zeros(input_shape, jnp.float32)}
        if self.head != "audio_classification":
            start = self.config.decoder_start_token_id
            inputs["decoder_input_ids"] = jnp.full((input_shape[0], 1), start, jnp.int32)
        return inputs

    def init_weights(self, rng: jax.Array, input_shape: tuple[int, ...], params: dict[str, Any] | None = None):
        """Random parameters from the config (PyTorch's initialisation: normal(0, init_std), sinusoids, ones)."""
        params_rng, dropout_rng = jax.random.split(rng)
        variables = self.module.init({"params": params_rng, "dropout": dropout_rng}, **self._dummy_inputs(input_shape))
        random_params = variables["params"]
        if params is None:
            return random_params
        return _merge(random_params, params)

    def params_shapes(self) -> dict[str, Any]:
        """The parameter tree's shapes and dtypes, computed without allocating (``jax.eval_shape``)."""
        init = functools.partial(self.module.init, **self._dummy_inputs(self.input_shape))
        rngs = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
        return jax.eval_shape(init, rngs)["params"]

    def num_parameters(self) -> int:
        return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(self.params))

    def enable_gradient_checkpointing(self) -> None:
        """Recompute each layer's activations in the backward pass instead of storing them (``nn.remat``)."""
        self.module = self.module.clone(gradient_checkpointing=True)
        self._compiled.clear()

    def disable_gradient_checkpointing(self) -> None:
        self.module = self.module.clone(gradient_checkpointing=False)
        self._compiled.clear()

    # --- calls --------------------------------------------------------------------------------------------------
    def _apply(
        self,
        method: str | None,
        kwargs: dict[str, Any],
        params: dict[str, Any] | None,
        train: bool,
        dropout_rng: jax.Array | None,
    ) -> Any:
        rngs = {}
        if dropout_rng is not None:
            rngs["dropout"] = dropout_rng
        elif train:
            raise InputError("train=True needs dropout_rng, a jax.random key for dropout, LayerDrop and SpecAugment")
        kwargs = {name: _as_jax(value) for name, value in kwargs.items()}
        bound_method = None if method is None else getattr(self.module, method)
        variables = {"params": self.params if params is None else params}
        return self.module.apply(variables, **kwargs, deterministic=not train, rngs=rngs, method=bound_method)

    def __call__(
        self,
        input_features: Any = None,
        *,
        params: dict[str, Any] | None = None,
        dropout_rng: jax.Array | None = None,
        train: bool = False,
        **kwargs: Any,
    ) -> Any:
        """The module's forward pass (same arguments as the PyTorch model) with ``params`` or the model's own."""
        return self._apply(None, {"input_features": input_features, **kwargs}, params, train, dropout_rng)


class FlaxWhisperEncoder(nn.Module):
    """Two convolutions over the log-mel frames, fixed sinusoidal positions, then ``encoder_layers`` blocks."""

    config: WhisperConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    gradient_checkpointing: bool = False
    scan_layers: bool = False
    attn_implementation: str = "sdpa"

    def setup(self) -> None:
        config = self.config
        self.dropout = config.dropout
        self.layerdrop = config.encoder_layerdrop
        self.num_mel_bins = config.num_mel_bins
        self.max_source_positions = config.max_source_positions
        embed_dim = config.d_model
        conv = functools.partial(
            nn.Conv, embed_dim, kernel_size=(3,), padding=((1, 1),), dtype=self.dtype, param_dtype=self.param_dtype,
            kernel_init=_normal(config.init_std),
        )  # fmt: skip
        self.conv1 = conv()
        self.conv2 = conv(strides=(2,))
        self.embed_positions = nn.Embed(
            self.max_source_positions, embed_dim, embedding_init=_sinusoid_init, dtype=self.dtype,
            param_dtype=self.param_dtype,
        )  # fmt: skip
        self.layers = _layer_stack(self, FlaxWhisperEncoderLayer, config.encoder_layers, _ENCODER_STATIC_ARGNUMS)
        self.layer_norm = _layer_norm(self)

    def __call__(
        self,
        input_features: jax.Array,
        attention_mask: jax.Array | None = None,
        head_mask: jax.Array | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        deterministic: bool = True,
    ) -> BaseModelOutput | tuple[Any, ...]:
        """``attention_mask`` is accepted for compatibility and unused: Whisper always sees a whole 30-second window."""
        resolved = arguments.encoder_call(
            self.config, input_features, head_mask, output_attentions, output_hidden_states, return_dict
        )
        input_features = input_features.astype(self.dtype)
        # Flax convolutions are channels-last: (batch, n_mels, frames) -> (batch, frames, n_mels), once, here.
        input_features = input_features.transpose(0, 2, 1)

        hidden_states = jax.nn.gelu(self.conv1(input_features), approximate=False)
        hidden_states = jax.nn.gelu(self.conv2(hidden_states), approximate=False)  # (batch, positions, d_model)
        # Channels-last already: (batch, positions, d_model) needs no transpose.
        embed_positions = jax.lax.stop_gradient(self.embed_positions.embedding)  # fixed sinusoids, never trained
        hidden_states = hidden_states + embed_positions.astype(hidden_states.dtype)
        hidden_states = _dropout(self, hidden_states, self.dropout, deterministic)

        if self.scan_layers:
            hidden_states, all_hidden_states, all_attentions = _run_scanned_encoder(
                self.layers, hidden_states, head_mask, resolved.output_attentions, resolved.output_hidden_states,
                deterministic, self.config.encoder_layers,
            )  # fmt: skip
        else:
            all_hidden_states: tuple[jax.Array, ...] | None = () if resolved.output_hidden_states else None
            all_attentions: tuple[Any, ...] | None = () if resolved.output_attentions else None
            for index, layer in enumerate(self.layers):
                if all_hidden_states is not None:
                    all_hidden_states += (hidden_states,)
                dropped = _layer_dropped(self, self.layerdrop, deterministic)
                layer_head_mask = None if head_mask is None else head_mask[index]
                layer_outputs = layer(hidden_states, layer_head_mask, resolved.output_attentions, deterministic)
                attn_weights = layer_outputs[1]
                skipped = (hidden_states, None if attn_weights is None else jnp.zeros_like(attn_weights))
                hidden_states, attn_weights = _unless_dropped(dropped, skipped, layer_outputs)
                if all_attentions is not None:
                    all_attentions += (attn_weights,)
        hidden_states = self.layer_norm(hidden_states)
        if all_hidden_states is not None:
            all_hidden_states += (hidden_states,)

        output = BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, attentions=all_attentions
        )
        return output if resolved.return_dict else output.to_tuple()


class FlaxWhisperDecoder(nn.Module):
    """Token and learned position embeddings, then ``decoder_layers`` blocks attending to the encoder output."""

    config: WhisperConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    gradient_checkpointing: bool = False
    scan_layers: bool = False
    attn_implementation: str = "sdpa"

    def setup(self) -> None:
        config = self.config
        self.dropout = config.dropout
        self.layerdrop = config.decoder_layerdrop
        self.padding_idx = config.pad_token_id
        self.max_target_positions = config.max_target_positions
        self.embed_tokens = nn.Embed(
            config.vocab_size, config.d_model, embedding_init=_token_embedding_init(config.init_std, self.padding_idx),
            dtype=self.dtype, param_dtype=self.param_dtype,
        )  # fmt: skip
        self.embed_positions = nn.Embed(
            self.max_target_positions, config.d_model, embedding_init=_normal(config.init_std), dtype=self.dtype,
            param_dtype=self.param_dtype,
        )  # fmt: skip
        self.layers = _layer_stack(self, FlaxWhisperDecoderLayer, config.decoder_layers, _DECODER_STATIC_ARGNUMS)
        self.layer_norm = _layer_norm(self)

    def init_cache(self, batch_size: int, max_length: int | None = None) -> Cache:
        """A static cache: zeros for ``max_length`` self-attention positions, cross pairs filled at the first step.

        Decode with it by passing ``cache_position`` (the positions being written) at every step. Needs no params.
        """
        shape = arguments.static_cache_shape(self.config, batch_size, max_length)  # (batch, heads, time, head_dim)
        return tuple(
            (jnp.zeros(shape, self.dtype), jnp.zeros(shape, self.dtype), None, None)
            for _ in range(self.config.decoder_layers)
        )

    def _causal_mask(
        self,
        attention_mask: jax.Array | None,
        query_positions: jax.Array,
        key_length: int,
        batch_size: int,
        dtype: Any,
        static: bool,
    ) -> jax.Array:
        """Additive mask (batch or 1, 1, query_time, key_time): 0 where a query may look, the dtype's minimum else."""
        key_positions = jnp.arange(key_length)
        allowed = key_positions[None, :] <= query_positions[:, None]  # (query_time, key_time)
        allowed = allowed[None, None]  # (1, 1, query_time, key_time)
        if attention_mask is not None:
            arguments.check_decoder_attention_mask(attention_mask, batch_size, key_length, static)
            # A static cache is longer than the positions written so far: the rest is hidden by causality.
            padding = jnp.ones((batch_size, key_length - attention_mask.shape[-1]), attention_mask.dtype)
            keys_kept = jnp.concatenate([attention_mask, padding], axis=-1).astype(bool)
            allowed = allowed & keys_kept[:, None, None, :]  # (batch, 1, query_time, key_time)
        zero = jnp.zeros((), dtype=dtype)
        minimum = jnp.asarray(jnp.finfo(dtype).min, dtype=dtype)
        return jnp.where(allowed, zero, minimum)

    def __call__(
        self,
        input_ids: jax.Array | None = None,
        attention_mask: jax.Array | None = None,
        encoder_hidden_states: jax.Array | None = None,
        head_mask: jax.Array | None = None,
        cross_attn_head_mask: jax.Array | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: jax.Array | None = None,
        position_ids: jax.Array | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: jax.Array | None = None,
        deterministic: bool = True,
    ) -> BaseModelOutputWithPastAndCrossAttentions | tuple[Any, ...]:
        resolved = arguments.decoder_call(
            self.config, input_ids, inputs_embeds, head_mask, cross_attn_head_mask, past_key_values, cache_position,
            (use_cache, output_attentions, output_hidden_states, return_dict), _token_id_range,
            checkpointing=self.gradient_checkpointing and not deterministic,
        )  # fmt: skip
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
            if self.padding_idx is not None:
                # PyTorch's padding_idx: looking up the pad token sends no gradient to its row.
                is_pad = (input_ids == self.padding_idx)[..., None]  # (batch, time, 1)
                inputs_embeds = jnp.where(is_pad, jax.lax.stop_gradient(inputs_embeds), inputs_embeds)
        batch_size, length = inputs_embeds.shape[0], inputs_embeds.shape[1]

        if resolved.static:
            # Static cache: the keys span the whole preallocated length; the written positions are given.
            query_positions = cache_position
        else:
            query_positions = jnp.arange(resolved.past_length, resolved.key_length)
        if position_ids is None:
            position_ids = query_positions[None, :]  # (1, time)

        hidden_states = inputs_embeds + self.embed_positions(position_ids).astype(inputs_embeds.dtype)
        hidden_states = _dropout(self, hidden_states, self.dropout, deterministic)
        if length == 1 and attention_mask is None and cache_position is None:
            causal_mask = None  # one new token may look at every cached one
        else:
            causal_mask = self._causal_mask(
                attention_mask, query_positions, resolved.key_length, batch_size, hidden_states.dtype, resolved.static
            )

        if self.scan_layers:
            hidden_states, next_cache, all_hidden_states, all_self_attentions, all_cross_attentions = (
                _run_scanned_decoder(
                    self.layers, hidden_states, causal_mask, encoder_hidden_states, head_mask, cross_attn_head_mask,
                    past_key_values, resolved.output_attentions, resolved.output_hidden_states, cache_position,
                    deterministic, self.config.decoder_layers,
                )
            )  # fmt: skip
        else:
            all_hidden_states: tuple[jax.Array, ...] | None = () if resolved.output_hidden_states else None
            all_self_attentions: tuple[Any, ...] | None = () if resolved.output_attentions else None
            all_cross_attentions: tuple[Any, ...] | None = (
                () if resolved.output_attentions and encoder_hidden_states is not None else None
            )
            next_cache: list[LayerCache] = []
            for index, layer in enumerate(self.layers):
                if all_hidden_states is not None:
                    all_hidden_states += (hidden_states,)
                past_key_value = None if past_key_values is None else past_key_values[index]
                dropped = _layer_dropped(self, self.layerdrop, deterministic)
                layer_outputs = layer(
                    hidden_states,
                    causal_mask,
                    encoder_hidden_states,
                    None if head_mask is None else head_mask[index],
                    None if cross_attn_head_mask is None else cross_attn_head_mask[index],
                    past_key_value,
                    resolved.output_attentions,
                    cache_position,
                    deterministic,
                )
                hidden_states, self_attn_weights, cross_attn_weights, layer_cache = _unless_dropped(
                    dropped, _skipped_decoder_layer(hidden_states, past_key_value, layer_outputs), layer_outputs
                )
                next_cache.append(layer_cache)
                if all_self_attentions is not None:
                    all_self_attentions += (self_attn_weights,)
                if all_cross_attentions is not None:
                    all_cross_attentions += (cross_attn_weights,)
            next_cache = tuple(next_cache)
        hidden_states = self.layer_norm(hidden_states)
        if all_hidden_states is not None:
            all_hidden_states += (hidden_states,)

        output = BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states,
            past_key_values=next_cache if resolved.use_cache else None,
            hidden_states=all_hidden_states,
            attentions=all_self_attentions,
            cross_attentions=all_cross_attentions,
        )
        return output if resolved.return_dict else output.to_tuple()


class FlaxWhisperModule(nn.Module):
    """Encoder and decoder, returning the decoder's last hidden state (no vocabulary projection)."""

    config: WhisperConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    gradient_checkpointing: bool = False
    scan_layers: bool = False
    attn_implementation: str = "sdpa"

    def setup(self) -> None:
        self.encoder = FlaxWhisperEncoder(self.config, **_module_kwargs(self))
        self.decoder = FlaxWhisperDecoder(self.config, **_module_kwargs(self))

    def get_encoder(self) -> FlaxWhisperEncoder:
        return self.encoder

    def get_decoder(self) -> FlaxWhisperDecoder:
        return self.decoder

    def _mask_input_features(
        self, input_features: jax.Array, attention_mask: jax.Array | None = None, deterministic: bool = True
    ) -> jax.Array:
        """SpecAugment: while training, zero random spans of frames and of mel bins."""
        if not self.config.apply_spec_augment or deterministic:
            return input_features
        batch_size, num_mel_bins, frames = input_features.shape
        # A seed drawn from the "dropout" stream seeds numpy, so the same dropout_rng reproduces the masks.
        seed = jax.random.randint(self.make_rng("dropout"), (), 0, 2**31 - 1)
        time_mask, feature_mask = _spec_augment_masks(
            self.config, seed, batch_size, num_mel_bins, frames, attention_mask
        )
        if self.config.mask_time_prob > 0:
            time_mask = time_mask[:, None, :]  # (batch, 1, frames)
            input_features = jnp.where(time_mask, 0.0, input_features).astype(input_features.dtype)
        if self.config.mask_feature_prob > 0:
            feature_mask = feature_mask[:, :, None]  # (batch, mels, 1)
            input_features = jnp.where(feature_mask, 0.0, input_features).astype(input_features.dtype)
        return input_features

    def __call__(
        self,
        input_features: jax.Array | None = None,
        attention_mask: jax.Array | None = None,
        decoder_input_ids: jax.Array | None = None,
        decoder_attention_mask: jax.Array | None = None,
        head_mask: jax.Array | None = None,
        decoder_head_mask: jax.Array | None = None,
        cross_attn_head_mask: jax.Array | None = None,
        encoder_outputs: BaseModelOutput | tuple[jax.Array, ...] | None = None,
        past_key_values: Cache | None = None,
        decoder_inputs_embeds: jax.Array | None = None,
        decoder_position_ids: jax.Array | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: jax.Array | None = None,
        deterministic: bool = True,
    ) -> Seq2SeqModelOutput | tuple[Any, ...]:
        return_dict = arguments.config_flag(self.config, "use_return_dict", return_dict, True)
        if encoder_outputs is None:
            arguments.check_encoder_inputs(input_features, self.config)
            input_features = self._mask_input_features(input_features, attention_mask, deterministic)
            encoder_outputs = self.encoder(
                input_features,
                head_mask=head_mask,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
                deterministic=deterministic,
            )
        else:
            encoder_outputs = arguments.as_encoder_output(encoder_outputs, BaseModelOutput)

        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask,
            past_key_values=past_key_values,
            inputs_embeds=decoder_inputs_embeds,
            position_ids=decoder_position_ids,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            cache_position=cache_position,
            deterministic=deterministic,
        )
        output = Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            past_key_values=decoder_outputs.past_key_values,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )
        return output if return_dict else output.to_tuple()

    # --- Flax only: the encoder and decoder alone, for the wrapper's encode/decode ------------------------------
    def encode(self, input_features: jax.Array, **kwargs: Any) -> Any:
        return self.encoder(input_features, **kwargs)

    def decode(self, decoder_input_ids: jax.Array, encoder_outputs: Any = None, **kwargs: Any) -> Any:
        encoder_hidden_states = _last_hidden_state(encoder_outputs)
        return self.decoder(decoder_input_ids, encoder_hidden_states=encoder_hidden_states, **_decoder_kwargs(kwargs))


class FlaxWhisperModel(FlaxWhisperPreTrainedModel):
    """Encoder and decoder, returning the decoder's last hidden state (no vocabulary projection)."""

    head = "base"
    module_class = FlaxWhisperModule


class FlaxWhisperForConditionalGenerationModule(nn.Module):
    """Speech to text: ``FlaxWhisperModule`` plus the vocabulary projection ``proj_out``, tied to the token embedding."""

    config: WhisperConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    gradient_checkpointing: bool = False
    scan_layers: bool = False
    attn_implementation: str = "sdpa"

    def setup(self) -> None:
        self.model = FlaxWhisperModule(self.config, **_module_kwargs(self))
        # proj_out is tied to the token embedding (see the method proj_out): Linen shares it by reading the table.
        self.max_target_positions = self.config.max_target_positions

    def proj_out(self, hidden_states: jax.Array) -> jax.Array:
        """The tied vocabulary projection: the hidden states times the transposed token embedding."""
        return self.model.decoder.embed_tokens.attend(hidden_states)

    def get_encoder(self) -> FlaxWhisperEncoder:
        return self.model.encoder

    def get_decoder(self) -> FlaxWhisperDecoder:
        return self.model.decoder

    def init_cache(self, batch_size: int, max_length: int | None = None) -> Cache:
        """A static cache for compiled decoding; see ``FlaxWhisperDecoder.init_cache``."""
        decoder = FlaxWhisperDecoder(self.config, dtype=self.dtype, parent=None)  # unbound: needs no params
        return decoder.init_cache(batch_size, max_length)

    def __call__(
        self,
        input_features: jax.Array | None = None,
        attention_mask: jax.Array | None = None,
        decoder_input_ids: jax.Array | None = None,
        decoder_attention_mask: jax.Array | None = None,
        head_mask: jax.Array | None = None,
        decoder_head_mask: jax.Array | None = None,
        cross_attn_head_mask: jax.Array | None = None,
        encoder_outputs: BaseModelOutput | tuple[jax.Array, ...] | None = None,
        past_key_values: Cache | None = None,
        decoder_inputs_embeds: jax.Array | None = None,
        decoder_position_ids: jax.Array | None = None,
        labels: jax.Array | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: jax.Array | None = None,
        deterministic: bool = True,
    ) -> Seq2SeqLMOutput | tuple[Any, ...]:
        """``labels`` (batch, time): next-token targets, -100 where no loss is wanted; the decoder inputs are the
        labels shifted right behind ``decoder_start_token_id`` unless given."""
        return_dict = arguments.config_flag(self.config, "use_return_dict", return_dict, True)
        if labels is not None:
            arguments.check_labels(labels, self.config)
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = _shift_tokens_right(
                    labels, self.config.pad_token_id, self.config.decoder_start_token_id
                )

        outputs = self.model(
            input_features,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            head_mask=head_mask,
            decoder_head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask,
            encoder_outputs=encoder_outputs,
            past_key_values=past_key_values,
            decoder_inputs_embeds=decoder_inputs_embeds,
            decoder_position_ids=decoder_position_ids,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            cache_position=cache_position,
            deterministic=deterministic,
        )
        logits = self.proj_out(outputs.last_hidden_state)

        loss = None
        if labels is not None:
            # Mean over the positions whose label is not -100.
            flat_logits = _at_least_float32(logits).reshape(-1, logits.shape[-1])  # (batch * time, vocab)
            loss = _cross_entropy(flat_logits, labels.reshape(-1), ignore_index=IGNORE_INDEX)  # labels: (batch * time,)

        output = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )
        return output if return_dict else output.to_tuple()

    # --- Flax only: the encoder and decoder alone, for the wrapper's encode/decode ------------------------------
    def encode(self, input_features: jax.Array, **kwargs: Any) -> Any:
        return self.model.encoder(input_features, **kwargs)

    def decode(self, decoder_input_ids: jax.Array, encoder_outputs: Any = None, **kwargs: Any) -> Any:
        encoder_hidden_states = _last_hidden_state(encoder_outputs)
        return_dict = arguments.config_flag(self.config, "use_return_dict", kwargs.pop("return_dict", None), True)
        outputs = self.model.decoder(
            decoder_input_ids, encoder_hidden_states=encoder_hidden_states, return_dict=True, **_decoder_kwargs(kwargs)
        )
        output = Seq2SeqLMOutput(
            logits=self.proj_out(outputs.last_hidden_state),
            past_key_values=outputs.past_key_values,
            decoder_hidden_states=outputs.hidden_states,
            decoder_attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )
        return output if return_dict else output.to_tuple()


class FlaxWhisperForConditionalGeneration(FlaxWhisperGenerationMixin, FlaxWhisperPreTrainedModel):
    """Speech to text: ``FlaxWhisperModel`` plus the vocabulary projection ``proj_out``, tied to the token embedding.

    ``jit_encode(params, input_features)`` and ``jit_decode_step(params, tokens, cache, encoder_states,
    cache_position)`` are pure functions compiled once per input shape, for decoding loops.
    """

    head = "conditional_generation"
    module_class = FlaxWhisperForConditionalGenerationModule

    def init_cache(self, batch_size: int, max_length: int | None = None) -> Cache:
        """A static cache for compiled decoding; see ``FlaxWhisperDecoder.init_cache``."""
        return self.module.init_cache(batch_size, max_length)

    def encode(
        self,
        input_features: Any,
        params: dict[str, Any] | None = None,
        dropout_rng: jax.Array | None = None,
        train: bool = False,
        **kwargs: Any,
    ) -> Any:
        """The encoder alone: ``BaseModelOutput`` for ``input_features`` (batch, num_mel_bins, frames)."""
        return self._apply("encode", {"input_features": input_features, **kwargs}, params, train, dropout_rng)

    def decode(
        self,
        decoder_input_ids: Any,
        encoder_outputs: Any,
        params: dict[str, Any] | None = None,
        dropout_rng: jax.Array | None = None,
        train: bool = False,
        **kwargs: Any,
    ) -> Any:
        """The decoder and projection: logits and the new cache, for token ids and the encoder's output."""
        inputs = {"decoder_input_ids": decoder_input_ids, "encoder_outputs": encoder_outputs, **kwargs}
        return self._apply("decode", inputs, params, train, dropout_rng)

    @property
    def jit_encode(self) -> Callable[[dict[str, Any], jax.Array], jax.Array]:
        """``encode(params, input_features) -> encoder states`` (batch, positions, d_model), jit-compiled."""
        if "encode" not in self._compiled:
            module = self.module

            def encode(params: dict[str, Any], input_features: jax.Array) -> jax.Array:
                outputs = module.apply({"params": params}, input_features, method=module.encode)
                return outputs.last_hidden_state

            self._compiled["encode"] = jax.jit(encode)
        return self._compiled["encode"]

    @property
    def jit_decode_step(self) -> Callable[..., tuple[jax.Array, Cache]]:
        """``decode_step(params, tokens, cache, encoder_states, cache_position) -> (logits, cache)``, jit-compiled.

        ``cache`` comes from ``init_cache`` (static); ``cache_position`` holds the positions ``tokens`` are written
        at. The first call fills the cross-attention pairs, so it compiles once more than the steps that follow.
        """
        if "decode_step" not in self._compiled:
            module = self.module

            def decode_step(
                params: dict[str, Any],
                tokens: jax.Array,
                cache: Cache,
                encoder_states: jax.Array,
                cache_position: jax.Array,
            ) -> tuple[jax.Array, Cache]:
                outputs = module.apply(
                    {"params": params},
                    tokens,
                    encoder_outputs=encoder_states,
                    past_key_values=cache,
                    cache_position=cache_position,
                    method=module.decode,
                )
                return outputs.logits, outputs.past_key_values

            self._compiled["decode_step"] = jax.jit(decode_step)
        return self._compiled["decode_step"]


class FlaxWhisperForAudioClassificationModule(nn.Module):
    """Encoder, then a projection, a mean over time and a linear classifier (e.g. language identification)."""

    config: WhisperConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    gradient_checkpointing: bool = False
    scan_layers: bool = False
    attn_implementation: str = "sdpa"

    def setup(self) -> None:
        config = self.config
        self.encoder = FlaxWhisperEncoder(config, **_module_kwargs(self))
        num_layers = config.num_hidden_layers + 1  # the embeddings and every layer's output
        self.layer_weights = (
            self.param("layer_weights", nn.initializers.constant(1.0 / num_layers), (num_layers,), self.param_dtype)
            if config.use_weighted_layer_sum
            else None
        )
        self.projector = _linear(self, config.classifier_proj_size)
        self.classifier = _linear(self, config.num_labels)

    def get_encoder(self) -> FlaxWhisperEncoder:
        return self.encoder

    def __call__(
        self,
        input_features: jax.Array | None = None,
        head_mask: jax.Array | None = None,
        encoder_outputs: BaseModelOutput | tuple[jax.Array, ...] | None = None,
        labels: jax.Array | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        deterministic: bool = True,
    ) -> SequenceClassifierOutput | tuple[Any, ...]:
        return_dict = arguments.config_flag(self.config, "use_return_dict", return_dict, True)
        output_hidden_states = arguments.classifier_hidden_states(self.config, output_hidden_states)
        if encoder_outputs is None:
            arguments.check_encoder_inputs(input_features)
            encoder_outputs = self.encoder(
                input_features,
                head_mask=head_mask,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
                deterministic=deterministic,
            )
        else:
            encoder_outputs = arguments.as_encoder_output(encoder_outputs, BaseModelOutput)

        if self.layer_weights is not None:
            hidden_states = jnp.stack(encoder_outputs.hidden_states, axis=1)  # (batch, layers, positions, d_model)
            norm_weights = jax.nn.softmax(self.layer_weights, axis=-1)
            norm_weights = norm_weights.reshape(-1, 1, 1)  # (layers, 1, 1)
            hidden_states = (hidden_states * norm_weights).sum(axis=1)  # (batch, positions, d_model)
        else:
            hidden_states = encoder_outputs.last_hidden_state
        hidden_states = self.projector(hidden_states)
        pooled_output = hidden_states.mean(axis=1)
        logits = self.classifier(pooled_output)

        loss = None
        if labels is not None:
            flat_logits = _at_least_float32(logits).reshape(-1, self.config.num_labels)  # (batch, num_labels)
            loss = _cross_entropy(flat_logits, labels.reshape(-1))  # labels: (batch,)

        output = SequenceClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


class FlaxWhisperForAudioClassification(FlaxWhisperPreTrainedModel):
    """Encoder, then a projection, a mean over time and a linear classifier (e.g. language identification)."""

    head = "audio_classification"
    module_class = FlaxWhisperForAudioClassificationModule


# ======================================================================================================================
# Flax only: wrapper helpers, SpecAugment masks, scanned layer stacks
# ======================================================================================================================
def _module_kwargs(module: nn.Module) -> dict[str, Any]:
    return {
        "dtype": module.dtype,
        "param_dtype": module.param_dtype,
        "gradient_checkpointing": module.gradient_checkpointing,
        "scan_layers": module.scan_layers,
        "attn_implementation": module.attn_implementation,
    }


def _as_jax(value: Any) -> Any:
    """numpy (and nested tuples/outputs of numpy) as jax arrays; Python flags and None unchanged."""
    if isinstance(value, np.ndarray):
        return jnp.asarray(value)
    if isinstance(value, (tuple, list, ModelOutput)):
        return jax.tree_util.tree_map(lambda leaf: jnp.asarray(leaf) if isinstance(leaf, np.ndarray) else leaf, value)
    return value


def _merge(base: Any, override: Any) -> Any:
    """``base`` with every leaf present in ``override`` replaced (nested dicts)."""
    if not isinstance(base, dict):
        return override
    return {key: _merge(value, override[key]) if key in override else value for key, value in base.items()}


def _last_hidden_state(encoder_outputs: Any) -> Any:
    if encoder_outputs is None or isinstance(encoder_outputs, jax.Array):
        return encoder_outputs
    if isinstance(encoder_outputs, BaseModelOutput):
        return encoder_outputs.last_hidden_state
    return encoder_outputs[0]


def _decoder_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The model's decoder argument names (``decoder_attention_mask``, ...) as the decoder's own."""
    renames = {
        "decoder_attention_mask": "attention_mask",
        "decoder_position_ids": "position_ids",
        "decoder_head_mask": "head_mask",
        "decoder_inputs_embeds": "inputs_embeds",
    }
    return {renames.get(name, name): value for name, value in kwargs.items()}


def _skipped_decoder_layer(hidden_states: jax.Array, past_key_value: LayerCache | None, computed: tuple) -> tuple:
    """What a LayerDrop-skipped decoder layer gives: its input, zero weights and its cache unchanged."""
    _, self_attn_weights, cross_attn_weights, layer_cache = computed
    zeros = None if self_attn_weights is None else jnp.zeros_like(self_attn_weights)
    cross_zeros = None if cross_attn_weights is None else jnp.zeros_like(cross_attn_weights)
    if past_key_value is None or past_key_value[2] is None:
        kept_cache = layer_cache  # nothing cached before: the fresh pairs stand in (only read when not skipped)
    else:
        kept_cache = past_key_value
    return hidden_states, zeros, cross_zeros, kept_cache


def _spec_augment_masks(
    config: WhisperConfig, seed: jax.Array, batch_size: int, num_mel_bins: int, frames: int, attention_mask: Any
) -> tuple[jax.Array, jax.Array]:
    """(time mask (batch, frames), feature mask (batch, mels)) from the core's ``compute_mask_indices``, one numpy
    generator seeded by ``seed`` drawing both, as the PyTorch model does."""

    def masks(seed: np.ndarray, attention_mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(int(seed))
        time_mask = np.zeros((batch_size, frames), bool)
        feature_mask = np.zeros((batch_size, num_mel_bins), bool)
        if config.mask_time_prob > 0:
            time_mask = compute_mask_indices(
                (batch_size, frames),
                config.mask_time_prob,
                config.mask_time_length,
                config.mask_time_min_masks,
                attention_mask=None if attention_mask is None else np.asarray(attention_mask),
                rng=rng,
            )
        if config.mask_feature_prob > 0:
            feature_mask = compute_mask_indices(
                (batch_size, num_mel_bins),
                config.mask_feature_prob,
                config.mask_feature_length,
                config.mask_feature_min_masks,
                rng=rng,
            )
        return time_mask, feature_mask

    shapes = (
        jax.ShapeDtypeStruct((batch_size, frames), jnp.bool_),
        jax.ShapeDtypeStruct((batch_size, num_mel_bins), jnp.bool_),
    )
    return jax.pure_callback(masks, shapes, seed, attention_mask)


# Positional arguments kept static by nn.remat (self counts as 0): output_attentions and deterministic.
_ENCODER_STATIC_ARGNUMS = (3, 4)
_DECODER_STATIC_ARGNUMS = (7, 9)  # the scanned decoder step keeps the same two positions


def _layer_stack(module: nn.Module, layer_class: type[nn.Module], count: int, static_argnums: tuple[int, ...]) -> Any:
    """The layers of an encoder or decoder: a list, or one module scanned ``count`` times; checkpointed when asked."""
    kwargs = {"dtype": module.dtype, "param_dtype": module.param_dtype}
    if module.scan_layers:
        encoder = layer_class is FlaxWhisperEncoderLayer
        step = _EncoderLayerStep if encoder else _DecoderLayerStep
        if module.gradient_checkpointing:
            step = nn.remat(step, static_argnums=static_argnums)
        scanned = nn.scan(
            step,
            variable_axes={"params": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=_ENCODER_SCAN_AXES if encoder else _DECODER_SCAN_AXES,
            length=count,
        )
        layerdrop = module.config.encoder_layerdrop if encoder else module.config.decoder_layerdrop
        return scanned(module.config, module.attn_implementation, **kwargs, layerdrop=layerdrop)
    if module.gradient_checkpointing:
        layer_class = nn.remat(layer_class, static_argnums=static_argnums)
    return [layer_class(module.config, module.attn_implementation, **kwargs) for _ in range(count)]


# Per-layer arguments are sliced along the stacked layer axis (0); the others reach every layer unchanged.
_ENCODER_SCAN_AXES = (0, nn.broadcast, nn.broadcast)
_DECODER_SCAN_AXES = (0, 0, 0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast)


class _EncoderLayerStep(FlaxWhisperEncoderLayer):
    """One step of a scanned encoder stack: the carry is the hidden states; the layer's input and attention weights
    are stacked over the layers."""

    layerdrop: float = 0.0

    def __call__(  # type: ignore[override]
        self, hidden_states: jax.Array, layer_head_mask: jax.Array | None, output_attentions: bool, deterministic: bool
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array | None]]:
        dropped = _layer_dropped(self, self.layerdrop, deterministic)
        layer_outputs = super().__call__(hidden_states, layer_head_mask, output_attentions, deterministic)
        attn_weights = layer_outputs[1]
        skipped = (hidden_states, None if attn_weights is None else jnp.zeros_like(attn_weights))
        new_hidden_states, attn_weights = _unless_dropped(dropped, skipped, layer_outputs)
        return new_hidden_states, (hidden_states, attn_weights)


class _DecoderLayerStep(FlaxWhisperDecoderLayer):
    """One step of a scanned decoder stack: the carry is the hidden states; inputs, weights and the layer cache are
    stacked over the layers."""

    layerdrop: float = 0.0

    def __call__(  # type: ignore[override]
        self,
        hidden_states: jax.Array,
        layer_head_mask: jax.Array | None,
        cross_attn_layer_head_mask: jax.Array | None,
        past_key_value: LayerCache | None,
        attention_mask: jax.Array | None,
        encoder_hidden_states: jax.Array | None,
        output_attentions: bool,
        cache_position: jax.Array | None,
        deterministic: bool,
    ) -> tuple[jax.Array, tuple[Any, ...]]:
        dropped = _layer_dropped(self, self.layerdrop, deterministic)
        layer_outputs = super().__call__(
            hidden_states, attention_mask, encoder_hidden_states, layer_head_mask, cross_attn_layer_head_mask,
            past_key_value, output_attentions, cache_position, deterministic,
        )  # fmt: skip
        skipped = _skipped_decoder_layer(hidden_states, past_key_value, layer_outputs)
        new_hidden_states, self_attn_weights, cross_attn_weights, layer_cache = _unless_dropped(
            dropped, skipped, layer_outputs
        )
        return new_hidden_states, (hidden_states, self_attn_weights, cross_attn_weights, layer_cache)


def _unstack(stacked: jax.Array | None, count: int) -> tuple[Any, ...]:
    return tuple(None if stacked is None else stacked[index] for index in range(count))


def _stack_cache(cache: Cache | None) -> tuple[Any, ...] | None:
    """Per-layer ``(self_k, self_v, cross_k, cross_v)`` tuples as four arrays with a leading layer axis."""
    if cache is None:
        return None
    return tuple(None if cache[0][i] is None else jnp.stack([layer[i] for layer in cache]) for i in range(4))


def _unstack_cache(stacked: tuple[Any, ...], count: int) -> Cache:
    parts = [_unstack(part, count) for part in stacked]
    return tuple((parts[0][i], parts[1][i], parts[2][i], parts[3][i]) for i in range(count))


def _run_scanned_encoder(
    layers: Any, hidden_states: jax.Array, head_mask: jax.Array | None, output_attentions: bool,
    output_hidden_states: bool, deterministic: bool, count: int,
) -> tuple[jax.Array, tuple[jax.Array, ...] | None, tuple[Any, ...] | None]:  # fmt: skip
    hidden_states, (layer_inputs, attentions) = layers(hidden_states, head_mask, output_attentions, deterministic)
    all_hidden_states = _unstack(layer_inputs, count) if output_hidden_states else None
    all_attentions = _unstack(attentions, count) if output_attentions else None
    return hidden_states, all_hidden_states, all_attentions


def _run_scanned_decoder(
    layers: Any, hidden_states: jax.Array, causal_mask: jax.Array | None, encoder_hidden_states: jax.Array | None,
    head_mask: jax.Array | None, cross_attn_head_mask: jax.Array | None, past_key_values: Cache | None,
    output_attentions: bool, output_hidden_states: bool, cache_position: jax.Array | None, deterministic: bool,
    count: int,
) -> tuple[jax.Array, Cache, Any, Any, Any]:  # fmt: skip
    hidden_states, (layer_inputs, self_attentions, cross_attentions, stacked_cache) = layers(
        hidden_states, head_mask, cross_attn_head_mask, _stack_cache(past_key_values), causal_mask,
        encoder_hidden_states, output_attentions, cache_position, deterministic,
    )  # fmt: skip
    all_hidden_states = _unstack(layer_inputs, count) if output_hidden_states else None
    all_self_attentions = _unstack(self_attentions, count) if output_attentions else None
    cross = output_attentions and encoder_hidden_states is not None
    all_cross_attentions = _unstack(cross_attentions, count) if cross else None
    next_cache = _unstack_cache(stacked_cache, count)
    return hidden_states, next_cache, all_hidden_states, all_self_attentions, all_cross_attentions


__all__ = [
    "FlaxWhisperAttention",
    "FlaxWhisperDecoder",
    "FlaxWhisperDecoderLayer",
    "FlaxWhisperEncoder",
    "FlaxWhisperEncoderLayer",
    "FlaxWhisperForAudioClassification",
    "FlaxWhisperForAudioClassificationModule",
    "FlaxWhisperForConditionalGeneration",
    "FlaxWhisperForConditionalGenerationModule",
    "FlaxWhisperModel",
    "FlaxWhisperModule",
    "FlaxWhisperPreTrainedModel",
]
