"""The framework-free half of ``generate``, ``detect_language``, ``encode_audio`` and ``alignment_attention``.

Each backend's generation mixin subclasses ``GenerationMixinCore`` and supplies its decoding backend class (the
tensor work) and, for PyTorch, the no-gradient context; the choice of compiled or eager decoding, the calls into the
core's decoding (``whisper_multi.decoding``) and the word-timing read-out are written here once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from whisper_multi.backends import backend_of
from whisper_multi.decoding import generate as core
from whisper_multi.decoding.outputs import LanguageDetectionOutput


def compiled_mode(model: Any, compiled: bool | None) -> bool:
    """``compiled`` as given; None is the backend's ``compiled_by_default`` (the mode measured fastest on CPU:
    eager for PyTorch, compiled for TensorFlow and Flax)."""
    return backend_of(model).compiled_by_default if compiled is None else bool(compiled)


def samples(kwargs: dict[str, Any]) -> bool:
    """Whether ``generate``'s arguments ask for sampling (``do_sample`` or a positive ``temperature``)."""
    temperature = kwargs.get("temperature")
    return bool(kwargs.get("do_sample")) or (temperature is not None and temperature > 0)


def stack_heads(
    cross_attentions: Sequence[Any], heads: Sequence[tuple[int, int]], to_numpy: Callable[[Any], np.ndarray]
) -> np.ndarray:
    """The weights of the ``heads`` (batch, len(heads), tokens, positions) from a model's ``cross_attentions`` (one
    (batch, heads, tokens, positions) tensor per decoder layer); used by every backend's ``alignment_attention``."""
    per_layer: dict[int, np.ndarray] = {}
    chosen = []
    for layer, head in heads:
        if layer not in per_layer:
            per_layer[layer] = to_numpy(cross_attentions[layer]).astype(np.float32)
        chosen.append(per_layer[layer][:, head])
    return np.stack(chosen, axis=1)


class GenerationMixinCore:
    """What every backend's generation mixin shares; ``decoding_backend`` is the backend's decoding class."""

    decoding_backend: ClassVar[Callable[[Any, bool], Any]]
    config: Any

    def _inference(self) -> contextlib.AbstractContextManager[Any]:
        """The context decoding runs in (PyTorch: no gradients)."""
        return contextlib.nullcontext()

    def _decoder_backend(self, compiled: bool | None) -> Any:
        """The decoding backend of this model for ``compiled`` (None: the backend's default), made once and kept."""
        return core.cached_backend(self, compiled_mode(self, compiled), type(self).decoding_backend)

    def _generate(
        self,
        input_features: Any,
        rng: Any,
        compiled: bool | None,
        generation_config: Any,
        return_dict_in_generate: bool,
        output_scores: bool,
        kwargs: dict[str, Any],
    ) -> Any:
        with self._inference():
            return core.generate(
                self._decoder_backend(compiled),
                self,
                input_features,
                rng=rng,
                return_dict_in_generate=return_dict_in_generate,
                output_scores=output_scores,
                generation_config=generation_config,
                **kwargs,
            )

    def detect_language(self, input_features: Any, compiled: bool | None = None) -> LanguageDetectionOutput:
        """The most likely language of each item (``language_ids``, ``languages``) and every language's
        probability (``language_probs``, ``probabilities(i)``). ``compiled=None`` is the backend's default, as in
        ``generate``."""
        with self._inference():
            return core.detect_language(self._decoder_backend(compiled), self.config, input_features)

    def encode_audio(self, input_features: Any, compiled: bool | None = None) -> Any:
        """The encoder's last hidden state (batch, positions, d_model), computed as ``generate`` computes it: pass it
        as ``generate(encoder_outputs=...)`` and ``alignment_attention(encoder_states=...)`` to encode once.
        ``compiled=None`` is the backend's default, as in ``generate``."""
        with self._inference():
            return self._decoder_backend(compiled).encode(input_features)

    def alignment_attention(
        self,
        input_features: Any,
        decoder_input_ids: Any,
        alignment_heads: list[tuple[int, int]],
        encoder_states: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """For word timing (``whisper_multi.longform.timing``): the cross-attention weights of ``alignment_heads``
        (batch, heads, tokens, positions) and the logits (batch, tokens, vocab) of one forward pass, in numpy; from
        ``encoder_states`` (``encode_audio``) when given, else from the features."""
        with self._inference():
            backend = self._decoder_backend(False)
            if encoder_states is None:
                encoder_states = self.encode_audio(input_features)
            tokens = np.asarray(decoder_input_ids, dtype=np.int64)
            cross_attentions, logits = backend.alignment(tokens, encoder_states)
            return stack_heads(cross_attentions, alignment_heads, backend.to_numpy), backend.to_numpy(logits)
