"""The pause-cut batched way through a recording (``transcribe_chunked``): the audio cut at pauses into chunks, each
chunk decoded window after window, the next windows of every chunk decoded together as batches."""

from __future__ import annotations

import itertools

import numpy as np

from whisper_multi.longform.options import Progress, report_progress
from whisper_multi.longform.segments import Segment, Span, advance
from whisper_multi.longform.timing import FRAMES_PER_SECOND, SPEECH_LEVEL, SPEECH_RANGE, speech_levels
from whisper_multi.longform.windows import WindowDecoder, WordTimer, mel_window

CHUNK_FRAMES = 2400  # chunks of at most 24 s: their 30 s window leaves the model room to finish the last sentence
CUT_SEARCH_FRAMES = 1400  # a chunk is cut in the last 14 s before its limit
CUT_SMOOTHING_FRAMES = 20  # loudness averaged over 0.2 s when looking for the quietest place to cut
CUT_PAUSE_FRAMES = 30  # a quiet stretch of 0.3 s is a pause between phrases: the last one before the limit is cut


def pause_cuts(mel: np.ndarray, content_frames: int, limit: int = CHUNK_FRAMES) -> list[tuple[int, int]]:
    """[start, end) mel frames of chunks of at most ``limit`` frames covering the audio, each cut in the middle of
    the last pause (``CUT_PAUSE_FRAMES`` quiet) of the last ``CUT_SEARCH_FRAMES`` before its limit, else of its
    longest quiet stretch, else at its quietest ``CUT_SMOOTHING_FRAMES``."""
    levels = np.convolve(
        speech_levels(mel[:, :content_frames]), np.ones(CUT_SMOOTHING_FRAMES) / CUT_SMOOTHING_FRAMES, mode="same"
    )
    floor, peak = (float(levels.min()), float(levels.max())) if len(levels) else (0.0, 0.0)
    quiet = levels <= floor + SPEECH_LEVEL * (peak - floor)
    cuts, start = [], 0
    while content_frames - start > limit:
        low = start + limit - min(CUT_SEARCH_FRAMES, limit // 2)
        cut = _pause_middle(quiet[low : start + limit]) if peak - floor >= SPEECH_RANGE else None
        cut = low + (cut if cut is not None else int(np.argmin(levels[low : start + limit])))
        cuts.append((start, cut))
        start = cut
    cuts.append((start, content_frames))
    return cuts


def _pause_middle(quiet: np.ndarray) -> int | None:
    """The middle of the last run of at least ``CUT_PAUSE_FRAMES`` True in ``quiet``, else of the longest run (the
    later one of equal runs), or None without any."""
    runs, index = [], 0  # (start, length) of each quiet run
    for is_quiet, run in itertools.groupby(quiet):
        length = len(list(run))
        if is_quiet:
            runs.append((index, length))
        index += length
    if not runs:
        return None
    pauses = [run for run in runs if run[1] >= CUT_PAUSE_FRAMES]
    start, length = pauses[-1] if pauses else max(reversed(runs), key=lambda run: run[1])
    return start + length // 2


def decode_chunks(
    decoder: WindowDecoder,
    timer: WordTimer | None,
    mel: np.ndarray,
    content_frames: int,
    prompt: list[int],
    batch_size: int,
    progress: Progress | None,
) -> list[Segment]:
    """The segments of every chunk of ``mel`` (``pause_cuts``), in order: the next windows of the chunks not done
    decoded ``batch_size`` at a time, each with ``prompt``, until every chunk is done."""
    spans = [Span(start, end, start, start / FRAMES_PER_SECOND) for start, end in pause_cuts(mel, content_frames)]
    active = [span for span in spans if span.seek < span.end]
    while active:
        for first in range(0, len(active), batch_size):
            _decode_batch(decoder, timer, mel, active[first : first + batch_size], prompt)
            report_progress(progress, sum(min(span.seek, span.end) - span.start for span in spans), content_frames)
        active = [span for span in spans if span.seek < span.end]
    return [segment for span in spans for segment in span.segments]


def _decode_batch(
    decoder: WindowDecoder, timer: WordTimer | None, mel: np.ndarray, batch: list[Span], prompt: list[int]
) -> None:
    """The next window of each span of ``batch``, decoded together; each span gets its segments and moves on."""
    windows = np.stack([mel_window(mel, span.seek, span.window_size) for span in batch])
    results = decoder.decode(windows, prompt, batch[0].seek)
    for position, (span, result) in enumerate(zip(batch, results)):
        advance(span, windows[position], result, decoder, timer, decoder.states_of(position))
