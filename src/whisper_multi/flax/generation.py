"""``generate`` and ``detect_language`` for the Flax model: the ArrayOps adapter and the decoding seam for JAX.

The decoding logic is the core's (``whisper_multi.decoding``); this file supplies tensor work only. With
``compiled=True`` (the default) the whole search (prefill, ``lax.while_loop``, rules and beam bookkeeping) is one
``jax.jit`` function of the parameters, compiled once per plan and input shape and kept on the model; the encoder is
``jit_encode``. ``compiled=False`` runs the same loop in Python, one ``jit_decode_step`` call per token.

Sampling is seeded by ``prng_key`` (a ``jax.random`` key, Transformers' Flax argument) or ``seed`` (an int);
without either the key is ``jax.random.PRNGKey(0)``, as in Transformers. Each step's noise is drawn from the key
folded with the step, the same eager and compiled.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..decoding import generate as core
from ..decoding.outputs import LanguageDetectionOutput

_TINY = float(np.finfo(np.float32).tiny)


class JaxOps:
    """``ArrayOps`` for jax arrays, eager or traced."""

    def asarray(self, value: Any, dtype: str) -> jax.Array:
        return jnp.asarray(value, dtype=dtype)

    def arange(self, n: int) -> jax.Array:
        return jnp.arange(n, dtype=jnp.int32)

    def where(self, condition: Any, x: Any, y: Any) -> jax.Array:
        return jnp.where(condition, x, y)

    def max(self, x: jax.Array, axis: int) -> jax.Array:
        return jnp.max(x, axis=axis)

    def logsumexp(self, x: jax.Array, axis: int) -> jax.Array:
        return jax.nn.logsumexp(x, axis=axis)

    def log_softmax(self, x: jax.Array, axis: int) -> jax.Array:
        return jax.nn.log_softmax(x, axis=axis)

    def take_column(self, x: jax.Array, index: Any) -> jax.Array:
        return jnp.take(x, index, axis=1)

    def expand_last(self, x: jax.Array) -> jax.Array:
        return x[..., None]

    def cast(self, x: jax.Array, dtype: str) -> jax.Array:
        return jnp.asarray(x).astype(dtype)

    def full(self, shape: tuple[int, ...], value: Any, dtype: str) -> jax.Array:
        return jnp.full(shape, value, dtype=dtype)

    def reshape(self, x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return jnp.reshape(x, shape)

    def concat(self, xs: list[jax.Array], axis: int) -> jax.Array:
        return jnp.concatenate(xs, axis=axis)

    def exp(self, x: jax.Array) -> jax.Array:
        return jnp.exp(x)

    def log(self, x: jax.Array) -> jax.Array:
        return jnp.log(x)

    def sum(self, x: jax.Array, axis: int) -> jax.Array:
        return jnp.sum(x, axis=axis, dtype=x.dtype)

    def cumsum(self, x: jax.Array, axis: int) -> jax.Array:
        return jnp.cumsum(x, axis=axis, dtype=jnp.int32)

    def argmax(self, x: jax.Array, axis: int) -> jax.Array:
        return jnp.argmax(x, axis=axis).astype(jnp.int32)

    def top_k(self, x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
        values, indices = jax.lax.top_k(x, k)
        return values, indices.astype(jnp.int32)

    def take_rows(self, x: jax.Array, indices: jax.Array) -> jax.Array:
        return jnp.take(x, indices, axis=0)

    def take_along_last(self, x: jax.Array, indices: jax.Array) -> jax.Array:
        return jnp.take_along_axis(x, indices, axis=-1)

    def any(self, x: jax.Array) -> jax.Array:
        return jnp.any(x)

    def all(self, x: jax.Array) -> jax.Array:
        return jnp.all(x)


class JaxSeam:
    """The decoding seam over a ``FlaxWhisperForConditionalGeneration``.

    Inside a compiled search the parameters are an argument of the jitted function (``params`` holds the traced
    ones while it is traced); eagerly each step is the model's ``jit_decode_step``.
    """

    def __init__(self, model: Any):
        self.model = model
        self.ops = JaxOps()
        self.params: Any = None  # the traced parameters, while a compiled search is traced

    def init_cache(self, batch_size: int, max_length: int) -> Any:
        return self.model.init_cache(batch_size, max_length)

    def decode(self, tokens: Any, cache: Any, encoder_states: Any, positions: Any) -> tuple[Any, Any]:
        if self.params is None:
            logits, cache = self.model.jit_decode_step(self.model.params, tokens, cache, encoder_states, positions)
            return logits.astype(jnp.float32), cache
        module = self.model.module
        outputs = module.apply(
            {"params": self.params},
            tokens,
            encoder_outputs=encoder_states,
            past_key_values=cache,
            cache_position=positions,
            method=module.decode,
        )
        return outputs.logits.astype(jnp.float32), outputs.past_key_values

    def reorder_cache(self, cache: Any, indices: jax.Array) -> Any:
        # Beams never move between audios, so the cross-attention pairs stay as they are.
        return tuple((jnp.take(k, indices, axis=0), jnp.take(v, indices, axis=0), ck, cv) for k, v, ck, cv in cache)

    def while_loop(self, cond: Callable[[Any], Any], body: Callable[[Any], Any], state: Any) -> Any:
        if self.params is None:
            while bool(cond(state)):
                state = body(state)
            return state
        return jax.lax.while_loop(cond, body, state)

    def uniform(self, rng: Any, step: Any, shape: tuple[int, ...]) -> jax.Array:
        key = jax.random.fold_in(rng, jnp.asarray(step, jnp.uint32))
        return jax.random.uniform(key, shape, jnp.float32, minval=_TINY, maxval=1.0)


class JaxBackend:
    """What the core's ``generate`` needs from JAX."""

    def __init__(self, model: Any, compiled: bool = True):
        self.model = model
        self.compiled = compiled
        self.seam = JaxSeam(model)
        self._functions: dict[Hashable, Callable[..., Any]] = {}

    def encode(self, input_features: Any) -> jax.Array:
        features = jnp.asarray(np.asarray(input_features), dtype=self.model.dtype)
        return self.model.jit_encode(self.model.params, features)

    def compile(self, function: Callable[..., Any], key: Hashable) -> Callable[..., Any]:
        if not self.compiled:
            return function
        if key not in self._functions:

            def with_params(params: Any, *args: Any) -> Any:
                self.seam.params = params
                try:
                    return function(*args)
                finally:
                    self.seam.params = None

            self._functions[key] = jax.jit(with_params)
        jitted = self._functions[key]
        return lambda *args: jitted(self.model.params, *args)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def to_tensor(self, array: np.ndarray) -> jax.Array:
        return jnp.asarray(array)

    def to_output_tokens(self, array: np.ndarray) -> jax.Array:
        return jnp.asarray(np.asarray(array, dtype=np.int32))


_BACKENDS: weakref.WeakKeyDictionary[Any, dict[bool, JaxBackend]] = weakref.WeakKeyDictionary()


def _backend(model: Any, compiled: bool) -> JaxBackend:
    backends = _BACKENDS.setdefault(model, {})
    if compiled not in backends:
        backends[compiled] = JaxBackend(model, compiled)
    return backends[compiled]


class FlaxWhisperGenerationMixin:
    """``generate`` and ``detect_language`` for ``FlaxWhisperForConditionalGeneration``."""

    def generate(
        self,
        input_features: Any,
        generation_config: Any = None,
        *,
        return_dict_in_generate: bool = False,
        output_scores: bool = False,
        prng_key: jax.Array | None = None,
        seed: int | None = None,
        compiled: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Transcribe or translate up to 30 s of audio per item; the arguments and outputs of the PyTorch model's
        ``generate`` (``whisper_multi.pt.generation``), with ``prng_key`` or ``seed`` for sampling."""
        if prng_key is None:
            prng_key = jax.random.PRNGKey(0 if seed is None else seed)
        return core.generate(
            _backend(self, compiled),
            self,
            input_features,
            rng=prng_key,
            return_dict_in_generate=return_dict_in_generate,
            output_scores=output_scores,
            generation_config=generation_config,
            **kwargs,
        )

    def detect_language(self, input_features: Any, compiled: bool = True) -> LanguageDetectionOutput:
        """The most likely language of each item and every language's probability (see the PyTorch model's)."""
        return core.detect_language(_backend(self, compiled), self.config, input_features)
