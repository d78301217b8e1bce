"""Whisper's logit rules, written once for every backend.

Each rule is a function of the logits of the next token and the tokens so far, expressed with ``ArrayOps`` and
Python operators only, so it runs in numpy and PyTorch and inside ``tf.function`` / ``jax.jit`` alike. The tokens
live in a fixed-size buffer ``tokens`` of shape (batch, max_length) of which the first ``length`` columns are
filled; ``length`` may be a Python int or a traced scalar. Nothing here branches on a tensor's value in Python.

The rules follow openai-whisper's decoding (which faster-whisper follows too): suppress blank at the first sampled
position, suppress the non-speech tokens, and the timestamp rules (pairs, monotonic, a text-vs-timestamp probability
rule, the first token a timestamp no later than ``max_initial_timestamp``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from whisper_multi.decoding.ops import ArrayOps

NEG_INF = float("-inf")


@dataclass(frozen=True)
class LogitRules:
    """Everything the rules need, fixed for one ``generate`` call.

    ``sample_begin`` is the index of the first sampled token (the length of the forced prefix, prompt included).
    ``timestamp_begin`` is None when timestamps are off.
    """

    vocab_size: int
    sample_begin: int
    eot: int
    suppress_tokens: Sequence[int] = ()
    begin_suppress_tokens: Sequence[int] = ()
    timestamp_begin: int | None = None
    no_timestamps: int | None = None
    max_initial_timestamp_index: int | None = None

    # --- masks over the vocabulary, computed once in numpy (kept: an eager loop applies the rules every step) -----
    def _vocab_mask(self, token_ids: Sequence[int]) -> np.ndarray:
        mask = np.zeros(self.vocab_size, dtype=bool)
        ids = [token for token in token_ids if 0 <= token < self.vocab_size]
        mask[ids] = True
        return mask

    @functools.cached_property
    def always_suppressed(self) -> np.ndarray:
        ids = list(self.suppress_tokens)
        if self.timestamp_begin is not None and self.no_timestamps is not None:
            # <|notimestamps|> is a prefix token; once timestamps are asked for it must never be sampled.
            ids.append(self.no_timestamps)
        return self._vocab_mask(ids)

    @functools.cached_property
    def suppressed_at_begin(self) -> np.ndarray:
        return self._vocab_mask(self.begin_suppress_tokens)

    # --- the rules ------------------------------------------------------------------------------------------------
    def apply(self, ops: ArrayOps, logits: Any, tokens: Any, length: Any) -> Any:
        """``logits`` (batch, vocab) float32 with forbidden tokens set to -inf."""
        neg_inf = ops.asarray(NEG_INF, "float32")
        at_begin = ops.asarray(length, "int32") == self.sample_begin
        logits = ops.where(ops.asarray(self.always_suppressed, "bool"), neg_inf, logits)
        logits = ops.where(at_begin & ops.asarray(self.suppressed_at_begin, "bool"), neg_inf, logits)
        if self.timestamp_begin is not None:
            logits = self._timestamp_rules(ops, logits, tokens, length, at_begin)
        return logits

    def _timestamp_rules(self, ops: ArrayOps, logits: Any, tokens: Any, length: Any, at_begin: Any) -> Any:
        assert self.timestamp_begin is not None
        neg_inf = ops.asarray(NEG_INF, "float32")
        begin = self.timestamp_begin
        vocab = ops.arange(self.vocab_size)  # (vocab,)
        is_timestamp_id = vocab >= begin  # (vocab,)
        length = ops.asarray(length, "int32")
        sampled = length - self.sample_begin

        # Timestamps come in pairs, except directly before the end of text.
        last = ops.take_column(tokens, ops.where(sampled >= 1, length - 1, 0))  # (batch,)
        penultimate = ops.take_column(tokens, ops.where(sampled >= 2, length - 2, 0))  # (batch,)
        last_was_timestamp = (sampled >= 1) & (last >= begin)
        penultimate_was_timestamp = (sampled < 2) | (penultimate >= begin)
        must_be_text = ops.expand_last(last_was_timestamp & penultimate_was_timestamp) & is_timestamp_id
        must_be_timestamp = ops.expand_last(last_was_timestamp & ~penultimate_was_timestamp) & (vocab < self.eot)
        logits = ops.where(must_be_text | must_be_timestamp, neg_inf, logits)

        # Timestamps never decrease, and a segment is never empty: forbid those below the last one (or equal to it,
        # unless it opens a pair).
        positions = ops.arange(tokens.shape[1])  # (max_length,)
        in_sample = (positions >= self.sample_begin) & (positions < length)
        timestamp_positions = ops.where(in_sample & (tokens >= begin), positions, -1)  # (batch, max_length)
        last_position = ops.max(timestamp_positions, axis=1)  # (batch,)
        has_timestamp = last_position >= 0
        last_timestamp = self._take_per_row(ops, tokens, last_position)  # (batch,)
        timestamp_last = ops.where(last_was_timestamp & ~penultimate_was_timestamp, last_timestamp, last_timestamp + 1)
        too_early = is_timestamp_id & (vocab < ops.expand_last(timestamp_last))
        logits = ops.where(ops.expand_last(has_timestamp) & too_early, neg_inf, logits)

        # The first sampled token is a timestamp, no later than max_initial_timestamp.
        first_forbidden = ~is_timestamp_id
        if self.max_initial_timestamp_index is not None:
            first_forbidden = first_forbidden | (vocab > begin + self.max_initial_timestamp_index)
        logits = ops.where(at_begin & first_forbidden, neg_inf, logits)

        # When the timestamps together are more probable than any single text token, sample a timestamp.
        logprobs = ops.log_softmax(logits, axis=-1)
        timestamp_logprob = ops.logsumexp(ops.where(is_timestamp_id, logprobs, neg_inf), axis=-1)  # (batch,)
        max_text_logprob = ops.max(ops.where(is_timestamp_id, neg_inf, logprobs), axis=-1)  # (batch,)
        prefer_timestamp = ops.expand_last(timestamp_logprob > max_text_logprob) & ~is_timestamp_id
        return ops.where(prefer_timestamp, neg_inf, logits)

    @staticmethod
    def _take_per_row(ops: ArrayOps, tokens: Any, positions: Any) -> Any:
        """``tokens[b, positions[b]]`` for every row b, as a masked maximum (no gather needed)."""
        columns = ops.arange(tokens.shape[1])
        chosen = columns == ops.expand_last(positions)  # (batch, max_length)
        return ops.max(ops.where(chosen, tokens, -1), axis=1)
