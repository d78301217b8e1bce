"""Language identification, written once: the distribution over language tokens after ``<|startoftranscript|>``.

As in openai-whisper, the decoder reads ``<|startoftranscript|>`` alone; every token but the language tokens is
excluded and the softmax over what is left is the probability of each language.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from whisper_multi.decoding.search import DecoderSeam
from whisper_multi.text.special_tokens import SpecialTokens


def language_logprobs(seam: DecoderSeam, special: SpecialTokens, encoder_states: Any) -> Any:
    """Log-probabilities (batch, num_languages) of the languages of ``special.languages``, in that order."""
    ops = seam.ops
    batch = encoder_states.shape[0]
    start = ops.full((batch, 1), special.sot, "int32")
    cache = seam.init_cache(batch, 1)
    logits, _ = seam.decode(start, cache, encoder_states, ops.arange(1))
    first = special.sot + 1
    language_logits = ops.cast(logits[:, 0, first : first + len(special.languages)], "float32")
    return ops.log_softmax(language_logits, axis=-1)


def most_likely(special: SpecialTokens, probabilities: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The language codes and their token ids, one per item, from (batch, num_languages) probabilities."""
    best = np.argmax(probabilities, axis=-1)
    codes = [special.languages[int(index)] for index in best]
    return codes, (special.sot + 1 + best).astype(np.int64)
