"""``generate`` and ``detect_language`` for the Flax model: the ArrayOps adapter and the decoding seam for JAX.

The decoding logic is the core's (``whisper_multi.decoding``); this file supplies tensor work only. With
``compiled=True`` (the default here: ``compiled=None`` is ``backends.backend("flax").compiled_by_default``) the whole search (prefill, ``lax.while_loop``, rules and beam bookkeeping) is one
``jax.jit`` function of the parameters, compiled once per plan and input shape and kept on the model; the encoder is
``jit_encode``. ``compiled=False`` runs the same loop in Python, one jitted decoder step per token.

Sampling is seeded by ``prng_key`` (a ``jax.random`` key, Transformers' Flax argument) or ``seed`` (an int);
without either the key is ``jax.random.PRNGKey(0)``, as in Transformers. Each step's noise is drawn from the key
folded with the step, the same eager and compiled.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from whisper_multi.decoding.mixin import GenerationMixinCore

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
        self.projection: Any = None  # the traced (d_model, vocab) projection, while a compiled search is traced
        self._projection: tuple[Any, jax.Array] | None = None  # (the embedding it was made from, its transpose)
        # Eagerly, one jitted step per token; the cache is donated, so XLA writes the new positions in place.
        self._eager_step = jax.jit(self._step, donate_argnums=(3,), static_argnums=(6,))

    def init_cache(self, batch_size: int, max_length: int) -> Any:
        return self.model.init_cache(batch_size, max_length)

    def transposed_projection(self) -> jax.Array:
        """The token embedding (the tied ``proj_out``) transposed to (d_model, vocab), kept while it is unchanged.

        A one-token step multiplies one row by the whole vocabulary matrix: memory-bound, and XLA on CPU streams the
        (d_model, vocab) layout faster than the (vocab, d_model) one (benchmarks/results.md).
        """
        embedding = self.model.params["model"]["decoder"]["embed_tokens"]["embedding"]
        if self._projection is None or self._projection[0] is not embedding:
            self._projection = (embedding, jax.jit(jnp.transpose)(embedding))
        return self._projection[1]

    def decode(
        self, tokens: Any, cache: Any, encoder_states: Any, positions: Any, keep: tuple[int, ...] | None = None
    ) -> tuple[Any, Any]:
        if self.params is None:
            projection = self.transposed_projection()
            return self._eager_step(self.model.params, projection, tokens, cache, encoder_states, positions, keep)
        return self._step(self.params, self.projection, tokens, cache, encoder_states, positions, keep)

    def _step(
        self,
        params: Any,
        projection: Any,
        tokens: Any,
        cache: Any,
        encoder_states: Any,
        positions: Any,
        keep: tuple[int, ...] | None = None,
    ) -> tuple[Any, Any]:
        hidden_states, cache = self.model.module.apply(
            {"params": params}, tokens, encoder_states, cache, positions, method=_decoder_states
        )
        if keep is not None:
            hidden_states = hidden_states[:, list(keep)]
        return (hidden_states @ projection).astype(jnp.float32), cache

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


def _decoder_states(module: Any, tokens: Any, encoder_states: Any, cache: Any, positions: Any) -> tuple[Any, Any]:
    """The decoder's last hidden states and new cache (the vocabulary projection is the seam's)."""
    outputs = module.model.decoder(
        tokens, encoder_hidden_states=encoder_states, past_key_values=cache, cache_position=positions, return_dict=True
    )
    return outputs.last_hidden_state, outputs.past_key_values


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

    def alignment(self, tokens: np.ndarray, encoder_states: Any) -> tuple[tuple[jax.Array, ...], jax.Array]:
        """(every layer's cross-attention weights, float32 logits) of one decoder pass over ``tokens``, jitted (op
        by op the pass is dominated by dispatch), compiled once per token count: long-form word timing pads its
        tokens to a few counts."""
        if "alignment" not in self._functions:
            model = self.model

            def alignment(params: Any, tokens: jax.Array, states: jax.Array) -> tuple[tuple[jax.Array, ...], jax.Array]:
                outputs = model.decode(tokens, states, params=params, output_attentions=True, return_dict=True)
                return tuple(outputs.cross_attentions), outputs.logits.astype(jnp.float32)

            self._functions["alignment"] = jax.jit(alignment)
        tokens = jnp.asarray(np.asarray(tokens, dtype=np.int32))
        return self._functions["alignment"](self.model.params, tokens, jnp.asarray(encoder_states))

    def compile(self, function: Callable[..., Any], key: Hashable) -> Callable[..., Any]:
        if not self.compiled:
            return function
        if key not in self._functions:

            def with_params(params: Any, projection: Any, *args: Any) -> Any:
                self.seam.params, self.seam.projection = params, projection
                try:
                    return function(*args)
                finally:
                    self.seam.params = self.seam.projection = None

            self._functions[key] = jax.jit(with_params)
        jitted = self._functions[key]
        return lambda *args: jitted(self.model.params, self.seam.transposed_projection(), *args)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def to_tensor(self, array: np.ndarray) -> jax.Array:
        return jnp.asarray(array)

    def to_output_tokens(self, array: np.ndarray) -> jax.Array:
        return jnp.asarray(np.asarray(array, dtype=np.int32))


class FlaxWhisperGenerationMixin(GenerationMixinCore):
    """``generate`` and ``detect_language`` for ``FlaxWhisperForConditionalGeneration``."""

    decoding_backend = JaxBackend

    def generate(
        self,
        input_features: Any,
        generation_config: Any = None,
        *,
        return_dict_in_generate: bool = False,
        output_scores: bool = False,
        prng_key: jax.Array | None = None,
        seed: int | None = None,
        compiled: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Transcribe or translate one 30-second window of audio per item; the arguments and outputs of the PyTorch model's
        ``generate`` (``whisper_multi.pt.generation``), with ``prng_key`` or ``seed`` for sampling. ``compiled``:
        True runs the search as one ``jax.jit`` function, False as a Python loop of jitted steps; None (the default)
        takes the backend's ``compiled_by_default`` (``whisper_multi.backends``), True for Flax."""
        if prng_key is None:
            prng_key = jax.random.PRNGKey(0 if seed is None else seed)
        return self._generate(
            input_features, prng_key, compiled, generation_config, return_dict_in_generate, output_scores, kwargs
        )
