"""The options of long-form transcription, declared once: ``transcribe`` and ``transcribe_chunked`` take them as a
``TranscribeOptions``, as keyword arguments of the same names, or both (the keywords win)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from whisper_multi.errors import InputError
from whisper_multi.longform.timing import (
    APPEND_PUNCTUATIONS,
    FRAMES_PER_SECOND,
    MEDIAN_FILTER_WIDTH,
    PREPEND_PUNCTUATIONS,
)

DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
Progress = Callable[[float, float], None]  # progress(done_seconds, total_seconds)


@dataclass(frozen=True)
class TranscribeOptions:
    """How the windows of a long recording are decoded, whichever way through it (see ``transcribe``).

    ``language``: a name, code or token ("English", "en", "<|en|>"), detected from the first 30 s when left out on a
    multilingual model. ``temperature``: one, or the temperatures to fall back through when a window's text
    compresses too well (zlib ratio above ``compression_ratio_threshold``, a sign of repetition) or its tokens are too
    unlikely (average log-probability below ``logprob_threshold``); a window whose ``<|nospeech|>`` probability is
    above ``no_speech_threshold`` with unlikely tokens is silent and skipped. ``initial_prompt``: text that comes
    before the audio. ``num_beams`` and ``length_penalty``: the beam search at temperature 0.
    ``word_timestamps``: time every word, with ``alignment_heads`` (or ``model_dir``, to read them from a CTranslate2
    ``config.json``), ``median_filter_width`` and the punctuation merged into its neighbour word.
    ``snap_words_to_speech``: move word bounds in to the loud frames inside them (``timing.snap_to_speech``).
    ``resume_after_early_stop``: when a window's text ends on a lone timestamp but a second or more of speech follows
    its last segment, start the next window at that segment's end instead of skipping the rest of the window
    (False: openai-whisper's and faster-whisper's rule). ``seed``: of the sampled fallbacks.
    """

    language: str | None = None
    task: str = "transcribe"
    temperature: float | Sequence[float] = DEFAULT_TEMPERATURES
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    initial_prompt: str | None = None
    word_timestamps: bool = False
    num_beams: int = 1
    length_penalty: float | None = None
    alignment_heads: Sequence[tuple[int, int]] | None = None
    model_dir: str | os.PathLike[str] | None = None
    median_filter_width: int = MEDIAN_FILTER_WIDTH
    prepend_punctuations: str = PREPEND_PUNCTUATIONS
    append_punctuations: str = APPEND_PUNCTUATIONS
    snap_words_to_speech: bool = True
    resume_after_early_stop: bool = True
    seed: int = 0

    @property
    def temperatures(self) -> tuple[float, ...]:
        """The temperatures to try, in order; checked."""
        temperature = self.temperature
        values = (
            (float(temperature),) if isinstance(temperature, (int, float)) else tuple(float(t) for t in temperature)
        )
        if not values or any(t < 0 for t in values):
            raise InputError(f"temperature must be one or more values >= 0, got {temperature!r}")
        return values


def options_with(options: TranscribeOptions | None, keywords: dict[str, Any], caller: str) -> TranscribeOptions:
    """``options`` (default: ``TranscribeOptions()``) with ``keywords`` set; a name that is no option is refused as
    Python refuses an unknown keyword argument."""
    names = {field.name for field in fields(TranscribeOptions)}
    unknown = sorted(set(keywords) - names)
    if unknown:
        raise TypeError(
            f"{caller}() got unexpected keyword arguments: {', '.join(unknown)}; "
            f"the options are {', '.join(sorted(names))}"
        )
    return replace(options or TranscribeOptions(), **keywords)


def report_progress(progress: Progress | None, frames: int, total: int) -> None:
    """``progress(done_seconds, total_seconds)`` of ``frames`` done out of ``total``, where one is given."""
    if progress is not None:
        progress(frames / FRAMES_PER_SECOND, total / FRAMES_PER_SECOND)
