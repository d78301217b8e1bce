"""What ``generate`` and ``detect_language`` return with ``return_dict_in_generate=True`` (and always, for
``detect_language``); the tensors are the backend's, the rest numpy and Python values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from whisper_multi.modeling.outputs import ModelOutput, Tensor


@dataclass
class WhisperGenerateOutput(ModelOutput):
    """``sequences`` (batch, length): the decoder prefix (``<|startoftranscript|>`` ...), the generated tokens and
    ``<|endoftext|>``, padded on the right with ``pad_token_id`` (as Transformers returns them).

    ``scores``: with ``output_scores=True`` (greedy and sampling), one (batch, vocab) tensor per generated token, the
    logits after the rules (and the temperature). ``sequences_scores`` (beam search): the ranking score of each
    returned sequence. ``avg_logprobs``: the summed log-probability of the generated tokens divided by their number
    plus one (faster-whisper's ``avg_logprob``). ``no_speech_probs``: the probability of ``<|nospeech|>`` at the
    ``<|startoftranscript|>`` position. ``languages`` and ``language_probs`` (batch, num_languages): set when the
    language was detected.
    """

    sequences: Tensor | None = None
    scores: tuple[Tensor, ...] | None = None
    sequences_scores: Tensor | None = None
    avg_logprobs: np.ndarray | None = None
    no_speech_probs: np.ndarray | None = None
    languages: list[str] | None = None
    language_probs: np.ndarray | None = None


@dataclass
class LanguageDetectionOutput(ModelOutput):
    """``language_ids`` (batch,): the language tokens (what Transformers' ``detect_language`` returns);
    ``languages``: their codes; ``language_probs`` (batch, num_languages) in the order of ``language_codes``."""

    language_ids: Tensor | None = None
    languages: list[str] | None = None
    language_probs: np.ndarray | None = None
    language_codes: tuple[str, ...] | None = None

    def probabilities(self, index: int = 0) -> dict[str, float]:
        """``{code: probability}`` of item ``index``, most likely first."""
        assert self.language_probs is not None and self.language_codes is not None
        row: Any = self.language_probs[index]
        order = np.argsort(-row, kind="stable")
        return {self.language_codes[i]: float(row[i]) for i in order}
