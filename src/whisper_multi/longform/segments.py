"""From decoded windows to segments, and from segments to the result; shared by both ways through a recording.

A window's tokens are cut into segments at each pair of consecutive timestamp tokens (``split_segments``); a
``Span`` is a stretch of audio decoded window after window, and ``advance`` adds a decoded window's segments to it
and moves it on to where the next window starts: the last timestamp, the end of the last word when words are timed,
or the end of the window when the text ends on a lone timestamp (unless at least a second of speech follows the
last segment: the model stopped early, so the next window starts there).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from whisper_multi.features import N_FRAMES
from whisper_multi.longform.timing import FRAMES_PER_SECOND, SPEECH_LEVEL, SPEECH_RANGE, Word, speech_levels
from whisper_multi.longform.windows import DecodedWindow, WindowDecoder, WordTimer
from whisper_multi.text.special_tokens import TIME_PRECISION

INPUT_STRIDE = 2  # mel frames per encoder position, so per timestamp step
UNHEARD_SPEECH_FRAMES = 100  # loud frames (1 s) after a window's last segment that a lone-timestamp ending can't skip
LAST_WORD_DECAY_FRAMES = 50  # frames after the last segment's end still counted as its sound


@dataclass
class Segment:
    """A stretch of text with its times (seconds) and the statistics of the window decode that produced it."""

    id: int
    seek: int  # the mel frame where its window starts
    start: float
    end: float
    text: str
    tokens: list[int]  # text and timestamp tokens, as decoded
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    temperature: float
    words: list[Word] | None = None
    eot: int = field(default=50257, repr=False)

    @property
    def text_tokens(self) -> list[int]:
        return [token for token in self.tokens if token < self.eot]

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": self.id, "seek": self.seek, "start": self.start, "end": self.end, "text": self.text,
            "tokens": list(self.tokens), "temperature": self.temperature, "avg_logprob": self.avg_logprob,
            "compression_ratio": self.compression_ratio, "no_speech_prob": self.no_speech_prob,
        }  # fmt: skip
        if self.words is not None:
            item["words"] = [word.to_dict() for word in self.words]
        return item


@dataclass
class TranscriptionResult:
    """The whole text, its segments, the language and the duration of the audio (seconds)."""

    text: str
    segments: list[Segment]
    language: str
    duration: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "language": self.language,
            "duration": self.duration,
            "segments": [segment.to_dict() for segment in self.segments],
        }


Piece = tuple[float, float, list[int]]  # (start, end, tokens) of a segment to be


def split_segments(
    tokens: list[int], timestamp_begin: int, time_offset: float, segment_duration: float
) -> tuple[list[Piece], int | None]:
    """Segments (start, end, tokens) of one window, and how many timestamp steps to seek by (None: the whole
    window). Segments end at each pair of consecutive timestamp tokens."""
    is_timestamp = [token >= timestamp_begin for token in tokens]
    single_timestamp_ending = len(tokens) >= 2 and is_timestamp[-1] and not is_timestamp[-2]
    cuts = [i for i in range(1, len(tokens)) if is_timestamp[i] and is_timestamp[i - 1]]
    if not cuts:
        duration = segment_duration
        timestamps = [token for token, stamp in zip(tokens, is_timestamp) if stamp]
        if timestamps and timestamps[-1] != timestamp_begin:
            duration = (timestamps[-1] - timestamp_begin) * TIME_PRECISION
        return [(time_offset, time_offset + duration, tokens)], None
    if single_timestamp_ending:
        cuts.append(len(tokens))
    segments = []
    for first, cut in zip([0, *cuts], cuts):
        piece = tokens[first:cut]
        start = time_offset + (piece[0] - timestamp_begin) * TIME_PRECISION
        end = time_offset + (piece[-1] - timestamp_begin) * TIME_PRECISION
        segments.append((start, end, piece))
    seek_steps = None if single_timestamp_ending else tokens[cuts[-1] - 1] - timestamp_begin
    return segments, seek_steps


def make_segments(decoder: WindowDecoder, result: DecodedWindow, pieces: list[Piece], seek: int) -> list[Segment]:
    """The segments of ``pieces`` of a window decoded as ``result``, less those where nothing was said."""
    segments = []
    for start, end, tokens in pieces:
        text = decoder.decode_text(tokens)
        if start == end or not text.strip():
            continue  # an empty segment: nothing was said
        segments.append(
            Segment(
                id=0, seek=seek, start=round(start, 3), end=round(end, 3), text=text, tokens=tokens,
                avg_logprob=result.avg_logprob, compression_ratio=result.compression_ratio,
                no_speech_prob=result.no_speech_prob, temperature=result.temperature, eot=decoder.eot,
            )
        )  # fmt: skip
    return segments


@dataclass
class Span:
    """A stretch [start, end) of mel frames decoded window after window; ``seek`` is where decoding has reached, and
    ``last_speech`` (seconds) where the speech of its last segment ended."""

    start: int
    end: int
    seek: int
    last_speech: float
    segments: list[Segment] = field(default_factory=list)

    @property
    def window_size(self) -> int:
        return min(N_FRAMES, self.end - self.seek)


def advance(
    span: Span, window: np.ndarray, result: DecodedWindow, decoder: WindowDecoder, timer: WordTimer | None, states: Any
) -> list[Segment]:
    """The segments of ``span``'s next ``window``, decoded as ``result`` (words timed when ``timer``; ``states``: the
    window's encoder states, or None), added to ``span``, which moves on: past the window when it is silent or its
    text ends on a lone timestamp, else to its last timestamp (its last word's end with word timing)."""
    seek, size = span.seek, span.window_size
    if decoder.is_silent(result):
        span.seek = seek + size
        return []
    time_offset = seek / FRAMES_PER_SECOND
    pieces, seek_steps = split_segments(result.tokens, decoder.timestamp_begin, time_offset, size / FRAMES_PER_SECOND)
    window_end = time_offset + size / FRAMES_PER_SECOND
    pieces = [(min(start, window_end), min(end, window_end), tokens) for start, end, tokens in pieces]
    current = make_segments(decoder, result, pieces, seek)
    next_seek = seek + size if seek_steps is None else seek + seek_steps * INPUT_STRIDE
    if timer is not None:
        timer(current, window, size, time_offset, states, span.last_speech)
        last_word_end = next((s.words[-1].end for s in reversed(current) if s.words), None)
        if seek_steps is not None and last_word_end is not None and last_word_end > time_offset:
            next_seek = round(last_word_end * FRAMES_PER_SECOND)
    if seek_steps is None and current and decoder.options.resume_after_early_stop:
        next_seek = _resume_after_early_stop(current, window, seek, size, next_seek)
    span.seek = max(next_seek, seek + 1)  # always move on
    if current:
        span.last_speech = last_end(current)
    span.segments += current
    return current


def _resume_after_early_stop(current: list[Segment], window: np.ndarray, seek: int, size: int, next_seek: int) -> int:
    """Where the next window starts after a text that ended on a lone timestamp, which skips the rest of the window:
    where speech remains after the last segment (the tiny models stop at long pauses), that segment's end."""
    end_frame = round((last_end(current) - seek / FRAMES_PER_SECOND) * FRAMES_PER_SECOND)
    if end_frame >= FRAMES_PER_SECOND and _speech_left_behind(window, size, end_frame):
        return seek + end_frame
    return next_seek


def last_end(segments: list[Segment]) -> float:
    """Where the last segment's speech ends: its last word's end when words were timed, else its end."""
    last = segments[-1]
    return last.words[-1].end if last.words else last.end


def _speech_left_behind(window: np.ndarray, size: int, end_frame: int) -> bool:
    """Whether the window's first ``size`` frames hold at least ``UNHEARD_SPEECH_FRAMES`` of speech after
    ``end_frame`` (the end of its last segment) and the decay of the last word."""
    levels = speech_levels(window[:, :size])
    floor, peak = float(levels.min()), float(levels.max())
    if peak - floor < SPEECH_RANGE:  # noise or silence throughout
        return False
    loud = levels[end_frame + LAST_WORD_DECAY_FRAMES :] > floor + SPEECH_LEVEL * (peak - floor)
    return int(loud.sum()) >= UNHEARD_SPEECH_FRAMES


def transcription_result(
    segments: list[Segment], language: str, content_frames: int, word_timestamps: bool
) -> TranscriptionResult:
    """The transcription of ``segments``: numbered, in order without overlaps, words kept only when asked for."""
    for index, segment in enumerate(segments):
        segment.id = index
        if not word_timestamps:
            segment.words = None
    _order_without_overlap(segments)
    return TranscriptionResult(
        text="".join(segment.text for segment in segments),
        segments=segments,
        language=language,
        duration=content_frames / FRAMES_PER_SECOND,
    )


def _order_without_overlap(segments: list[Segment]) -> None:
    """Each segment (and its first word) starts no earlier than the one before ends, in place: where a window's last
    timestamp ran past the next window's first one, the earlier segment is cut back."""
    for before, after in itertools.pairwise(segments):
        if after.start < before.start:
            after.start = before.start
        if before.end > after.start:
            before.end = max(before.start, after.start)
            if before.words:
                before.words[-1].end = max(before.words[-1].start, min(before.words[-1].end, after.start))
        after.end = max(after.end, after.start)
