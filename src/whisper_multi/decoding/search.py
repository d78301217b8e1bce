"""Greedy decoding, sampling and beam search, written once against ``ArrayOps`` and a four-method backend seam.

A backend supplies only tensor work (``DecoderSeam``): ``decode`` runs the decoder and vocabulary projection for
some tokens at some positions of a preallocated (static) cache, ``reorder_cache`` gathers the cache rows of the
surviving beams, ``while_loop`` is the loop primitive (a Python loop when eager, ``tf.while_loop``,
``lax.while_loop``), and ``uniform`` draws the noise for sampling from a seed and the step. Everything else (the
prefix, the logit rules, the choice of the next token, the beam bookkeeping, the stopping test) is here, with fixed
shapes and no Python branch on a tensor's value, so one trace of ``run_search`` compiles the whole loop.

The search follows openai-whisper's decoders (which faster-whisper's CTranslate2 follows for greedy decoding):

- greedy / sampling: the next token is the argmax of the filtered logits (or a draw from them divided by the
  temperature, by the Gumbel-max trick); a finished row keeps emitting ``<|endoftext|>``; log-probabilities are those
  of the unscaled logits.
- beam search: each beam proposes its ``num_beams + 1`` best tokens; the candidates of one audio are ranked by
  cumulative log-probability; the first ``num_beams`` that do not end the text live on, and those ending it that
  rank before the last survivor are kept as finished (up to ``num_beams`` per audio). Decoding stops when every
  audio has ``num_beams`` finished sequences (or at ``max_length``); the finished sequences (topped up with the live
  ones) are ranked with the length penalty (``DecodingPlan.length_penalty``).

The no-speech probability is openai-whisper's: the probability of ``<|nospeech|>`` at the ``<|startoftranscript|>``
position, from the raw logits of the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from whisper_multi.decoding.ops import ArrayOps
from whisper_multi.decoding.options import DecodingPlan

NEG_INF = float("-inf")
State = tuple[Any, ...]


class DecoderSeam(Protocol):
    """The tensor work a backend supplies to the searches; ``ops`` is its ``ArrayOps`` adapter."""

    ops: ArrayOps

    def init_cache(self, batch_size: int, max_length: int) -> Any:
        """A static cache: (self_k, self_v, None, None) per layer, ``max_length`` positions of zeros."""

    def decode(
        self, tokens: Any, cache: Any, encoder_states: Any, positions: Any, keep: tuple[int, ...] | None = None
    ) -> tuple[Any, Any]:
        """Logits (batch, time, vocab) float32 of ``tokens`` (batch, time) written at ``positions`` (time,) of the
        cache, and the new cache (cross-attention pairs filled on the first call). With ``keep`` (indices into
        time), the logits of those positions only, (batch, len(keep), vocab): the vocabulary projection is the
        costliest part of a long prefix (a 224-token prompt), of which the search reads two positions."""

    def reorder_cache(self, cache: Any, indices: Any) -> Any:
        """The cache with its batch rows gathered by ``indices`` (batch,)."""

    def while_loop(self, cond: Any, body: Any, state: State) -> State:
        """``while cond(state): state = body(state)``; ``state`` keeps its structure and shapes."""

    def uniform(self, rng: Any, step: Any, shape: tuple[int, ...]) -> Any:
        """float32 noise in (0, 1), a function of ``rng`` and the step only (same draw eager and compiled)."""


@dataclass
class SearchResult:
    """The outcome of ``run_search`` in numpy: one sequence per audio (prefix included, up to its end)."""

    sequences: list[np.ndarray]  # each (length,) int32: prefix + generated tokens (+ <|endoftext|> if reached)
    sum_logprobs: np.ndarray  # (batch,)
    sequences_scores: np.ndarray | None  # (batch,) the beam ranking score, beam search only
    no_speech_probs: np.ndarray  # (batch,)
    scores: np.ndarray | None  # (steps, batch, vocab) the filtered logits of each step (output_scores)


def run_search(
    seam: DecoderSeam, plan: DecodingPlan, prefix: Any, encoder_states: Any, rng: Any = None
) -> dict[str, Any]:
    """Decode ``prefix`` (batch, prefix_length) int32 against ``encoder_states`` (batch, positions, d_model).

    Returns tensors of the backend (``finish`` turns them into a ``SearchResult``); this is the function the
    compiled paths trace once per shape.
    """
    ops = seam.ops
    beams = plan.num_beams
    batch = prefix.shape[0]
    rows = batch * beams
    if beams > 1:
        repeat = ops.reshape(ops.full((batch, beams), 0, "int32") + ops.expand_last(ops.arange(batch)), (rows,))
        prefix = ops.take_rows(prefix, repeat)
        encoder_states = ops.take_rows(encoder_states, repeat)

    # Prefill: the whole prefix in one call; its last position gives the first sampled token's logits.
    cache = seam.init_cache(rows, plan.max_length)
    keep = (plan.sot_index, plan.prefix_length - 1)
    logits, cache = seam.decode(prefix, cache, encoder_states, ops.arange(plan.prefix_length), keep=keep)
    no_speech_probs = _no_speech_probs(ops, logits[:, 0], plan.no_speech)
    next_logits = logits[:, 1]  # (rows, vocab)
    padding = ops.full((rows, plan.max_length - plan.prefix_length), plan.pad, "int32")
    start = _Prefilled(
        tokens=ops.concat([ops.cast(prefix, "int32"), padding], axis=1),
        length=ops.asarray(plan.prefix_length, "int32"),
        cache=cache,
        logits=next_logits,
        sum_logprobs=ops.full((rows,), 0.0, "float32"),
    )
    if beams == 1:
        outputs = _greedy(seam, plan, start, encoder_states, rng)
    else:
        outputs = _beam_search(seam, plan, start, encoder_states)
    outputs["no_speech_probs"] = no_speech_probs
    return outputs


@dataclass
class _Prefilled:
    """Where every search starts, once the prefix is decoded."""

    tokens: Any  # (rows, max_length) int32: the prefix, then padding
    length: Any  # scalar int32: the tokens so far (the prefix)
    cache: Any  # the decoder cache, filled for the prefix
    logits: Any  # (rows, vocab): the next token's logits
    sum_logprobs: Any  # (rows,) float32 zeros


def _decode_next(seam: DecoderSeam, next_tokens: Any, cache: Any, encoder_states: Any, length: Any) -> tuple[Any, Any]:
    """The logits (rows, vocab) after ``next_tokens`` (rows,), written at position ``length``, and the new cache."""
    ops = seam.ops
    logits, cache = seam.decode(ops.expand_last(next_tokens), cache, encoder_states, ops.reshape(length, (1,)))
    return logits[:, 0], cache


def _no_speech_probs(ops: ArrayOps, logits: Any, no_speech: int) -> Any:
    logprobs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    return ops.exp(logprobs[:, no_speech])


def _set_column(ops: ArrayOps, tokens: Any, index: Any, values: Any) -> Any:
    """``tokens[:, index] = values`` without a scatter: a select over the columns."""
    columns = ops.arange(tokens.shape[1])
    return ops.where(columns == index, ops.expand_last(values), tokens)


def _record_scores(ops: ArrayOps, plan: DecodingPlan, scores: Any, length: Any, logits: Any) -> Any:
    """``scores[length - prefix_length] = logits`` for the (steps, batch, vocab) buffer (output_scores only)."""
    steps = ops.arange(scores.shape[0])
    chosen = ops.reshape(steps == (length - plan.prefix_length), (scores.shape[0], 1, 1))
    return ops.where(chosen, logits[None], scores)


# ----------------------------------------------------------------------------------------------------------------
# Greedy decoding and sampling
# ----------------------------------------------------------------------------------------------------------------
def _greedy(seam: DecoderSeam, plan: DecodingPlan, start: _Prefilled, encoder_states: Any, rng: Any) -> dict[str, Any]:
    ops = seam.ops
    rows = start.tokens.shape[0]
    finished = ops.full((rows,), False, "bool")
    eot = ops.asarray(plan.eot, "int32")
    scores = ops.full((plan.max_new_tokens if plan.output_scores else 0, rows, start.logits.shape[-1]), 0.0, "float32")

    def cond(state: State) -> Any:
        _tokens, length, _cache, _logits, _sum_logprobs, finished, _scores = state
        return (length < plan.max_length) & ~ops.all(finished)

    def body(state: State) -> State:
        tokens, length, cache, logits, sum_logprobs, finished, scores = state
        logits = plan.rules.apply(ops, ops.cast(logits, "float32"), tokens, length)
        if plan.sampling:
            scaled = logits / plan.temperature
            noise = seam.uniform(rng, length, tuple(logits.shape))
            next_tokens = ops.argmax(scaled - ops.log(-ops.log(noise)), axis=-1)  # Gumbel-max: a draw from scaled
        else:
            scaled = logits
            next_tokens = ops.argmax(logits, axis=-1)
        logprobs = ops.log_softmax(logits, axis=-1)
        chosen = ops.take_along_last(logprobs, ops.expand_last(next_tokens))[:, 0]
        next_tokens = ops.where(finished, eot, next_tokens)
        sum_logprobs = sum_logprobs + ops.where(finished, ops.asarray(0.0, "float32"), chosen)
        if plan.output_scores:
            scores = _record_scores(ops, plan, scores, length, scaled)
        tokens = _set_column(ops, tokens, length, next_tokens)
        finished = finished | (next_tokens == eot)
        new_logits, cache = _decode_next(seam, next_tokens, cache, encoder_states, length)
        return tokens, length + 1, cache, new_logits, sum_logprobs, finished, scores

    initial = (start.tokens, start.length, start.cache, start.logits, start.sum_logprobs, finished, scores)
    state = seam.while_loop(cond, body, initial)
    tokens, length, _, _, sum_logprobs, _, scores = state
    return {"tokens": tokens, "length": length, "sum_logprobs": sum_logprobs, "scores": scores}


# ----------------------------------------------------------------------------------------------------------------
# Beam search
# ----------------------------------------------------------------------------------------------------------------
def _beam_search(seam: DecoderSeam, plan: DecodingPlan, start: _Prefilled, encoder_states: Any) -> dict[str, Any]:
    ops = seam.ops
    beams = plan.num_beams
    rows, max_length = start.tokens.shape[0], start.tokens.shape[1]
    batch = rows // beams
    finished_tokens = ops.full((batch, beams, max_length), plan.pad, "int32")
    finished_scores = ops.full((batch, beams), NEG_INF, "float32")
    finished_lengths = ops.full((batch, beams), 0, "int32")
    finished_count = ops.full((batch,), 0, "int32")

    def cond(state: State) -> Any:
        length, finished_count = state[1], state[8]
        return (length < plan.max_length) & ~ops.all(finished_count >= beams)

    def body(state: State) -> State:
        tokens, length, cache, logits, sum_logprobs = state[:5]
        finished_tokens, finished_scores, finished_lengths, finished_count = state[5:]
        logits = plan.rules.apply(ops, ops.cast(logits, "float32"), tokens, length)
        step = _beam_step(ops, plan, tokens, length, logits, sum_logprobs)
        finished = _keep_finished(
            ops, plan, step, tokens, length, (finished_tokens, finished_scores, finished_lengths, finished_count)
        )
        sources = ops.reshape(step.live_sources, (rows,))
        next_tokens = ops.reshape(step.live_tokens, (rows,))
        tokens = _set_column(ops, ops.take_rows(tokens, sources), length, next_tokens)
        cache = seam.reorder_cache(cache, sources)
        new_logits, cache = _decode_next(seam, next_tokens, cache, encoder_states, length)
        sum_logprobs = ops.reshape(step.live_scores, (rows,))
        return (tokens, length + 1, cache, new_logits, sum_logprobs, *finished)

    initial: tuple[Any, ...] = (start.tokens, start.length, start.cache, start.logits, start.sum_logprobs)
    initial += (finished_tokens, finished_scores, finished_lengths, finished_count)
    state = seam.while_loop(cond, body, initial)
    tokens, length, _, _, sum_logprobs = state[:5]
    return {
        "tokens": tokens,
        "length": length,
        "sum_logprobs": sum_logprobs,
        "finished_tokens": state[5],
        "finished_scores": state[6],
        "finished_lengths": state[7],
        "finished_count": state[8],
    }


@dataclass
class _BeamStep:
    """The ranked candidates of one step, (batch, 2 * beams), and the survivors, (batch, beams)."""

    scores: Any
    tokens: Any
    sources: Any  # the row (audio * beams + beam) each candidate extends
    ends: Any  # the candidate is <|endoftext|>
    non_eot_before: Any  # how many candidates that do not end rank before it
    live_tokens: Any
    live_sources: Any
    live_scores: Any


def _beam_step(
    ops: ArrayOps, plan: DecodingPlan, tokens: Any, length: Any, logits: Any, sum_logprobs: Any
) -> _BeamStep:
    beams = plan.num_beams
    rows = tokens.shape[0]
    batch = rows // beams
    per_beam = beams + 1
    logprobs = ops.log_softmax(logits, axis=-1)
    top_logprobs, top_tokens = ops.top_k(logprobs, per_beam)  # (rows, beams + 1)
    candidate_scores = ops.expand_last(sum_logprobs) + top_logprobs
    # At the first step every beam of an audio holds the same prefix: only the first one proposes (openai-whisper
    # keys its candidates by sequence, which merges the copies).
    beam_index = ops.arange(rows) % beams
    copies = (length == plan.prefix_length) & ops.expand_last(beam_index != 0)
    candidate_scores = ops.where(copies, ops.asarray(NEG_INF, "float32"), candidate_scores)

    # Rank the candidates of each audio; the first 2 * beams hold every survivor and every kept ending.
    flat_scores = ops.reshape(candidate_scores, (batch, beams * per_beam))
    flat_tokens = ops.reshape(top_tokens, (batch, beams * per_beam))
    scores, order = ops.top_k(flat_scores, 2 * beams)  # (batch, 2 * beams)
    candidate_tokens = ops.take_along_last(flat_tokens, order)
    first_row = ops.expand_last(ops.arange(batch) * beams)
    sources = first_row + order // per_beam
    ends = candidate_tokens == plan.eot
    continues = ops.cast(~ends, "int32")
    non_eot_before = ops.cumsum(continues, axis=1) - continues
    # The k-th survivor is the candidate that continues with k others before it.
    slot = ops.reshape(ops.arange(beams), (1, beams, 1))
    chosen = (~ends)[:, None, :] & (non_eot_before[:, None, :] == slot)  # (batch, beams, 2 * beams)
    return _BeamStep(
        scores=scores,
        tokens=candidate_tokens,
        sources=sources,
        ends=ends,
        non_eot_before=non_eot_before,
        live_tokens=_select(ops, chosen, candidate_tokens, -1),
        live_sources=_select(ops, chosen, sources, -1),
        live_scores=_select(ops, chosen, scores, NEG_INF),
    )


def _select(ops: ArrayOps, chosen: Any, values: Any, empty: Any) -> Any:
    """For a one-hot ``chosen`` (batch, slots, candidates), the chosen value of ``values`` (batch, candidates) per
    slot, ``empty`` where none is chosen."""
    dtype = "float32" if isinstance(empty, float) else "int32"
    return ops.max(ops.where(chosen, values[:, None, :], ops.asarray(empty, dtype)), axis=2)


def _keep_finished(
    ops: ArrayOps, plan: DecodingPlan, step: _BeamStep, tokens: Any, length: Any, finished: State
) -> State:
    """Add the endings ranked before the last survivor to each audio's finished list, best first, up to beams."""
    finished_tokens, finished_scores, finished_lengths, finished_count = finished
    beams = plan.num_beams
    batch, candidates = step.tokens.shape[0], step.tokens.shape[1]
    max_length = finished_tokens.shape[2]
    seen = step.ends & (step.non_eot_before < beams) & (step.scores > ops.asarray(NEG_INF, "float32"))
    seen_count = ops.cast(seen, "int32")
    rank = ops.expand_last(finished_count) + ops.cumsum(seen_count, axis=1) - seen_count  # (batch, candidates)
    kept = seen & (rank < beams)
    slot = ops.reshape(ops.arange(beams), (1, beams, 1))
    chosen = kept[:, None, :] & (rank[:, None, :] == slot)  # (batch, beams, candidates)
    filled = ops.max(ops.cast(chosen, "int32"), axis=2) > 0  # (batch, beams)

    sequences = ops.take_rows(tokens, ops.reshape(step.sources, (batch * candidates,)))
    sequences = ops.reshape(sequences, (batch, candidates, max_length))
    columns = ops.arange(max_length)
    sequences = ops.where(columns == length, ops.asarray(plan.eot, "int32"), sequences)
    new_tokens = ops.max(ops.where(chosen[..., None], sequences[:, None], ops.asarray(-1, "int32")), axis=2)
    finished_tokens = ops.where(ops.expand_last(filled), new_tokens, finished_tokens)
    finished_scores = ops.where(filled, _select(ops, chosen, step.scores, NEG_INF), finished_scores)
    finished_lengths = ops.where(filled, length - plan.prefix_length, finished_lengths)
    finished_count = finished_count + ops.sum(ops.cast(kept, "int32"), axis=1)
    return finished_tokens, finished_scores, finished_lengths, finished_count


# ----------------------------------------------------------------------------------------------------------------
# From tensors to sequences (numpy, after the loop)
# ----------------------------------------------------------------------------------------------------------------
def finish(plan: DecodingPlan, outputs: dict[str, np.ndarray]) -> SearchResult:
    """Cut every sequence after its ``<|endoftext|>``; for beams, rank the finished sequences and keep the best."""
    if plan.num_beams == 1:
        tokens = outputs["tokens"]
        length = int(outputs["length"])
        sequences = [_cut(row[:length], plan) for row in tokens]
        scores = outputs["scores"][: length - plan.prefix_length] if plan.output_scores else None
        return SearchResult(sequences, outputs["sum_logprobs"], None, outputs["no_speech_probs"], scores)
    return _finish_beams(plan, outputs)


def search_sequences(seam: DecoderSeam, plan: DecodingPlan, prefix: Any, encoder_states: Any, rng: Any) -> Any:
    """The greedy search's sequences as an exported model returns them, inside its graph: ``run_search`` then
    ``graph_sequences``."""
    outputs = run_search(seam, plan, prefix, encoder_states, rng)
    return graph_sequences(seam.ops, plan, outputs["tokens"], outputs["length"])


def graph_sequences(ops: ArrayOps, plan: DecodingPlan, tokens: Any, length: Any) -> Any:
    """``finish``'s greedy sequences inside a compiled graph, for exported models: ``tokens`` (batch, max_length)
    with every position after a row's first generated ``<|endoftext|>`` (and from ``length`` on) set to ``pad``;
    each row is the prefix, the generated tokens and ``<|endoftext|>`` when it ended, then padding."""
    positions = ops.arange(plan.max_length)[None, :]  # (1, max_length)
    ends = (tokens == plan.eot) & (positions >= plan.prefix_length)
    ends_before = ops.cumsum(ends, axis=1) - ops.cast(ends, "int32")  # end tokens strictly before each position
    keep = (ends_before == 0) & (positions < length)
    return ops.where(keep, tokens, ops.full(tuple(tokens.shape), plan.pad, "int32"))


def _cut(row: np.ndarray, plan: DecodingPlan) -> np.ndarray:
    ends = np.nonzero(row[plan.prefix_length :] == plan.eot)[0]
    stop = plan.prefix_length + int(ends[0]) + 1 if len(ends) else len(row)
    return row[:stop].astype(np.int32)


def _penalty(plan: DecodingPlan, length: int) -> float:
    if plan.length_penalty is None:
        return float(max(length, 1))
    return ((5 + length) / 6) ** plan.length_penalty


def _finish_beams(plan: DecodingPlan, outputs: dict[str, np.ndarray]) -> SearchResult:
    beams = plan.num_beams
    length = int(outputs["length"])
    live_tokens = outputs["tokens"].reshape(-1, beams, outputs["tokens"].shape[-1])
    live_scores = outputs["sum_logprobs"].reshape(-1, beams)
    sequences, best_logprobs, best_scores = [], [], []
    for audio in range(live_tokens.shape[0]):
        count = min(int(outputs["finished_count"][audio]), beams)
        candidates = [
            (outputs["finished_tokens"][audio, k], float(outputs["finished_scores"][audio, k]),
             int(outputs["finished_lengths"][audio, k]))
            for k in range(count)
        ]  # fmt: skip
        # Not enough endings by max_length: the live beams, best first, count as finished (openai's finalize).
        for k in np.argsort(-live_scores[audio], kind="stable")[: beams - count]:
            row = live_tokens[audio, k, :length]
            candidates.append((row, float(live_scores[audio, k]), length - plan.prefix_length))
        ranked = [logprob / _penalty(plan, n) for _, logprob, n in candidates]
        best = int(np.argmax(ranked))
        sequences.append(_cut(np.asarray(candidates[best][0]), plan))
        best_logprobs.append(candidates[best][1])
        best_scores.append(ranked[best])
    no_speech = outputs["no_speech_probs"][::beams]
    return SearchResult(
        sequences, np.asarray(best_logprobs, np.float32), np.asarray(best_scores, np.float32), no_speech, None
    )
