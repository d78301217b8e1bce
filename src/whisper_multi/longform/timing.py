"""Word timestamps from the cross-attention of the alignment heads, written once for every backend.

A backend supplies one tensor step (``alignment_attention`` on each ``WhisperForConditionalGeneration``): a forward
pass over ``<|startoftranscript|> ... <|notimestamps|> text <|endoftext|>`` that returns the cross-attention
weights of the alignment heads and the logits. Everything else is numpy, here:

1. keep the audio positions that hold speech of this window and renormalize each row (the softmax over those
   positions alone), standardize every head over the tokens, median-filter along time (``median_filter_width``),
   average the heads;
2. dynamic time warping of the tokens against time on the negated matrix: the first time a token is on the path is
   when it is spoken;
3. tokens grouped into words (a word starts at a token that begins with a space or is punctuation; languages written
   without spaces split per character), punctuation merged into the neighbouring word, implausibly long words at
   sentence ends shortened, and the times assigned to the segments of the window.

The alignment heads are the generation config's ``alignment_heads``, else a CTranslate2 directory's, else every
head of the upper half of the decoder layers.
"""

from __future__ import annotations

import itertools
import json
import os
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from whisper_multi.features import HOP_LENGTH, SAMPLE_RATE

FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames a second
POSITIONS_PER_SECOND = FRAMES_PER_SECOND // 2  # 50 encoder positions a second (the encoder halves the frames)
MEDIAN_FILTER_WIDTH = 7
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
SENTENCE_END_MARKS = ".。!！?？"
# Languages written without spaces between words: their words are split per character.
NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})


@dataclass
class Word:
    """One word with its start and end (seconds from the start of the audio) and its mean token probability."""

    word: str
    start: float
    end: float
    probability: float
    tokens: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"word": self.word, "start": self.start, "end": self.end, "probability": self.probability}


# ---------------------------------------------------------------------------------------------------------------------
# Alignment heads
# ---------------------------------------------------------------------------------------------------------------------
def alignment_heads_for(model: Any, model_dir: str | os.PathLike[str] | None = None) -> list[tuple[int, int]]:
    """(layer, head) pairs used for word timing: the generation config's, a CTranslate2 ``config.json``'s in
    ``model_dir``, or all heads of the upper half of the decoder layers."""
    generation_config = getattr(model, "generation_config", None)
    heads = getattr(generation_config, "alignment_heads", None)
    if heads:
        return [(int(layer), int(head)) for layer, head in heads]
    if model_dir is not None:
        config_file = Path(model_dir) / "config.json"
        if config_file.is_file():
            try:
                stored = json.loads(config_file.read_text(encoding="utf-8")).get("alignment_heads")
            except (OSError, ValueError, AttributeError):
                stored = None
            if stored:
                return [(int(layer), int(head)) for layer, head in stored]
    layers, heads_per_layer = model.config.decoder_layers, model.config.decoder_attention_heads
    return [(layer, head) for layer in range(layers // 2, layers) for head in range(heads_per_layer)]


# ---------------------------------------------------------------------------------------------------------------------
# Numerics: median filter and dynamic time warping
# ---------------------------------------------------------------------------------------------------------------------
def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a sliding window of odd ``width`` along the last axis, reflecting at the edges."""
    if width <= 1 or x.shape[-1] <= width // 2:
        return x
    half = width // 2
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(half, half)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.median(windows, axis=-1).astype(x.dtype)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The monotonic path of least total ``cost`` (rows, columns) from (0, 0) to the last cell, as row and column
    indices. Cells on one anti-diagonal depend only on the two before it, so each anti-diagonal is one numpy step.
    Ties prefer the diagonal move, then the vertical one."""
    rows, columns = cost.shape
    total = np.full((rows + 1, columns + 1), np.inf)
    total[0, 0] = 0.0
    moves = np.zeros((rows + 1, columns + 1), dtype=np.int8)  # 0 diagonal, 1 vertical (row - 1), 2 horizontal
    for diagonal in range(2, rows + columns + 1):
        i = np.arange(max(1, diagonal - columns), min(rows, diagonal - 1) + 1)
        j = diagonal - i
        options = np.stack([total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]])  # (3, cells)
        best = np.argmin(options, axis=0)
        total[i, j] = cost[i - 1, j - 1] + options[best, np.arange(len(i))]
        moves[i, j] = best
    i, j = rows, columns
    path = []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        move = moves[i, j]
        if move == 0:
            i, j = i - 1, j - 1
        elif move == 1:
            i -= 1
        else:
            j -= 1
    path.reverse()
    indices = np.asarray(path, dtype=np.int64).reshape(-1, 2)
    return indices[:, 0], indices[:, 1]


def alignment_matrix(
    weights: np.ndarray, num_frames: int, median_filter_width: int = MEDIAN_FILTER_WIDTH
) -> np.ndarray:
    """(tokens, positions) from the alignment heads' weights (heads, tokens, positions) of one window whose audio
    fills ``num_frames`` mel frames."""
    positions = max(1, num_frames // 2)
    weights = weights[:, :, :positions].astype(np.float64)
    weights = weights / np.maximum(weights.sum(axis=-1, keepdims=True), 1e-30)  # softmax over these positions only
    mean = weights.mean(axis=-2, keepdims=True)
    std = weights.std(axis=-2, keepdims=True)
    weights = (weights - mean) / np.maximum(std, 1e-12)
    weights = median_filter(weights, median_filter_width)
    return weights.mean(axis=0)


# ---------------------------------------------------------------------------------------------------------------------
# Tokens to words
# ---------------------------------------------------------------------------------------------------------------------
def split_tokens_on_unicode(tokens: list[int], decode: Callable[[list[int]], str]) -> tuple[list[str], list[list[int]]]:
    """Tokens grouped so that every group decodes to whole characters (a character may span several tokens)."""
    words: list[str] = []
    word_tokens: list[list[int]] = []
    current: list[int] = []
    full = decode(tokens)
    position = 0
    for token in tokens:
        current.append(token)
        text = decode(current)
        if "\ufffd" not in text or full[position + text.index("\ufffd")] == "\ufffd":
            words.append(text)
            word_tokens.append(current)
            current = []
            position += len(text)
    return words, word_tokens


def split_tokens_on_spaces(
    tokens: list[int], decode: Callable[[list[int]], str], eot: int
) -> tuple[list[str], list[list[int]]]:
    """Tokens grouped into words: a new word at a special token, a leading space or punctuation."""
    subwords, subword_tokens = split_tokens_on_unicode(tokens, decode)
    words: list[str] = []
    word_tokens: list[list[int]] = []
    for subword, pieces in zip(subwords, subword_tokens):
        special = pieces[0] >= eot
        starts_word = subword.startswith(" ") or subword.strip() in string.punctuation
        if special or starts_word or not words:
            words.append(subword)
            word_tokens.append(list(pieces))
        else:
            words[-1] += subword
            word_tokens[-1].extend(pieces)
    return words, word_tokens


def merge_punctuation(words: list[Word], prepended: str, appended: str) -> None:
    """Attach opening punctuation to the word after it and closing punctuation to the word before it, in place; the
    emptied entries keep no text (the caller drops them) and the words keep their own times."""
    following = len(words) - 1
    for index in range(len(words) - 2, -1, -1):
        before, after = words[index], words[following]
        if before.word.startswith(" ") and before.word.strip() in prepended:
            after.word = before.word + after.word
            after.tokens = before.tokens + after.tokens
            before.word, before.tokens = "", []
        else:
            following = index
    previous = 0
    for index in range(1, len(words)):
        before, after = words[previous], words[index]
        if before.word and not before.word.endswith(" ") and after.word in appended:
            before.word = before.word + after.word
            before.tokens = before.tokens + after.tokens
            after.word, after.tokens = "", []
        else:
            previous = index


# ---------------------------------------------------------------------------------------------------------------------
# One window
# ---------------------------------------------------------------------------------------------------------------------
def find_alignment(
    weights: np.ndarray,
    logits: np.ndarray,
    text_tokens: list[int],
    num_frames: int,
    decode: Callable[[list[int]], str],
    eot: int,
    language: str | None = None,
    median_filter_width: int = MEDIAN_FILTER_WIDTH,
) -> list[Word]:
    """Words of ``text_tokens`` with times from the start of the window.

    ``weights`` (heads, rows, positions) and ``logits`` (rows, vocab) are those of the rows that predict the text
    tokens and the final ``<|endoftext|>`` (``len(text_tokens) + 1`` rows).
    """
    if not text_tokens:
        return []
    matrix = alignment_matrix(weights, num_frames, median_filter_width)
    token_rows, time_columns = dtw(-matrix)
    first_on_path = np.concatenate([[True], np.diff(token_rows) > 0])
    token_times = time_columns[first_on_path] / POSITIONS_PER_SECOND  # one time per row

    shifted = logits[: len(text_tokens)].astype(np.float64)
    shifted = shifted - shifted.max(axis=-1, keepdims=True)
    logprobs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    token_probs = np.exp(logprobs[np.arange(len(text_tokens)), text_tokens])

    if language in NO_SPACE_LANGUAGES:
        texts, groups = split_tokens_on_unicode([*text_tokens, eot], decode)
    else:
        texts, groups = split_tokens_on_spaces([*text_tokens, eot], decode, eot)
    boundaries = np.concatenate([[0], np.cumsum([len(group) for group in groups[:-1]])]).astype(int)
    words = []
    for index, (text, group) in enumerate(zip(texts[:-1], groups[:-1])):
        first, stop = boundaries[index], boundaries[index + 1]
        words.append(
            Word(
                word=text,
                start=float(token_times[first]),
                end=float(token_times[stop]),
                probability=float(np.mean(token_probs[first:stop])),
                tokens=list(group),
            )
        )
    return words


def _shorten_long_words(words: list[Word]) -> None:
    """A word at a sentence end that lasts more than twice the median word (capped at 0.7 s) takes in the silence
    after it: cut it to that length, as openai-whisper and faster-whisper do."""
    median = _median_word_duration(words)
    if not median:
        return
    longest = median * 2
    for index in range(1, len(words)):
        word = words[index]
        if word.end - word.start > longest:
            if word.word.strip() in SENTENCE_END_MARKS:
                word.end = word.start + longest
            elif words[index - 1].word.strip() in SENTENCE_END_MARKS:
                word.start = word.end - longest


def _median_word_duration(words: list[Word]) -> float:
    durations = np.array([word.end - word.start for word in words])
    durations = durations[durations.nonzero()]
    return min(float(np.median(durations)), 0.7) if len(durations) else 0.0


def _shorten_first_word_after_pause(words: list[Word], last_speech: float) -> None:
    """The first word after a pause (its end more than four median words after ``last_speech``, window time) that
    lasts more than twice the median word takes in the pause before it: it starts that long before its end, and a
    long second word gives the first part of its time to the first one (openai-whisper's rule)."""
    median = _median_word_duration(words)
    if not median or not words:
        return
    longest = 2 * median
    first = words[0]
    after_pause = first.end - last_speech > 4 * median
    too_long = first.end - first.start > longest or (len(words) > 1 and words[1].end - first.start > 2 * longest)
    if after_pause and too_long:
        if len(words) > 1 and words[1].end - words[1].start > longest:
            boundary = max(words[1].end / 2, words[1].end - longest)
            first.end = words[1].start = boundary
        first.start = max(0.0, first.end - longest)


SPEECH_LEVEL = 0.25  # a frame is speech above this fraction of the way from the window's quietest frame to its loudest
SPEECH_RANGE = 0.25  # log-mel units of 40 dB: a window whose frames span under 10 dB holds no speech to tell apart
PAUSE_FRAMES = 15  # quiet frames (0.15 s) that separate two words; a stop consonant's closure is shorter
STRAY_FRAMES = 10  # at most this much (0.1 s) of a neighbour's speech is taken to have crossed a shared boundary...
SENTENCE_PAUSE_FRAMES = 50  # ...or any length of it, when a pause of 0.5 s cuts it from the rest of the word


def speech_levels(mel_window: np.ndarray) -> np.ndarray:
    """Loudness of each mel frame (frames,): the mean of its log-mel bins."""
    return mel_window.astype(np.float64).mean(axis=0)


def snap_to_speech(words: list[Word], levels: np.ndarray) -> None:
    """Move each word's start forward and end back to the first and last speech frame between them, in place.

    Dynamic time warping places a word boundary somewhere in the pause between two words (the end of one word is
    the start of the next); the pause is silence in the audio, so the frames tell where each word really is. A word
    with no speech frame inside its bounds keeps them, so this never loses a word.
    """
    if not len(levels):
        return
    floor, peak = float(np.min(levels)), float(np.max(levels))
    if peak - floor <= 1e-6:
        return
    loud = levels > floor + SPEECH_LEVEL * (peak - floor)
    _move_stray_speech_across_boundaries(words, loud)
    for word in words:
        first = max(0, round(word.start * FRAMES_PER_SECOND))
        last = min(len(loud), round(word.end * FRAMES_PER_SECOND))
        frames = np.nonzero(loud[first:last])[0]
        if len(frames):
            word.start = (first + int(frames[0])) / FRAMES_PER_SECOND
            word.end = (first + int(frames[-1]) + 1) / FRAMES_PER_SECOND
    _take_unclaimed_speech(words, loud)


def _take_unclaimed_speech(words: list[Word], loud: np.ndarray) -> None:
    """Speech just before a word that no word covers, with no pause between it and the word, is the word's start:
    after a long pause dynamic time warping can begin a word late, the word before it having taken the pause (and
    been cut back to its own speech since)."""
    for index, word in enumerate(words):
        floor = round(words[index - 1].end * FRAMES_PER_SECOND) if index else 0
        frame = min(round(word.start * FRAMES_PER_SECOND), len(loud))
        while frame > floor:
            gap = _loud_run(~loud, frame - 1, -1, floor - 1)  # quiet frames right before the word
            speech = _loud_run(loud, frame - 1 - gap, -1, floor - 1)
            if gap >= PAUSE_FRAMES or not speech:
                break
            frame -= gap + speech
        word.start = min(word.start, frame / FRAMES_PER_SECOND)


def _loud_run(loud: np.ndarray, start: int, step: int, stop: int) -> int:
    """How many frames from ``start`` towards ``stop`` (exclusive; ``step`` +1 or -1) are loud (``loud`` True)
    before the first quiet one; with ``loud`` False, the quiet ones before the first loud one."""
    count, frame = 0, start
    while frame != stop and 0 <= frame < len(loud) and loud[frame]:
        count, frame = count + 1, frame + step
    return count


def _move_stray_speech_across_boundaries(words: list[Word], loud: np.ndarray) -> None:
    """Where one word ends exactly where the next starts, a short burst of speech at the edge of one word, cut from
    the rest of it by a pause, is the other word's: dynamic time warping put the boundary a few frames into the
    neighbour. So is speech of any length cut off by a pause of half a second (after a sentence the boundary can
    land well into the next word). Move the boundary to the pause's far side so that snapping finds each word's own
    speech."""
    quiet = ~loud
    for before, after in itertools.pairwise(words):
        boundary = round(before.end * FRAMES_PER_SECOND)
        if boundary != round(after.start * FRAMES_PER_SECOND):
            continue
        first, last = round(before.start * FRAMES_PER_SECOND), round(after.end * FRAMES_PER_SECOND)
        onset = _loud_run(loud, boundary - 1, -1, first - 1)  # the next word's start, late, at the end of this one
        if onset:
            pause = _loud_run(quiet, boundary - 1 - onset, -1, first - 1)
            if _stray(onset, pause) and boundary - onset - pause > first:
                before.end = after.start = (boundary - onset) / FRAMES_PER_SECOND
                continue
        offset = _loud_run(loud, boundary, 1, last)  # this word's end, early, at the start of the next one
        if offset:
            pause = _loud_run(quiet, boundary + offset, 1, last)
            if _stray(offset, pause) and boundary + offset + pause < last:
                before.end = after.start = (boundary + offset) / FRAMES_PER_SECOND


def _stray(burst: int, pause: int) -> bool:
    """Whether ``burst`` loud frames beyond a ``pause`` of quiet ones belong to the word on the other side."""
    return pause >= SENTENCE_PAUSE_FRAMES or (burst <= STRAY_FRAMES and pause >= PAUSE_FRAMES)


def add_word_timestamps(
    segments: list[Any],
    weights: np.ndarray,
    logits: np.ndarray,
    num_frames: int,
    time_offset: float,
    decode: Callable[[list[int]], str],
    eot: int,
    language: str | None = None,
    median_filter_width: int = MEDIAN_FILTER_WIDTH,
    prepend_punctuations: str = PREPEND_PUNCTUATIONS,
    append_punctuations: str = APPEND_PUNCTUATIONS,
    frame_levels: np.ndarray | None = None,
    last_speech: float | None = None,
) -> None:
    """Set ``segment.words`` for the ``segments`` of one window (each with ``text_tokens``), in place; the segment
    bounds are then moved to their first word's start and last word's end. With ``frame_levels`` (the loudness of
    each mel frame of the window, ``speech_levels``) each word's bounds are moved in to the speech inside them.
    ``last_speech``: where the speech before this window ended (seconds from the start of the audio); the first word
    after a pause from there is kept from stretching back into it."""
    text_tokens = [token for segment in segments for token in segment.text_tokens]
    words = find_alignment(weights, logits, text_tokens, num_frames, decode, eot, language, median_filter_width)
    if not words:
        for segment in segments:
            segment.words = []
        return
    _shorten_long_words(words)
    merge_punctuation(words, prepend_punctuations, append_punctuations)
    if last_speech is not None:
        _shorten_first_word_after_pause(words, last_speech - time_offset)
    if frame_levels is not None:
        snap_to_speech(words, frame_levels[:num_frames])

    # Hand the words to the segments in order, by their token counts.
    remaining = list(words)
    for segment in segments:
        budget = len(segment.text_tokens)
        taken: list[Word] = []
        while remaining and budget > 0:
            word = remaining.pop(0)
            budget -= len(word.tokens)
            if word.word:
                start, end = round(time_offset + word.start, 2), round(time_offset + word.end, 2)
                taken.append(Word(word.word, start, end, word.probability, word.tokens))
        segment.words = taken
        if taken:
            segment.start = taken[0].start
            segment.end = max(taken[-1].end, taken[0].start)
