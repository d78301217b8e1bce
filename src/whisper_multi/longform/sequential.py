"""The sequential way through a recording (``transcribe``): one window at a time, each with the text so far as its
prompt, over the clips asked for."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from whisper_multi.errors import InputError
from whisper_multi.longform.options import Progress, report_progress
from whisper_multi.longform.segments import Segment, Span, advance
from whisper_multi.longform.timing import FRAMES_PER_SECOND
from whisper_multi.longform.windows import PROMPT_LENGTH, WindowDecoder, WordTimer, mel_window


class PreviousText:
    """The tokens said so far, the prompt of the next window: the initial prompt, then every segment's tokens, from
    the last reset on. Without ``condition_on_previous_text`` every window resets it; otherwise a window decoded above
    ``prompt_reset_on_temperature`` does (a window decoded at a high temperature is not a prompt to build on)."""

    def __init__(self, initial: list[int], condition_on_previous_text: bool, prompt_reset_on_temperature: float):
        self.tokens, self.since = list(initial), 0
        self.condition_on_previous_text = condition_on_previous_text
        self.prompt_reset_on_temperature = prompt_reset_on_temperature

    def prompt(self) -> list[int]:
        return self.tokens[self.since :][-PROMPT_LENGTH:]

    def add(self, segments: list[Segment], temperature: float) -> None:
        """The segments of a window decoded at ``temperature``."""
        for segment in segments:
            self.tokens.extend(segment.tokens)
        if not self.condition_on_previous_text or temperature > self.prompt_reset_on_temperature:
            self.since = len(self.tokens)


def decode_clips(
    decoder: WindowDecoder,
    timer: WordTimer | None,
    mel: np.ndarray,
    content_frames: int,
    clips: list[tuple[int, int]],
    history: PreviousText,
    progress: Progress | None,
) -> list[Segment]:
    """The segments of every clip ([start, end) mel frames of the first ``content_frames``), in order, window after
    window; a clip starts no earlier than where the one before stopped."""
    segments: list[Segment] = []
    seek, last_speech = 0, 0.0
    for clip_start, clip_end in clips:
        span = Span(clip_start, clip_end, max(seek, clip_start), last_speech)
        while span.seek < span.end:
            window = mel_window(mel, span.seek, span.window_size)
            result = decoder.decode(window[None], history.prompt(), span.seek)[0]
            history.add(advance(span, window, result, decoder, timer, decoder.states_of(0)), result.temperature)
            report_progress(progress, min(span.seek, content_frames), content_frames)
        segments += span.segments
        seek, last_speech = span.seek, span.last_speech
    return segments


def parse_clip_timestamps(clip: str | Sequence[float] | None, duration: float) -> list[tuple[float, float]]:
    """``"0,10,20,30"`` or ``[0, 10, 20, 30]`` (start, end, start, end ...; an open last end runs to the end of the
    audio) as (start, end) pairs of seconds."""
    if clip is None or clip == "" or clip == "0":
        return [(0.0, duration)]
    values = [float(v) for v in clip.split(",") if v.strip()] if isinstance(clip, str) else [float(v) for v in clip]
    if len(values) % 2:
        values.append(duration)
    pairs = [(values[i], min(values[i + 1], duration)) for i in range(0, len(values), 2)]
    for start, end in pairs:
        if start < 0 or end < start:
            raise InputError(f"clip_timestamps range ({start}, {end}) is not 0 <= start <= end")
    return pairs


def clip_frames(clip_timestamps: str | Sequence[float] | None, content_frames: int) -> list[tuple[int, int]]:
    """The [start, end) mel frames of the clips to transcribe (``parse_clip_timestamps``)."""
    return [
        (round(start * FRAMES_PER_SECOND), min(round(end * FRAMES_PER_SECOND), content_frames))
        for start, end in parse_clip_timestamps(clip_timestamps, content_frames / FRAMES_PER_SECOND)
    ]
