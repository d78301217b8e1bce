"""Long-form transcription of audio of any length, written once for every backend.

Two ways through a long recording, both over the log-mel of the whole input (``features.log_mel_spectrogram``):

- ``transcribe`` (openai-whisper's and faster-whisper's algorithm): one 30 s window at a time; the window is decoded
  with timestamps and cut into segments at each pair of timestamp tokens; the next window starts at the last
  timestamp (or after the whole window when the text ends on a lone timestamp, unless at least a second of speech
  follows the last segment in the window: the model stopped early, so the next window starts there); see
  ``segments.advance``. A window whose text compresses too well (zlib ratio above ``compression_ratio_threshold``, a
  sign of repetition) or whose tokens are too unlikely (average log-probability below ``logprob_threshold``) is
  decoded again at the next ``temperature``; a window the model finds silent (``<|nospeech|>`` probability above
  ``no_speech_threshold`` with unlikely tokens) is skipped (``windows.WindowDecoder``). The text so far is the prompt
  of the next window (``condition_on_previous_text``), after ``initial_prompt`` (``sequential.py``).
- ``transcribe_chunked``: the audio cut at pauses into chunks of at most ``chunked.CHUNK_FRAMES`` (``pause_cuts``:
  the middle of the last pause in the stretch before each limit), each chunk decoded window after window as above,
  the windows of every chunk decoded together as batches (``chunked.py``). The chunks do not overlap and a cut falls
  where nobody speaks, so every word is decoded once, by one chunk; there is no previous text between chunks
  (``initial_prompt`` is given to each). The words of every window are timed (kept in the result only with
  ``word_timestamps``): where a window's text ends, and so where its chunk resumes, is where its last word ends, not
  where the model's last timestamp says (which can run over a sentence it skipped). Worth it where a batch runs in
  about the time of one item.

Both take the same options (``TranscribeOptions``, or keyword arguments of the same names). The model is any
backend's ``WhisperForConditionalGeneration``: this package calls only its ``generate`` (the tensor work of decoding),
``detect_language`` and, for word timing, ``alignment_attention`` (see ``timing.py``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from whisper_multi.errors import InputError
from whisper_multi.features import N_FRAMES, N_SAMPLES, log_mel_spectrogram
from whisper_multi.longform.chunked import decode_chunks, pause_cuts
from whisper_multi.longform.options import (
    DEFAULT_TEMPERATURES,
    Progress,
    TranscribeOptions,
    options_with,
    report_progress,
)
from whisper_multi.longform.segments import Segment, TranscriptionResult, transcription_result
from whisper_multi.longform.sequential import PreviousText, clip_frames, decode_clips, parse_clip_timestamps
from whisper_multi.longform.windows import PROMPT_LENGTH, WindowDecoder, compression_ratio, mel_window, word_timer
from whisper_multi.text.special_tokens import SpecialTokens, resolve_language_and_task, special_tokens_for_vocab

__all__ = [
    "DEFAULT_TEMPERATURES",
    "Progress",
    "Segment",
    "TranscribeOptions",
    "TranscriptionResult",
    "compression_ratio",
    "parse_clip_timestamps",
    "pause_cuts",
    "transcribe",
    "transcribe_chunked",
]


def transcribe(
    model: Any,
    audio: str | os.PathLike[str] | np.ndarray,
    tokenizer: Any,
    options: TranscribeOptions | None = None,
    *,
    condition_on_previous_text: bool = True,
    prompt_reset_on_temperature: float = 0.5,
    clip_timestamps: str | Sequence[float] | None = None,
    progress: Progress | None = None,
    **keywords: Any,
) -> TranscriptionResult:
    """Transcribe (or translate) ``audio`` of any length, window by window; see the module doc.

    ``audio``: a file path or a 16 kHz mono float waveform. ``options`` and ``keywords``: see ``TranscribeOptions``
    (``language``, ``task``, ``temperature``, ``word_timestamps``, ...). ``condition_on_previous_text``: the text so
    far is the next window's prompt, from the last window decoded above ``prompt_reset_on_temperature`` on.
    ``clip_timestamps``: only these ranges, ``"start,end,start,end..."`` seconds.
    ``progress(done_seconds, total_seconds)`` is called after each window.
    """
    options = options_with(options, keywords, "transcribe")
    mel, content_frames, decoder = _prepare(model, tokenizer, audio, options)
    timer = word_timer(model, decoder, options.word_timestamps)
    initial = _initial_prompt_tokens(tokenizer, options.initial_prompt)
    history = PreviousText(initial, condition_on_previous_text, prompt_reset_on_temperature)
    clips = clip_frames(clip_timestamps, content_frames)
    segments = decode_clips(decoder, timer, mel, content_frames, clips, history, progress)
    report_progress(progress, content_frames, content_frames)
    return transcription_result(segments, decoder.language, content_frames, options.word_timestamps)


def transcribe_chunked(
    model: Any,
    audio: str | os.PathLike[str] | np.ndarray,
    tokenizer: Any,
    options: TranscribeOptions | None = None,
    *,
    batch_size: int = 8,
    progress: Progress | None = None,
    **keywords: Any,
) -> TranscriptionResult:
    """Transcribe ``audio`` cut at pauses into chunks (``pause_cuts``), the windows of the chunks decoded
    ``batch_size`` at a time; see the module doc. The options are ``transcribe``'s, less the previous text: each
    window's prompt is ``initial_prompt`` alone."""
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    options = options_with(options, keywords, "transcribe_chunked")
    mel, content_frames, decoder = _prepare(model, tokenizer, audio, options)
    # Every window's words are timed where the model can (every backend's can), for where its chunk resumes.
    timer = word_timer(model, decoder, options.word_timestamps or hasattr(model, "alignment_attention"))
    prompt = _initial_prompt_tokens(tokenizer, options.initial_prompt)[-PROMPT_LENGTH:]
    segments = decode_chunks(decoder, timer, mel, content_frames, prompt, batch_size, progress)
    return transcription_result(segments, decoder.language, content_frames, options.word_timestamps)


def _prepare(
    model: Any, tokenizer: Any, audio: str | os.PathLike[str] | np.ndarray, options: TranscribeOptions
) -> tuple[np.ndarray, int, WindowDecoder]:
    """The log-mel of ``audio`` (padded by a window of silence), how many of its frames are audio, and the decoder of
    its windows with the language and task resolved (the language detected from the first window if not given)."""
    special = special_tokens_for_vocab(model.config.vocab_size)
    # The request is checked before the audio is read: the one language rule of generate and the command line.
    language, task = resolve_language_and_task(options.language, options.task, special)
    temperatures = options.temperatures
    mel = log_mel_spectrogram(_load(audio), model.config.num_mel_bins, padding=N_SAMPLES)
    if language is None:
        language = _detect_language(model, mel, special)
    decoder = WindowDecoder(model, tokenizer, replace(options, language=language, task=task), temperatures)
    return mel, mel.shape[1] - N_FRAMES, decoder


def _load(audio: str | os.PathLike[str] | np.ndarray) -> np.ndarray:
    if isinstance(audio, (str, os.PathLike)):
        from whisper_multi.audio import load_audio

        return load_audio(audio)
    waveform = np.asarray(audio, dtype=np.float32)
    if waveform.ndim != 1:
        raise InputError(f"audio must be a 1-D 16 kHz waveform or a file path, got an array of shape {waveform.shape}")
    return waveform


def _detect_language(model: Any, mel: np.ndarray, special: SpecialTokens) -> str:
    if not special.is_multilingual:
        return "en"
    detection = model.detect_language(mel_window(mel, 0, min(N_FRAMES, mel.shape[1]))[None])
    return str(detection.languages[0])


def _initial_prompt_tokens(tokenizer: Any, initial_prompt: str | None) -> list[int]:
    if not initial_prompt:
        return []
    return list(tokenizer.encode(" " + initial_prompt.strip(), add_special_tokens=False))
