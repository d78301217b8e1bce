"""``generate`` and ``detect_language`` for the TF Keras model: the ArrayOps adapter and the decoding seam for TF.

The decoding logic is the core's (``whisper_multi.decoding``); this file supplies tensor work only. With
``compiled=True`` (the default here: ``compiled=None`` is ``backends.backend("tf").compiled_by_default``) the encoder and the whole search (prefill, ``tf.while_loop``, rules and beam
bookkeeping) each run as one ``tf.function(jit_compile=True)``, traced and compiled once per plan and input shape and
kept on the model; ``compiled=False`` runs the same loop in Python, with the encoder and each decoder step as a
``tf.function`` graph (no XLA; op-by-op dispatch would cost more than the arithmetic of a step).

Sampling is seeded by ``seed`` (an int); without it the seed is drawn from TF's global generator, so
``tf.random.set_seed`` reproduces a run. Each step's noise is an integer hash of (seed, step, element), the same
eager and compiled (TF's stateless RNG kernels and XLA's differ for the same seed).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import tensorflow as tf

from whisper_multi.decoding.mixin import GenerationMixinCore

_DTYPES = {"int32": tf.int32, "float32": tf.float32, "bool": tf.bool}
_TINY = float(np.finfo(np.float32).tiny)


class TFOps:
    """``ArrayOps`` for TF tensors, eager or inside ``tf.function`` / XLA."""

    def asarray(self, value: Any, dtype: str) -> tf.Tensor:
        if isinstance(value, (tf.Tensor, tf.Variable)):
            return tf.cast(value, _DTYPES[dtype])
        return tf.constant(np.asarray(value, dtype=dtype))

    def arange(self, n: int) -> tf.Tensor:
        return tf.range(n, dtype=tf.int32)

    def where(self, condition: Any, x: Any, y: Any) -> tf.Tensor:
        return tf.where(condition, x, y)

    def max(self, x: tf.Tensor, axis: int) -> tf.Tensor:
        return tf.reduce_max(x, axis=axis)

    def logsumexp(self, x: tf.Tensor, axis: int) -> tf.Tensor:
        return tf.reduce_logsumexp(x, axis=axis)

    def log_softmax(self, x: tf.Tensor, axis: int) -> tf.Tensor:
        return tf.nn.log_softmax(x, axis=axis)

    def take_column(self, x: tf.Tensor, index: Any) -> tf.Tensor:
        return tf.gather(x, index, axis=1)

    def expand_last(self, x: tf.Tensor) -> tf.Tensor:
        return x[..., None]

    def cast(self, x: tf.Tensor, dtype: str) -> tf.Tensor:
        return tf.cast(x, _DTYPES[dtype])

    def full(self, shape: tuple[int, ...], value: Any, dtype: str) -> tf.Tensor:
        return tf.fill(shape, tf.constant(value, _DTYPES[dtype]))

    def reshape(self, x: tf.Tensor, shape: tuple[int, ...]) -> tf.Tensor:
        return tf.reshape(x, shape)

    def concat(self, xs: list[tf.Tensor], axis: int) -> tf.Tensor:
        return tf.concat(xs, axis=axis)

    def exp(self, x: tf.Tensor) -> tf.Tensor:
        return tf.exp(x)

    def log(self, x: tf.Tensor) -> tf.Tensor:
        return tf.math.log(x)

    def sum(self, x: tf.Tensor, axis: int) -> tf.Tensor:
        return tf.reduce_sum(x, axis=axis)

    def cumsum(self, x: tf.Tensor, axis: int) -> tf.Tensor:
        return tf.cumsum(tf.cast(x, tf.int32), axis=axis)

    def argmax(self, x: tf.Tensor, axis: int) -> tf.Tensor:
        return tf.argmax(x, axis=axis, output_type=tf.int32)

    def top_k(self, x: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
        values, indices = tf.math.top_k(x, k=k)
        return values, tf.cast(indices, tf.int32)

    def take_rows(self, x: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
        return tf.gather(x, indices, axis=0)

    def take_along_last(self, x: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
        return tf.gather(x, indices, axis=-1, batch_dims=1)

    def any(self, x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_any(x)

    def all(self, x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_all(x)


class TFSeam:
    """The decoding seam over a ``TFWhisperForConditionalGeneration``."""

    def __init__(self, model: Any):
        self.model = model
        self.ops = TFOps()
        self._graph_step = tf.function(self._decode, reduce_retracing=False)

    def init_cache(self, batch_size: int, max_length: int) -> Any:
        return self.model.init_cache(batch_size, max_length)

    def decode(
        self, tokens: Any, cache: Any, encoder_states: Any, positions: Any, keep: tuple[int, ...] | None = None
    ) -> tuple[Any, Any]:
        # Called eagerly (compiled=False), each step runs as a graph; inside the compiled search it is traced inline.
        step = self._graph_step if tf.executing_eagerly() else self._decode
        return step(tokens, cache, encoder_states, positions, keep)

    def _decode(
        self, tokens: Any, cache: Any, encoder_states: Any, positions: Any, keep: tuple[int, ...] | None
    ) -> tuple[Any, Any]:
        outputs = self.model.model.decoder(
            **self._token_inputs(tokens),
            encoder_hidden_states=encoder_states,
            past_key_values=cache,
            cache_position=positions,
            use_cache=True,
            return_dict=True,
        )
        hidden = outputs.last_hidden_state  # (batch, time, d_model)
        if keep is not None:
            hidden = tf.gather(hidden, list(keep), axis=1)
        return self._logits(hidden), outputs.past_key_values

    def _token_inputs(self, tokens: Any) -> dict[str, Any]:
        """The decoder's token argument (an export may look the embeddings up itself: tf/export.py)."""
        return {"input_ids": tokens}

    def _logits(self, hidden: Any) -> Any:
        """float32 logits of the decoder's last hidden states."""
        return tf.cast(self.model.proj_out(hidden), tf.float32)

    def reorder_cache(self, cache: Any, indices: tf.Tensor) -> Any:
        # Beams never move between audios, so the cross-attention pairs stay as they are.
        return tuple((tf.gather(k, indices), tf.gather(v, indices), ck, cv) for k, v, ck, cv in cache)

    def while_loop(self, cond: Callable[[Any], Any], body: Callable[[Any], Any], state: Any) -> Any:
        if tf.executing_eagerly():
            while bool(cond(state)):
                state = body(state)
            return state
        return tuple(tf.while_loop(lambda *s: cond(s), lambda *s: tuple(body(s)), loop_vars=state))

    def uniform(self, rng: Any, step: Any, shape: tuple[int, ...]) -> tf.Tensor:
        # TF's stateless RNG kernels and XLA's draw different numbers for the same seed, so the noise is a
        # counter-based integer hash of (seed, step, element): the same bits eager and under jit_compile.
        key = _mix(_mix(tf.cast(rng, tf.int64) & _MASK32) ^ (tf.cast(step, tf.int64) & _MASK32))
        count = int(np.prod(shape))
        bits = _mix(_mix(tf.range(count, dtype=tf.int64) ^ key) ^ key)
        noise = (tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) + 0.5) * (1.0 / (1 << 24))  # in (0, 1)
        return tf.reshape(noise, shape)


_MASK32 = (1 << 32) - 1


def _times(x: tf.Tensor, factor: int) -> tf.Tensor:
    """``x * factor mod 2**32`` for 32-bit ``x`` in int64, by 16-bit halves (no overflow)."""
    low, high = x & 0xFFFF, tf.bitwise.right_shift(x, 16)
    return (low * factor + tf.bitwise.left_shift((high * factor) & 0xFFFF, 16)) & _MASK32


def _mix(x: tf.Tensor) -> tf.Tensor:
    """A 32-bit integer hash (xor-shift-multiply rounds) of int64 values below 2**32."""
    x = x ^ tf.bitwise.right_shift(x, 16)
    x = _times(x, 0x7FEB352D)
    x = x ^ tf.bitwise.right_shift(x, 15)
    x = _times(x, 0x846CA68B)
    return x ^ tf.bitwise.right_shift(x, 16)


class TFBackend:
    """What the core's ``generate`` needs from TensorFlow."""

    def __init__(self, model: Any, compiled: bool = True):
        self.model = model
        self.compiled = compiled
        self.seam = TFSeam(model)
        self._functions: dict[Hashable, Callable[..., Any]] = {}

    def encode(self, input_features: Any) -> tf.Tensor:
        features = tf.cast(tf.convert_to_tensor(input_features), self.model.compute_dtype)

        if "encode" not in self._functions:

            def encode(features: tf.Tensor) -> tf.Tensor:
                return self.model.model.encoder(features, return_dict=True).last_hidden_state

            # XLA when compiled, a graph otherwise (the encoder is a fixed sequence of ops: nothing to see eagerly).
            self._functions["encode"] = tf.function(encode, jit_compile=self.compiled, reduce_retracing=False)
        return self._functions["encode"](features)

    def alignment(self, tokens: np.ndarray, encoder_states: Any) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
        """(every layer's cross-attention weights, float32 logits) of one decoder pass over ``tokens``, as a graph
        (eagerly the pass is dominated by Python dispatch), traced once per token count: long-form word timing pads
        its tokens to a few counts."""
        if "alignment" not in self._functions:

            def alignment(tokens: tf.Tensor, states: tf.Tensor) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
                outputs = self.model.model.decoder(
                    tokens, encoder_hidden_states=states, output_attentions=True, return_dict=True
                )
                logits = self.model.proj_out(outputs.last_hidden_state)
                return tuple(outputs.cross_attentions), tf.cast(logits, tf.float32)

            self._functions["alignment"] = tf.function(alignment, reduce_retracing=False)
        tokens = tf.constant(np.asarray(tokens, dtype=np.int32))
        return self._functions["alignment"](tokens, tf.convert_to_tensor(encoder_states))

    def compile(self, function: Callable[..., Any], key: Hashable) -> Callable[..., Any]:
        if not self.compiled:
            return function
        if key not in self._functions:
            self._functions[key] = tf.function(function, jit_compile=True, reduce_retracing=False)
        return self._functions[key]

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.numpy() if hasattr(x, "numpy") else np.asarray(x)

    def to_tensor(self, array: np.ndarray) -> tf.Tensor:
        return tf.constant(array)

    def to_output_tokens(self, array: np.ndarray) -> tf.Tensor:
        return tf.constant(np.asarray(array, dtype=np.int32))


class TFWhisperGenerationMixin(GenerationMixinCore):
    """``generate`` and ``detect_language`` for ``TFWhisperForConditionalGeneration``."""

    decoding_backend = TFBackend

    def generate(
        self,
        input_features: Any,
        generation_config: Any = None,
        *,
        return_dict_in_generate: bool = False,
        output_scores: bool = False,
        seed: int | None = None,
        compiled: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Transcribe or translate one 30-second window of audio per item; the arguments and outputs of the PyTorch model's
        ``generate`` (``whisper_multi.pt.generation``), with ``seed`` for sampling. ``compiled``: True runs the
        search as one XLA function, False as a Python loop of graph steps; None (the default) takes the backend's
        ``compiled_by_default`` (``whisper_multi.backends``), True for TensorFlow."""
        if seed is None:
            seed = int(tf.random.uniform((), maxval=2**31 - 1, dtype=tf.int32))
        return self._generate(
            input_features, tf.constant(seed, tf.int32), compiled, generation_config, return_dict_in_generate,
            output_scores, kwargs,
        )  # fmt: skip
