"""``generate`` and ``detect_language`` for the ONNX graphs: the decoding seam over two onnxruntime sessions.

The decoding is the core's (``whisper_multi.decoding``), run eagerly over numpy (``NumpyOps``, a Python loop); this
file supplies the tensor work: the encoder graph gives the audio's keys and values for every decoder layer (what
``encode`` returns and the search carries as its encoder states), and the decoder graph runs new tokens after a cache
that grows by the tokens it is given (``pt/export.py`` describes both graphs).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from whisper_multi.decoding.ops import NumpyOps
from whisper_multi.export.graphs import DECODER_INPUTS, ENCODER_INPUTS

_TINY = float(np.finfo(np.float32).tiny)


class OnnxSeam:
    """The decoding seam over the decoder session; the cache is the past keys and values (batch, layers, 2, heads,
    positions, head_dim), as long as the tokens decoded so far."""

    def __init__(self, model: Any):
        self.model = model
        self.ops = NumpyOps()

    def init_cache(self, batch_size: int, max_length: int) -> np.ndarray:
        config = self.model.config
        heads = config.decoder_attention_heads
        shape = (batch_size, config.decoder_layers, 2, heads, 0, config.d_model // heads)
        return np.zeros(shape, dtype=np.float32)

    def run(self, tokens: Any, cache: np.ndarray, audio: np.ndarray, keep: Any) -> list[np.ndarray]:
        """The decoder graph's outputs (logits, present keys and values, cross-attention weights)."""
        values = (np.asarray(tokens, dtype=np.int64), cache, audio, np.asarray(keep, dtype=np.int64))
        return self.model.decoder.run(None, dict(zip(DECODER_INPUTS, values)))

    def decode(
        self, tokens: Any, cache: Any, encoder_states: Any, positions: Any, keep: tuple[int, ...] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        kept = range(np.shape(tokens)[1]) if keep is None else keep
        logits, present, _ = self.run(tokens, cache, encoder_states, list(kept))
        return logits, present

    def reorder_cache(self, cache: np.ndarray, indices: Any) -> np.ndarray:
        return cache[np.asarray(indices)]

    def while_loop(self, cond: Callable[[Any], Any], body: Callable[[Any], Any], state: Any) -> Any:
        while bool(cond(state)):
            state = body(state)
        return state

    def uniform(self, rng: Any, step: Any, shape: tuple[int, ...]) -> np.ndarray:
        generator = np.random.default_rng(int(rng) * 1_000_003 + int(step))
        return np.maximum(generator.random(shape, dtype=np.float32), _TINY)


class OnnxBackend:
    """What the core's ``generate`` needs from the ONNX graphs. There is one path: ``compiled`` is accepted for the
    mixin's sake and changes nothing (onnxruntime optimises the graphs when the session is made)."""

    def __init__(self, model: Any, compiled: bool = False):
        self.model = model
        self.seam = OnnxSeam(model)

    def encode(self, input_features: Any) -> np.ndarray:
        """The audio's keys and values for every decoder layer (batch, layers, 2, heads, positions, head_dim): the
        encoder states of this backend, as ``encode_audio`` returns them."""
        features = np.ascontiguousarray(np.asarray(input_features, dtype=np.float32))
        return self.model.encoder.run(None, {ENCODER_INPUTS[0]: features})[0]

    def compile(self, function: Callable[..., Any], key: Hashable) -> Callable[..., Any]:
        return function

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def to_tensor(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(array)

    def to_output_tokens(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(array, dtype=np.int64)

    def alignment(self, tokens: np.ndarray, encoder_states: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """(every layer's cross-attention weights, float32 logits) of one pass over ``tokens``."""
        cache = self.seam.init_cache(tokens.shape[0], tokens.shape[1])
        logits, _, cross_attentions = self.seam.run(tokens, cache, encoder_states, list(range(tokens.shape[1])))
        return [cross_attentions[:, layer] for layer in range(cross_attentions.shape[1])], logits
