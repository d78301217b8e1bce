"""``generate`` and ``detect_language`` for the TF Keras model: the ArrayOps adapter and the decoding seam for TF.

The decoding logic is the core's (``whisper_multi.decoding``); this file supplies tensor work only. With
``compiled=True`` (the default) the encoder and the whole search (prefill, ``tf.while_loop``, rules and beam
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

from whisper_multi.decoding import generate as core
from whisper_multi.decoding.outputs import LanguageDetectionOutput
from whisper_multi.longform.timing import stack_heads

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
            input_ids=tokens,
            encoder_hidden_states=encoder_states,
            past_key_values=cache,
            cache_position=positions,
            use_cache=True,
            return_dict=True,
        )
        hidden = outputs.last_hidden_state  # (batch, time, d_model)
        if keep is not None:
            hidden = tf.gather(hidden, list(keep), axis=1)
        return tf.cast(self.model.proj_out(hidden), tf.float32), outputs.past_key_values

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

    def alignment(self, tokens: tf.Tensor, encoder_states: tf.Tensor) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
        """(every layer's cross-attention weights, float32 logits) of one decoder pass over ``tokens``, as a graph
        (eagerly the pass costs 0.2 s a window in Python dispatch), traced once per token count: long-form word
        timing pads its tokens to a few counts."""
        if "alignment" not in self._functions:

            def alignment(tokens: tf.Tensor, states: tf.Tensor) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
                outputs = self.model.model.decoder(
                    tokens, encoder_hidden_states=states, output_attentions=True, return_dict=True
                )
                logits = self.model.proj_out(outputs.last_hidden_state)
                return tuple(outputs.cross_attentions), tf.cast(logits, tf.float32)

            self._functions["alignment"] = tf.function(alignment, reduce_retracing=False)
        return self._functions["alignment"](tokens, encoder_states)

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


def _backend(model: Any, compiled: bool) -> TFBackend:
    return core.cached_backend(model, compiled, TFBackend)


class TFWhisperGenerationMixin:
    """``generate`` and ``detect_language`` for ``TFWhisperForConditionalGeneration``."""

    def generate(
        self,
        input_features: Any,
        generation_config: Any = None,
        *,
        return_dict_in_generate: bool = False,
        output_scores: bool = False,
        seed: int | None = None,
        compiled: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Transcribe or translate up to 30 s of audio per item; the arguments and outputs of the PyTorch model's
        ``generate`` (``whisper_multi.pt.generation``), with ``seed`` for sampling."""
        if seed is None:
            seed = int(tf.random.uniform((), maxval=2**31 - 1, dtype=tf.int32))
        return core.generate(
            _backend(self, compiled),
            self,
            input_features,
            rng=tf.constant(seed, tf.int32),
            return_dict_in_generate=return_dict_in_generate,
            output_scores=output_scores,
            generation_config=generation_config,
            **kwargs,
        )

    def detect_language(self, input_features: Any, compiled: bool = True) -> LanguageDetectionOutput:
        """The most likely language of each item and every language's probability (see the PyTorch model's)."""
        return core.detect_language(_backend(self, compiled), self.config, input_features)

    def encode_audio(self, input_features: Any, compiled: bool = True) -> tf.Tensor:
        """The encoder's last hidden state (batch, positions, d_model), computed as ``generate`` computes it: pass it
        as ``generate(encoder_outputs=...)`` and ``alignment_attention(encoder_states=...)`` to encode once."""
        return _backend(self, compiled).encode(np.asarray(input_features))

    def alignment_attention(
        self,
        input_features: Any,
        decoder_input_ids: Any,
        alignment_heads: list[tuple[int, int]],
        encoder_states: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """For word timing: the cross-attention weights of ``alignment_heads`` and the logits of one forward pass,
        in numpy (see the PyTorch model's)."""
        backend = _backend(self, False)
        if encoder_states is None:
            encoder_states = self.encode_audio(input_features)
        tokens = tf.constant(np.asarray(decoder_input_ids, dtype=np.int32))
        cross_attentions, logits = backend.alignment(tokens, tf.convert_to_tensor(encoder_states))
        return stack_heads(cross_attentions, alignment_heads, backend.to_numpy), backend.to_numpy(logits)
