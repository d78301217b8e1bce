"""Whisper in TensorFlow Keras: encoder, decoder, the speech-to-text model and the audio classifier.

This file mirrors ``pt/modeling_whisper.py`` line for line: same classes in the same order (prefixed ``TF``), same
attribute and local names, same comments; ``forward`` is Keras' ``call``, which also takes ``training``. Layers are
named after the PyTorch modules, so every variable path is the table's TF name (``weights.table.framework_names``)
and loading needs no rename. Framework-only pieces (Keras layers PyTorch has built in, shape helpers, the padding
of the convolutions) are fenced in the section below the imports.

Key/value cache (functional, no hooks): ``past_key_values`` is a tuple with one entry per decoder layer,
``(self_k, self_v, cross_k, cross_v)``, each (batch, heads, time, head_dim). Attention takes its pair and returns the
new pair. Without ``cache_position`` the self-attention pair grows by concatenation (a dynamic cache); with
``cache_position`` the pair is preallocated (``TFWhisperDecoder.init_cache``) and the new keys are written at those
positions (a static cache, fixed shapes for compiled decoding). The cross-attention pair is computed from the audio
when it is None and reused unchanged afterwards.

Graph mode: every branch below is on Python values fixed by the shapes and arguments, so one ``tf.function`` trace
(``jit_compile=True`` included) serves every call with the same shapes; with the static cache a decoding step keeps
its shapes. The labels are shifted into decoder inputs and SpecAugment's spans are drawn with TensorFlow ops, so a
training step compiles whole with XLA. Dropout and SpecAugment draw eagerly from TensorFlow's global seed
(``keras.utils.set_random_seed`` reproduces them, as ``torch.manual_seed`` does) and inside a graph from the global
``tf.random.Generator``: its state is a variable, so ``tf.random.get_global_generator().reset_from_seed(seed)`` before
a compiled step reproduces its draws, where a stateful op would repeat its trace's draws (or, under XLA, keep a state
no seed resets). LayerDrop draws in Python (as PyTorch does): inside ``tf.function`` its draw is fixed by the trace.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import InputError
from whisper_multi.modeling import arguments
from whisper_multi.modeling.utils import IGNORE_INDEX, sinusoids
from whisper_multi.tf.generation import TFWhisperGenerationMixin
from whisper_multi.tf.loading import TFPreTrainedModelMixin
from whisper_multi.tf.outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Cache,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    SequenceClassifierOutput,
)
from whisper_multi.tf.training import KerasTrainingMixin

LayerCache = tuple[Any, Any, Any, Any]  # (self_k, self_v, cross_k, cross_v); the cross pair may be None


def _gelu(x: tf.Tensor) -> tf.Tensor:
    # The erfc form: tf.nn.gelu gives the same float32 values, but its float64 ones are not the exact GELU.
    return 0.5 * x * tf.math.erfc(-x * tf.constant(0.7071067811865476, x.dtype))


def _quick_gelu(x: tf.Tensor) -> tf.Tensor:
    return x * tf.sigmoid(1.702 * x)


def _tanh_gelu(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.gelu(x, approximate=True)


ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "gelu": _gelu,
    "gelu_new": _tanh_gelu,
    "gelu_fast": _tanh_gelu,
    "gelu_pytorch_tanh": _tanh_gelu,
    "quick_gelu": _quick_gelu,
    "relu": tf.nn.relu,
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "tanh": tf.tanh,
}


def _token_id_range(ids: Any) -> tuple[int, int] | None:
    """The smallest and largest token id; None inside a compiled graph, where reading values would break it."""
    if not tf.executing_eagerly() or int(tf.size(ids)) == 0:
        return None
    return int(tf.reduce_min(ids)), int(tf.reduce_max(ids))


def _at_least_float32(x: tf.Tensor) -> tf.Tensor:
    """Half precision in float32 for the softmax and the loss; float32 and float64 as they are."""
    return x if x.dtype in (tf.float32, tf.float64) else tf.cast(x, tf.float32)


# ======================================================================================================================
# Keras only: what PyTorch has built in (nn.Linear, nn.LayerNorm, F.dropout, index_copy, padded convolutions)
# ======================================================================================================================
LAYER_NORM_EPSILON = 1e-5  # PyTorch's default; Keras' is 1e-3


def _linear(units: int, name: str, use_bias: bool = True) -> keras.layers.Dense:
    return keras.layers.Dense(units, use_bias=use_bias, name=name)


def _layer_norm(name: str) -> keras.layers.LayerNormalization:
    return keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=name)


def _normal_like(variable: Any, std: float) -> tf.Tensor:
    """Random normal values of the variable's shape and dtype (float32 and float64 models alike)."""
    return tf.random.normal(variable.shape, stddev=std, dtype=variable.dtype)


def _build(layer: keras.layers.Layer, input_shape: Any = None) -> None:
    """Build ``layer`` once (a nested model is built by its own constructor, then again by its parent's)."""
    if not layer.built:
        layer.build(input_shape)


def _shape(x: tf.Tensor) -> list[Any]:
    """Static sizes where known, dynamic scalars elsewhere (the batch of a traced function may be unknown)."""
    dynamic = tf.shape(x)
    return [dynamic[i] if size is None else size for i, size in enumerate(x.shape)]


def _dropout(x: tf.Tensor, rate: float, training: bool) -> tf.Tensor:
    if not training or rate <= 0:
        return x
    if tf.executing_eagerly():
        return tf.nn.dropout(x, rate=rate)
    # In a graph the seed comes from the global generator's variable, so reseeding it reproduces a compiled step.
    seed = tf.random.get_global_generator().make_seeds(1)[:, 0]
    return tf.nn.experimental.stateless_dropout(x, rate=rate, seed=seed)


def _pad_time(x: tf.Tensor) -> tf.Tensor:
    """One zero frame on each side of (batch, time, channels): PyTorch's Conv1d(padding=1)."""
    return tf.pad(x, [[0, 0], [1, 1], [0, 0]])


def _index_copy(cache: tf.Tensor, positions: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
    """``cache.index_copy(2, positions, values)`` for (batch, heads, time, head_dim): a scatter along time.

    Each written row is addressed by its (batch, head, position): scattering into a time-major transpose instead
    copied the whole cache twice per step (``benchmarks/bench_generation.py`` measures the difference).
    """
    shape = tf.shape(values)  # (batch, heads, new_time, head_dim)
    batch, heads, times = tf.meshgrid(
        tf.range(shape[0]), tf.range(shape[1]), tf.cast(positions, tf.int32), indexing="ij"
    )  # each (batch, heads, new_time)
    indices = tf.stack([batch, heads, times], axis=-1)  # (batch, heads, new_time, 3)
    return tf.tensor_scatter_nd_update(cache, indices, values)


def _cross_entropy(logits: tf.Tensor, labels: tf.Tensor, ignore_index: int | None = None) -> tf.Tensor:
    """PyTorch's F.cross_entropy: the mean over the labels that are not ``ignore_index``."""
    labels = tf.cast(labels, tf.int32)
    kept = tf.ones_like(labels, dtype=tf.bool) if ignore_index is None else tf.not_equal(labels, ignore_index)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.where(kept, labels, 0), logits=logits)
    kept = tf.cast(kept, losses.dtype)
    return tf.reduce_sum(losses * kept) / tf.reduce_sum(kept)


def _shift_tokens_right(labels: tf.Tensor, pad_token_id: int | None, decoder_start_token_id: int) -> tf.Tensor:
    """Decoder inputs for teacher forcing, in the graph: the start token, then the labels less the last, -100 made pad."""
    if pad_token_id is None:
        raise InputError("config.pad_token_id is None; it is needed to replace ignored labels (-100)")
    labels = tf.convert_to_tensor(labels)
    start = tf.fill(tf.stack([tf.shape(labels)[0], 1]), tf.constant(decoder_start_token_id, labels.dtype))
    shifted = tf.concat([start, labels[:, :-1]], axis=1)  # (batch, time)
    return tf.where(tf.equal(shifted, IGNORE_INDEX), tf.constant(pad_token_id, labels.dtype), shifted)


def _recompute(layer: keras.layers.Layer, kwargs: dict[str, Any], training: bool) -> Any:
    """``layer(**kwargs)`` under ``tf.recompute_grad``, which takes and returns tensors only: the rest is closed over."""
    flat_args = tf.nest.flatten(kwargs)
    tensor_slots = [i for i, arg in enumerate(flat_args) if tf.is_tensor(arg)]
    structure: dict[str, Any] = {}

    def run(*tensors: tf.Tensor) -> list[tf.Tensor]:
        flat = list(flat_args)
        for slot, tensor in zip(tensor_slots, tensors):
            flat[slot] = tensor
        outputs = layer(**tf.nest.pack_sequence_as(kwargs, flat), training=training)
        flat_outputs = tf.nest.flatten(outputs)
        structure["outputs"], structure["flat"] = outputs, flat_outputs
        return [output for output in flat_outputs if output is not None]

    results = iter(tf.recompute_grad(run)(*[flat_args[i] for i in tensor_slots]))
    flat_outputs = [None if output is None else next(results) for output in structure["flat"]]
    return tf.nest.pack_sequence_as(structure["outputs"], flat_outputs)


class _PositionalEmbedding(keras.layers.Layer):
    """nn.Embedding for positions: one variable named "weight", as in Transformers' TF checkpoints."""

    def __init__(self, num_positions: int, embedding_dim: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.num_positions = num_positions
        self.embedding_dim = embedding_dim

    def build(self, input_shape: Any = None) -> None:
        self.weight = self.add_weight(
            name="weight", shape=(self.num_positions, self.embedding_dim), initializer="zeros", trainable=self.trainable
        )

    def call(self, position_ids: tf.Tensor) -> tf.Tensor:
        return tf.gather(self.weight, position_ids)


class _TokenEmbedding(keras.layers.Embedding):
    """nn.Embedding with ``padding_idx``: the padding row receives no gradient from the lookup."""

    def __init__(self, input_dim: int, output_dim: int, padding_idx: int | None = None, **kwargs: Any):
        super().__init__(input_dim, output_dim, **kwargs)
        self.padding_idx = padding_idx

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        embedded = super().call(inputs)
        if self.padding_idx is None:
            return embedded
        is_padding = tf.equal(inputs, self.padding_idx)[..., None]  # (batch, time, 1)
        return tf.where(is_padding, tf.stop_gradient(embedded), embedded)


# ======================================================================================================================
# Layers
# ======================================================================================================================
class TFWhisperAttention(keras.layers.Layer):
    """Multi-head attention; self-attention when ``key_value_states`` is None, cross-attention otherwise."""

    def __init__(
        self, embed_dim: int, num_heads: int, dropout: float = 0.0, attn_implementation: str = "sdpa", **kwargs: Any
    ):
        super().__init__(**kwargs)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = dropout
        self.attn_implementation = attn_implementation
        # The key has no bias: it would add the same score to every key of a query, which the softmax cancels.
        self.k_proj = _linear(embed_dim, "k_proj", use_bias=False)
        self.v_proj = _linear(embed_dim, "v_proj")
        self.q_proj = _linear(embed_dim, "q_proj")
        self.out_proj = _linear(embed_dim, "out_proj")

    def build(self, input_shape: Any = None) -> None:
        for projection in (self.k_proj, self.v_proj, self.q_proj, self.out_proj):
            _build(projection, (None, None, self.embed_dim))

    def _split_heads(self, x: tf.Tensor) -> tf.Tensor:
        batch, time = _shape(x)[0], _shape(x)[1]
        x = tf.reshape(x, (batch, time, self.num_heads, self.head_dim))  # (batch, time, heads, head_dim)
        return tf.transpose(x, (0, 2, 1, 3))  # (batch, heads, time, head_dim)

    def call(
        self,
        hidden_states: tf.Tensor,
        key_value_states: tf.Tensor | None = None,
        past_key_value: tuple[tf.Tensor, tf.Tensor] | None = None,
        attention_mask: tf.Tensor | None = None,
        layer_head_mask: tf.Tensor | None = None,
        output_attentions: bool = False,
        cache_position: tf.Tensor | None = None,
        training: bool = False,
    ) -> tuple[tf.Tensor, tf.Tensor | None, tuple[tf.Tensor, tf.Tensor]]:
        """Return (output, attention weights or None, the new (k, v) cache pair)."""
        batch, time = _shape(hidden_states)[0], _shape(hidden_states)[1]
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

        wv, qk = self._attend(q, k, v, attention_mask, layer_head_mask, output_attentions, training)
        wv = tf.transpose(wv, (0, 2, 1, 3))  # (batch, time, heads, head_dim)
        wv = tf.reshape(wv, (batch, time, self.embed_dim))  # (batch, time, d_model)
        return self.out_proj(wv), qk, (k, v)

    def _update_cache(
        self,
        past_key_value: tuple[tf.Tensor, tf.Tensor],
        k: tf.Tensor,
        v: tf.Tensor,
        cache_position: tf.Tensor | None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        past_k, past_v = past_key_value
        if cache_position is None:
            # Dynamic cache: the new positions follow the cached ones.
            return tf.concat([past_k, k], axis=2), tf.concat([past_v, v], axis=2)
        # Static cache: the pair is preallocated; write the new positions in place of zeros.
        return _index_copy(past_k, cache_position, k), _index_copy(past_v, cache_position, v)

    def _attend(
        self,
        q: tf.Tensor,
        k: tf.Tensor,
        v: tf.Tensor,
        attention_mask: tf.Tensor | None,
        layer_head_mask: tf.Tensor | None,
        output_attentions: bool,
        training: bool,
    ) -> tuple[tf.Tensor, tf.Tensor | None]:
        dropout = self.dropout if training else 0.0
        qk = tf.matmul(q, k, transpose_b=True)  # (batch, heads, query_time, key_time)
        if attention_mask is not None:
            qk = qk + attention_mask
        w = tf.cast(tf.nn.softmax(_at_least_float32(qk), axis=-1), q.dtype)
        if layer_head_mask is not None:
            w = w * tf.reshape(tf.cast(layer_head_mask, w.dtype), (1, -1, 1, 1))  # (1, heads, 1, 1)
        w_dropped = _dropout(w, dropout, training)
        return tf.matmul(w_dropped, v), (w if output_attentions else None)


class TFWhisperEncoderLayer(keras.layers.Layer):
    """Pre-norm block: self-attention, then a two-layer feed-forward, each added to its input."""

    def __init__(self, config: WhisperConfig, attn_implementation: str = "sdpa", **kwargs: Any):
        super().__init__(**kwargs)
        self.embed_dim = config.d_model
        self.self_attn = TFWhisperAttention(
            self.embed_dim,
            config.encoder_attention_heads,
            config.attention_dropout,
            attn_implementation,
            name="self_attn",
        )
        self.self_attn_layer_norm = _layer_norm("self_attn_layer_norm")
        self.dropout = config.dropout
        self.activation_fn = ACTIVATIONS[config.activation_function]
        self.activation_dropout = config.activation_dropout
        self.fc1 = _linear(config.encoder_ffn_dim, "fc1")
        self.fc2 = _linear(self.embed_dim, "fc2")
        self.final_layer_norm = _layer_norm("final_layer_norm")
        self.ffn_dim = config.encoder_ffn_dim

    def build(self, input_shape: Any = None) -> None:
        _build(self.self_attn)
        for norm in (self.self_attn_layer_norm, self.final_layer_norm):
            _build(norm, (None, None, self.embed_dim))
        _build(self.fc1, (None, None, self.embed_dim))
        _build(self.fc2, (None, None, self.ffn_dim))

    def call(
        self,
        hidden_states: tf.Tensor,
        layer_head_mask: tf.Tensor | None = None,
        output_attentions: bool = False,
        training: bool = False,
    ) -> tuple[tf.Tensor, tf.Tensor | None]:
        residual = hidden_states
        hidden_states = self.self_attn_layer_norm(hidden_states)
        hidden_states, attn_weights, _ = self.self_attn(
            hidden_states, layer_head_mask=layer_head_mask, output_attentions=output_attentions, training=training
        )
        hidden_states = _dropout(hidden_states, self.dropout, training)
        hidden_states = residual + hidden_states

        residual = hidden_states
        hidden_states = self.final_layer_norm(hidden_states)
        hidden_states = self.activation_fn(self.fc1(hidden_states))
        hidden_states = _dropout(hidden_states, self.activation_dropout, training)
        hidden_states = self.fc2(hidden_states)
        hidden_states = _dropout(hidden_states, self.dropout, training)
        hidden_states = residual + hidden_states

        if hidden_states.dtype == tf.float16:
            # Half precision overflows in long audio; keep values finite.
            limit = np.finfo(np.float16).max - 1000
            hidden_states = tf.clip_by_value(hidden_states, -limit, limit)
        return hidden_states, attn_weights


class TFWhisperDecoderLayer(keras.layers.Layer):
    """Pre-norm block: causal self-attention, cross-attention to the audio, then the feed-forward."""

    def __init__(self, config: WhisperConfig, attn_implementation: str = "sdpa", **kwargs: Any):
        super().__init__(**kwargs)
        self.embed_dim = config.d_model
        self.self_attn = TFWhisperAttention(
            self.embed_dim,
            config.decoder_attention_heads,
            config.attention_dropout,
            attn_implementation,
            name="self_attn",
        )
        self.dropout = config.dropout
        self.activation_fn = ACTIVATIONS[config.activation_function]
        self.activation_dropout = config.activation_dropout
        self.self_attn_layer_norm = _layer_norm("self_attn_layer_norm")
        self.encoder_attn = TFWhisperAttention(
            self.embed_dim,
            config.decoder_attention_heads,
            config.attention_dropout,
            attn_implementation,
            name="encoder_attn",
        )
        self.encoder_attn_layer_norm = _layer_norm("encoder_attn_layer_norm")
        self.fc1 = _linear(config.decoder_ffn_dim, "fc1")
        self.fc2 = _linear(self.embed_dim, "fc2")
        self.final_layer_norm = _layer_norm("final_layer_norm")
        self.ffn_dim = config.decoder_ffn_dim

    def build(self, input_shape: Any = None) -> None:
        _build(self.self_attn)
        _build(self.encoder_attn)
        for norm in (self.self_attn_layer_norm, self.encoder_attn_layer_norm, self.final_layer_norm):
            _build(norm, (None, None, self.embed_dim))
        _build(self.fc1, (None, None, self.embed_dim))
        _build(self.fc2, (None, None, self.ffn_dim))

    def call(
        self,
        hidden_states: tf.Tensor,
        attention_mask: tf.Tensor | None = None,
        encoder_hidden_states: tf.Tensor | None = None,
        layer_head_mask: tf.Tensor | None = None,
        cross_attn_layer_head_mask: tf.Tensor | None = None,
        past_key_value: LayerCache | None = None,
        output_attentions: bool = False,
        cache_position: tf.Tensor | None = None,
        training: bool = False,
    ) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor | None, LayerCache]:
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
            training=training,
        )
        hidden_states = _dropout(hidden_states, self.dropout, training)
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
                training=training,
            )
            hidden_states = _dropout(hidden_states, self.dropout, training)
            hidden_states = residual + hidden_states
        cross_k, cross_v = (None, None) if cross_cache is None else cross_cache

        residual = hidden_states
        hidden_states = self.final_layer_norm(hidden_states)
        hidden_states = self.activation_fn(self.fc1(hidden_states))
        hidden_states = _dropout(hidden_states, self.activation_dropout, training)
        hidden_states = self.fc2(hidden_states)
        hidden_states = _dropout(hidden_states, self.dropout, training)
        hidden_states = residual + hidden_states
        return hidden_states, self_attn_weights, cross_attn_weights, (self_cache[0], self_cache[1], cross_k, cross_v)


# ======================================================================================================================
# Models
# ======================================================================================================================
class TFWhisperPreTrainedModel(TFPreTrainedModelMixin, KerasTrainingMixin, keras.Model):
    """Weight initialisation, loading and saving, gradient checkpointing; shared by every Whisper model. Keras'
    ``fit``/``evaluate`` on the model's own loss and ``.keras`` saving come from ``KerasTrainingMixin``."""

    config_class = WhisperConfig
    main_input_name = "input_features"
    base_model_prefix = "model"
    head = "base"  # the name of this model's parameter set in weights.table

    def __init__(self, config: WhisperConfig, **kwargs: Any):
        super().__init__(**kwargs)
        if not isinstance(config, WhisperConfig):
            raise TypeError(f"{type(self).__name__} expects a WhisperConfig, got {type(config).__name__}")
        self.config = config

    # Keras reserves Model.layers for a model's children; the encoder and decoder keep PyTorch's name for their
    # blocks, every other model answers as Keras does.
    @property
    def layers(self) -> list[keras.layers.Layer]:
        blocks = self.__dict__.get("_blocks")
        return list(blocks) if blocks is not None else super().layers

    @layers.setter
    def layers(self, value: list[keras.layers.Layer]) -> None:
        self._blocks = value

    @property
    def attn_implementation(self) -> str:
        return arguments.attn_implementation(self.config)

    def set_attn_implementation(self, implementation: str) -> None:
        """Accepted for PyTorch compatibility (a PyTorch config may carry either name): Keras has no fused
        attention kernel, so both take the explicit softmax."""
        self.config._attn_implementation = arguments.check_attn_implementation(implementation)
        for module in self._flatten_layers(include_self=False, recursive=True):
            if isinstance(module, TFWhisperAttention):
                module.attn_implementation = implementation

    def _init_weights(self, module: keras.layers.Layer) -> None:
        std = self.config.init_std
        if isinstance(module, (keras.layers.Dense, keras.layers.Conv1D)):
            module.kernel.assign(_normal_like(module.kernel, std))
            if module.bias is not None:
                module.bias.assign(tf.zeros_like(module.bias))
        elif isinstance(module, _TokenEmbedding):
            table = module.embeddings
            table.assign(_normal_like(table, std))
            if module.padding_idx is not None:
                rows = tf.range(table.shape[0])[:, None]  # (vocab, 1)
                table.assign(tf.where(rows == module.padding_idx, tf.zeros((), table.dtype), table))
        elif isinstance(module, _PositionalEmbedding):
            module.weight.assign(_normal_like(module.weight, std))
        elif isinstance(module, keras.layers.LayerNormalization):
            module.gamma.assign(tf.ones_like(module.gamma))
            module.beta.assign(tf.zeros_like(module.beta))
        elif isinstance(module, TFWhisperEncoder):
            # Children are initialised first, so this replaces the random table with the fixed sinusoids.
            table = module.embed_positions.weight
            table.assign(sinusoids(*table.shape).astype(table.dtype))
        elif isinstance(module, TFWhisperForAudioClassification) and module.layer_weights is not None:
            module.layer_weights.assign(tf.fill(module.layer_weights.shape, 1.0 / module.layer_weights.shape[0]))

    def post_init(self) -> None:
        # Keras creates variables when a layer is built; the shapes follow from the config, so build now.
        _build(self)
        for module in reversed(list(self._flatten_layers(include_self=True, recursive=True))):
            self._init_weights(module)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the output projection with the token embedding where the model has both."""

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """Recompute each layer's activations in the backward pass instead of storing them.
        ``gradient_checkpointing_kwargs`` (Transformers' Trainer passes it) is accepted and not needed."""
        for module in self._flatten_layers(include_self=True, recursive=True):
            if isinstance(module, (TFWhisperEncoder, TFWhisperDecoder)):
                module.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        for module in self._flatten_layers(include_self=True, recursive=True):
            if isinstance(module, (TFWhisperEncoder, TFWhisperDecoder)):
                module.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        modules = self._flatten_layers(include_self=True, recursive=True)
        return any(getattr(module, "gradient_checkpointing", False) for module in modules)

    def num_parameters(self, only_trainable: bool = False) -> int:
        variables = self.trainable_weights if only_trainable else self.weights
        unique = {id(v): v for v in variables}
        return sum(int(np.prod(v.shape)) for v in unique.values())

    def _run_layer(self, layer: keras.layers.Layer, *args: Any, training: bool = False) -> Any:
        """Call a layer, through activation checkpointing (``tf.recompute_grad``) when it is on and the model trains."""
        # Keras takes only tensors positionally: pass every argument by its name.
        kwargs = inspect.signature(layer.call).bind(*args).arguments
        if getattr(self, "gradient_checkpointing", False) and training:
            return _recompute(layer, kwargs, training)
        return layer(**kwargs, training=training)

    def _layer_dropped(self, layerdrop: float, training: bool) -> bool:
        """LayerDrop: while training, skip a whole layer with probability ``layerdrop``."""
        return training and layerdrop > 0 and random.random() < layerdrop


class TFWhisperEncoder(TFWhisperPreTrainedModel):
    """Two convolutions over the log-mel frames, fixed sinusoidal positions, then ``encoder_layers`` blocks."""

    def __init__(self, config: WhisperConfig, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.dropout = config.dropout
        self.layerdrop = config.encoder_layerdrop
        self.num_mel_bins = config.num_mel_bins
        self.max_source_positions = config.max_source_positions
        embed_dim = config.d_model
        self.conv1 = keras.layers.Conv1D(embed_dim, kernel_size=3, name="conv1")
        self.conv2 = keras.layers.Conv1D(embed_dim, kernel_size=3, strides=2, name="conv2")
        self.embed_positions = _PositionalEmbedding(self.max_source_positions, embed_dim, name="embed_positions")
        self.embed_positions.trainable = False  # fixed sinusoids, never trained
        self.layers = [
            TFWhisperEncoderLayer(config, self.attn_implementation, name=f"layers.{index}")
            for index in range(config.encoder_layers)
        ]
        self.layer_norm = _layer_norm("layer_norm")
        self.gradient_checkpointing = False

    def build(self, input_shape: Any = None) -> None:
        embed_dim = self.config.d_model
        _build(self.conv1, (None, None, self.num_mel_bins))
        _build(self.conv2, (None, None, embed_dim))
        _build(self.embed_positions)
        self.embed_positions.weight.assign(sinusoids(self.max_source_positions, embed_dim))
        for layer in self.layers:
            _build(layer)
        _build(self.layer_norm, (None, None, embed_dim))

    def _freeze_parameters(self) -> None:
        self.trainable = False

    def call(
        self,
        input_features: tf.Tensor,
        attention_mask: tf.Tensor | None = None,
        head_mask: tf.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        training: bool = False,
    ) -> BaseModelOutput | tuple[Any, ...]:
        """``attention_mask`` is accepted for compatibility and unused: Whisper always sees a whole 30-second window."""
        resolved = arguments.encoder_call(
            self.config, input_features, head_mask, output_attentions, output_hidden_states, return_dict
        )
        input_features = tf.cast(input_features, self.compute_dtype)

        # Keras convolutions are channels-last: (batch, n_mels, frames) -> (batch, frames, n_mels), once, here.
        input_features = tf.transpose(input_features, (0, 2, 1))
        hidden_states = _gelu(self.conv1(_pad_time(input_features)))
        hidden_states = _gelu(self.conv2(_pad_time(hidden_states)))  # (batch, positions, d_model)
        hidden_states = hidden_states + tf.cast(self.embed_positions.weight, hidden_states.dtype)
        hidden_states = _dropout(hidden_states, self.dropout, training)

        all_hidden_states: tuple[tf.Tensor, ...] | None = () if resolved.output_hidden_states else None
        all_attentions: tuple[Any, ...] | None = () if resolved.output_attentions else None
        for index, layer in enumerate(self.layers):
            if all_hidden_states is not None:
                all_hidden_states += (hidden_states,)
            attn_weights = None
            if not self._layer_dropped(self.layerdrop, training):
                layer_head_mask = None if head_mask is None else head_mask[index]
                hidden_states, attn_weights = self._run_layer(
                    layer, hidden_states, layer_head_mask, resolved.output_attentions, training=training
                )
            if all_attentions is not None:
                all_attentions += (attn_weights,)
        hidden_states = self.layer_norm(hidden_states)
        if all_hidden_states is not None:
            all_hidden_states += (hidden_states,)

        output = BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, attentions=all_attentions
        )
        return output if resolved.return_dict else output.to_tuple()


class TFWhisperDecoder(TFWhisperPreTrainedModel):
    """Token and learned position embeddings, then ``decoder_layers`` blocks attending to the encoder output."""

    def __init__(self, config: WhisperConfig, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.dropout = config.dropout
        self.layerdrop = config.decoder_layerdrop
        self.padding_idx = config.pad_token_id
        self.max_target_positions = config.max_target_positions
        self.embed_tokens = _TokenEmbedding(config.vocab_size, config.d_model, self.padding_idx, name="embed_tokens")
        self.embed_positions = _PositionalEmbedding(self.max_target_positions, config.d_model, name="embed_positions")
        self.layers = [
            TFWhisperDecoderLayer(config, self.attn_implementation, name=f"layers.{index}")
            for index in range(config.decoder_layers)
        ]
        self.layer_norm = _layer_norm("layer_norm")
        self.gradient_checkpointing = False

    def build(self, input_shape: Any = None) -> None:
        _build(self.embed_tokens, (None, None))
        _build(self.embed_positions)
        for layer in self.layers:
            _build(layer)
        _build(self.layer_norm, (None, None, self.config.d_model))

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: keras.layers.Embedding) -> None:
        self.embed_tokens = value

    def init_cache(self, batch_size: int, max_length: int | None = None) -> Cache:
        """A static cache: zeros for ``max_length`` self-attention positions, cross pairs filled at the first step.

        Decode with it by passing ``cache_position`` (the positions being written) at every step.
        """
        shape = arguments.static_cache_shape(self.config, batch_size, max_length)  # (batch, heads, time, head_dim)
        dtype = self.compute_dtype
        return tuple(
            (tf.zeros(shape, dtype), tf.zeros(shape, dtype), None, None)  # type: ignore[misc]
            for _ in self.layers
        )

    def _causal_mask(
        self,
        attention_mask: tf.Tensor | None,
        query_positions: tf.Tensor,
        key_length: int,
        batch_size: Any,
        dtype: tf.DType,
        static: bool,
    ) -> tf.Tensor:
        """Additive mask (batch or 1, 1, query_time, key_time): 0 where a query may look, the dtype's minimum else."""
        key_positions = tf.range(key_length, dtype=tf.int32)
        allowed = key_positions[None, :] <= tf.cast(query_positions, tf.int32)[:, None]  # (query_time, key_time)
        allowed = allowed[None, None]  # (1, 1, query_time, key_time)
        if attention_mask is not None:
            arguments.check_decoder_attention_mask(attention_mask, batch_size, key_length, static)
            # A static cache is longer than the positions written so far: the rest is hidden by causality.
            padding = tf.ones((batch_size, key_length - attention_mask.shape[-1]), dtype=attention_mask.dtype)
            keys_kept = tf.cast(tf.concat([attention_mask, padding], axis=-1), tf.bool)
            allowed = allowed & keys_kept[:, None, None, :]  # (batch, 1, query_time, key_time)
        zero = tf.zeros((), dtype=dtype)
        minimum = tf.constant(dtype.min, dtype=dtype)
        return tf.where(allowed, zero, minimum)

    def call(
        self,
        input_ids: tf.Tensor | None = None,
        attention_mask: tf.Tensor | None = None,
        encoder_hidden_states: tf.Tensor | None = None,
        head_mask: tf.Tensor | None = None,
        cross_attn_head_mask: tf.Tensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: tf.Tensor | None = None,
        position_ids: tf.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: tf.Tensor | None = None,
        training: bool = False,
    ) -> BaseModelOutputWithPastAndCrossAttentions | tuple[Any, ...]:
        resolved = arguments.decoder_call(
            self.config, input_ids, inputs_embeds, head_mask, cross_attn_head_mask, past_key_values, cache_position,
            (use_cache, output_attentions, output_hidden_states, return_dict), _token_id_range,
            checkpointing=self.gradient_checkpointing and training,
        )  # fmt: skip
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        batch_size, length = _shape(inputs_embeds)[0], inputs_embeds.shape[1]

        if resolved.static:
            # Static cache: the keys span the whole preallocated length; the written positions are given.
            query_positions = tf.cast(cache_position, tf.int32)
        else:
            query_positions = tf.range(resolved.past_length, resolved.key_length, dtype=tf.int32)
        if position_ids is None:
            position_ids = query_positions[None, :]  # (1, time)

        hidden_states = inputs_embeds + tf.cast(self.embed_positions(position_ids), inputs_embeds.dtype)
        hidden_states = _dropout(hidden_states, self.dropout, training)
        if length == 1 and attention_mask is None and cache_position is None:
            causal_mask = None  # one new token may look at every cached one
        else:
            causal_mask = self._causal_mask(
                attention_mask, query_positions, resolved.key_length, batch_size, hidden_states.dtype, resolved.static
            )

        all_hidden_states: tuple[tf.Tensor, ...] | None = () if resolved.output_hidden_states else None
        all_self_attentions: tuple[Any, ...] | None = () if resolved.output_attentions else None
        all_cross_attentions: tuple[Any, ...] | None = (
            () if resolved.output_attentions and encoder_hidden_states is not None else None
        )
        next_cache: list[LayerCache] = []
        for index, layer in enumerate(self.layers):
            if all_hidden_states is not None:
                all_hidden_states += (hidden_states,)
            past_key_value = None if past_key_values is None else past_key_values[index]
            if self._layer_dropped(self.layerdrop, training):
                next_cache.append(past_key_value)  # type: ignore[arg-type]
                continue
            hidden_states, self_attn_weights, cross_attn_weights, layer_cache = self._run_layer(
                layer,
                hidden_states,
                causal_mask,
                encoder_hidden_states,
                None if head_mask is None else head_mask[index],
                None if cross_attn_head_mask is None else cross_attn_head_mask[index],
                past_key_value,
                resolved.output_attentions,
                cache_position,
                training=training,
            )
            next_cache.append(layer_cache)
            if all_self_attentions is not None:
                all_self_attentions += (self_attn_weights,)
            if all_cross_attentions is not None:
                all_cross_attentions += (cross_attn_weights,)
        hidden_states = self.layer_norm(hidden_states)
        if all_hidden_states is not None:
            all_hidden_states += (hidden_states,)

        output = BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states,
            past_key_values=tuple(next_cache) if resolved.use_cache else None,
            hidden_states=all_hidden_states,
            attentions=all_self_attentions,
            cross_attentions=all_cross_attentions,
        )
        return output if resolved.return_dict else output.to_tuple()


class TFWhisperModel(TFWhisperPreTrainedModel):
    """Encoder and decoder, returning the decoder's last hidden state (no vocabulary projection)."""

    head = "base"

    def __init__(self, config: WhisperConfig, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.encoder = TFWhisperEncoder(config, name="encoder")
        self.decoder = TFWhisperDecoder(config, name="decoder")
        self.post_init()

    def build(self, input_shape: Any = None) -> None:
        _build(self.encoder)
        _build(self.decoder)

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.decoder.embed_tokens

    def set_input_embeddings(self, value: keras.layers.Embedding) -> None:
        self.decoder.embed_tokens = value

    def get_encoder(self) -> TFWhisperEncoder:
        return self.encoder

    def get_decoder(self) -> TFWhisperDecoder:
        return self.decoder

    def freeze_encoder(self) -> None:
        """Stop training the encoder (e.g. to fine-tune only the decoder)."""
        self.encoder._freeze_parameters()

    def _mask_input_features(
        self, input_features: tf.Tensor, attention_mask: tf.Tensor | None = None, training: bool = False
    ) -> tf.Tensor:
        """SpecAugment: while training, zero random spans of frames and of mel bins.

        The spans follow the core's ``compute_mask_indices`` rule, drawn with TensorFlow ops so that a compiled
        train step keeps them in the graph (XLA included).
        """
        if not self.config.apply_spec_augment or not training:
            return input_features
        batch_size, num_mel_bins, frames = _shape(input_features)
        # Eagerly TensorFlow's global seed draws, which keras.utils.set_random_seed resets; in a graph the global
        # generator, whose variable state a compiled train step reseeds (see the module docstring).
        uniform = tf.random.uniform if tf.executing_eagerly() else tf.random.get_global_generator().uniform

        def span_mask(size: int, mask_prob: float, mask_length: int, min_masks: int, lengths: tf.Tensor) -> tf.Tensor:
            """(batch, size) bool: ``int(mask_prob * length / mask_length + u)`` spans per row (``u`` one uniform
            draw for the batch), at least ``min_masks``, as many as fit; distinct random starts below
            ``length - mask_length + 1``, so every span ends inside the row's ``length``."""
            if not 1 <= mask_length <= size:
                raise InputError(
                    f"mask_length={mask_length} must be at least 1 and at most the length of the axis it masks "
                    f"({size}); change mask_time_length / mask_feature_length in the config"
                )
            rounding = uniform(())
            lengths = tf.cast(lengths, tf.int32)  # (batch,)
            num_starts = tf.maximum(lengths - (mask_length - 1), 0)
            wanted = tf.cast(mask_prob * tf.cast(lengths, tf.float32) / mask_length + rounding, tf.int32)
            num_spans = tf.minimum(tf.minimum(tf.maximum(wanted, min_masks), size // mask_length), num_starts)
            # The num_spans largest of iid uniforms over the allowed starts: a uniform draw without replacement.
            positions = tf.range(size)[None, :]  # (1, size)
            noise = tf.where(positions < num_starts[:, None], uniform(tf.stack([batch_size, size])), -1.0)
            rank = tf.argsort(tf.argsort(noise, axis=-1, direction="DESCENDING", stable=True), axis=-1, stable=True)
            starts = tf.cast(rank < num_spans[:, None], tf.int32)  # (batch, size)
            # A position is masked when a span starts at most mask_length - 1 positions before it.
            started = tf.cumsum(starts, axis=-1)
            started_before = tf.pad(started, [[0, 0], [mask_length, 0]])[:, :size]
            return started - started_before > 0

        if self.config.mask_time_prob > 0:
            if attention_mask is None:
                lengths = tf.fill(tf.reshape(batch_size, (1,)), frames)
            else:
                lengths = tf.reduce_sum(tf.cast(attention_mask, tf.int32), axis=-1)
            time_mask = span_mask(
                frames,
                self.config.mask_time_prob,
                self.config.mask_time_length,
                self.config.mask_time_min_masks,
                lengths,
            )
            time_mask = time_mask[:, None, :]  # (batch, 1, frames)
            input_features = tf.where(time_mask, tf.zeros_like(input_features), input_features)
        if self.config.mask_feature_prob > 0:
            feature_mask = span_mask(
                num_mel_bins,
                self.config.mask_feature_prob,
                self.config.mask_feature_length,
                self.config.mask_feature_min_masks,
                tf.fill(tf.reshape(batch_size, (1,)), num_mel_bins),
            )
            feature_mask = feature_mask[:, :, None]  # (batch, mels, 1)
            input_features = tf.where(feature_mask, tf.zeros_like(input_features), input_features)
        return input_features

    def call(
        self,
        input_features: tf.Tensor | None = None,
        attention_mask: tf.Tensor | None = None,
        decoder_input_ids: tf.Tensor | None = None,
        decoder_attention_mask: tf.Tensor | None = None,
        head_mask: tf.Tensor | None = None,
        decoder_head_mask: tf.Tensor | None = None,
        cross_attn_head_mask: tf.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple[tf.Tensor, ...] | None = None,
        past_key_values: Cache | None = None,
        decoder_inputs_embeds: tf.Tensor | None = None,
        decoder_position_ids: tf.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: tf.Tensor | None = None,
        training: bool = False,
    ) -> Seq2SeqModelOutput | tuple[Any, ...]:
        return_dict = arguments.config_flag(self.config, "use_return_dict", return_dict, True)
        if encoder_outputs is None:
            arguments.check_encoder_inputs(input_features, self.config)
            input_features = self._mask_input_features(input_features, attention_mask, training)
            encoder_outputs = self.encoder(
                input_features,
                head_mask=head_mask,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
                training=training,
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
            training=training,
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


class TFWhisperForConditionalGeneration(TFWhisperGenerationMixin, TFWhisperPreTrainedModel):
    """Speech to text: ``TFWhisperModel`` plus the vocabulary projection ``proj_out``, tied to the token embedding."""

    head = "conditional_generation"

    def __init__(self, config: WhisperConfig, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.model = TFWhisperModel(config, name="model")
        self.max_target_positions = config.max_target_positions
        self.post_init()

    def build(self, input_shape: Any = None) -> None:
        _build(self.model)

    def proj_out(self, hidden_states: tf.Tensor) -> tf.Tensor:
        """The vocabulary projection: Keras stores no separate weight, it is the token embedding (tied)."""
        embeddings = tf.cast(self.model.decoder.embed_tokens.embeddings, hidden_states.dtype)
        return tf.matmul(hidden_states, embeddings, transpose_b=True)

    def tie_weights(self) -> None:
        """Nothing to share: ``proj_out`` reads the token embedding itself."""

    def get_encoder(self) -> TFWhisperEncoder:
        return self.model.encoder

    def get_decoder(self) -> TFWhisperDecoder:
        return self.model.decoder

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.model.decoder.embed_tokens

    def get_output_embeddings(self) -> keras.layers.Embedding:
        return self.model.decoder.embed_tokens

    def freeze_encoder(self) -> None:
        """Stop training the encoder (e.g. to fine-tune only the decoder)."""
        self.model.encoder._freeze_parameters()

    def init_cache(self, batch_size: int, max_length: int | None = None) -> Cache:
        """A static cache for compiled decoding; see ``TFWhisperDecoder.init_cache``."""
        return self.model.decoder.init_cache(batch_size, max_length)

    def call(
        self,
        input_features: tf.Tensor | None = None,
        attention_mask: tf.Tensor | None = None,
        decoder_input_ids: tf.Tensor | None = None,
        decoder_attention_mask: tf.Tensor | None = None,
        head_mask: tf.Tensor | None = None,
        decoder_head_mask: tf.Tensor | None = None,
        cross_attn_head_mask: tf.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple[tf.Tensor, ...] | None = None,
        past_key_values: Cache | None = None,
        decoder_inputs_embeds: tf.Tensor | None = None,
        decoder_position_ids: tf.Tensor | None = None,
        labels: tf.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: tf.Tensor | None = None,
        training: bool = False,
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
            training=training,
        )
        logits = self.proj_out(outputs.last_hidden_state)

        loss = None
        if labels is not None:
            # Mean over the positions whose label is not -100.
            flat_logits = tf.reshape(_at_least_float32(logits), (-1, logits.shape[-1]))  # (batch * time, vocab)
            loss = _cross_entropy(flat_logits, tf.reshape(labels, (-1,)), ignore_index=-100)  # labels: (batch * time,)

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


class TFWhisperForAudioClassification(TFWhisperPreTrainedModel):
    """Encoder, then a projection, a mean over time and a linear classifier (e.g. language identification)."""

    head = "audio_classification"

    def __init__(self, config: WhisperConfig, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.encoder = TFWhisperEncoder(config, name="encoder")
        self.num_layers = config.num_hidden_layers + 1  # the embeddings and every layer's output
        self.layer_weights = None
        self.projector = _linear(config.classifier_proj_size, "projector")
        self.classifier = _linear(config.num_labels, "classifier")
        self.post_init()

    def build(self, input_shape: Any = None) -> None:
        _build(self.encoder)
        if self.config.use_weighted_layer_sum:
            self.layer_weights = self.add_weight(name="layer_weights", shape=(self.num_layers,), initializer="ones")
        _build(self.projector, (None, None, self.config.d_model))
        _build(self.classifier, (None, self.config.classifier_proj_size))

    def get_encoder(self) -> TFWhisperEncoder:
        return self.encoder

    def freeze_encoder(self) -> None:
        """Stop training the encoder (train only the projector and the classifier)."""
        self.encoder._freeze_parameters()

    def call(
        self,
        input_features: tf.Tensor | None = None,
        head_mask: tf.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple[tf.Tensor, ...] | None = None,
        labels: tf.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        training: bool = False,
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
                training=training,
            )
        else:
            encoder_outputs = arguments.as_encoder_output(encoder_outputs, BaseModelOutput)

        if self.layer_weights is not None:
            hidden_states = tf.stack(encoder_outputs.hidden_states, axis=1)  # (batch, layers, positions, d_model)
            norm_weights = tf.nn.softmax(tf.cast(self.layer_weights, hidden_states.dtype), axis=-1)
            norm_weights = tf.reshape(norm_weights, (-1, 1, 1))  # (layers, 1, 1)
            hidden_states = tf.reduce_sum(hidden_states * norm_weights, axis=1)  # (batch, positions, d_model)
        else:
            hidden_states = encoder_outputs.last_hidden_state
        hidden_states = self.projector(hidden_states)
        pooled_output = tf.reduce_mean(hidden_states, axis=1)
        logits = self.classifier(pooled_output)

        loss = None
        if labels is not None:
            flat_logits = tf.reshape(_at_least_float32(logits), (-1, self.config.num_labels))  # (batch, num_labels)
            loss = _cross_entropy(flat_logits, tf.reshape(labels, (-1,)))  # labels: (batch,)

        output = SequenceClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "TFWhisperAttention",
    "TFWhisperDecoder",
    "TFWhisperDecoderLayer",
    "TFWhisperEncoder",
    "TFWhisperEncoderLayer",
    "TFWhisperForAudioClassification",
    "TFWhisperForConditionalGeneration",
    "TFWhisperModel",
    "TFWhisperPreTrainedModel",
]
