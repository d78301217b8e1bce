"""Long-form transcription of audio of any length, written once for every backend.

Two ways through a long recording, both over the log-mel of the whole input (``features.log_mel_spectrogram``):

- ``transcribe`` (openai-whisper's and faster-whisper's algorithm): one 30 s window at a time; the window is decoded
  with timestamps and cut into segments at each pair of timestamp tokens; the next window starts at the last
  timestamp (or after the whole window when the text ends on a lone timestamp, unless at least a second of speech
  follows the last segment in the window: the model stopped early, so the next window starts there). A window whose
  text compresses too
  well (zlib ratio above ``compression_ratio_threshold``, a sign of repetition) or whose tokens are too unlikely
  (average log-probability below ``logprob_threshold``) is decoded again at the next ``temperature``; a window the
  model finds silent (``<|nospeech|>`` probability above ``no_speech_threshold`` with unlikely tokens) is skipped.
  The text so far is the prompt of the next window (``condition_on_previous_text``), after ``initial_prompt``.
- ``transcribe_chunked``: the audio cut at pauses into chunks of at most 30 s (``pause_cuts``: the middle of the
  last pause in the 20 s before each 30 s limit), each chunk decoded window after window as above, the windows of
  every chunk decoded together as batches. The chunks do not overlap and a cut falls where nobody speaks, so every
  word is decoded once, by one chunk; there is no previous text between chunks (``initial_prompt`` is given to
  each). The words of every window are timed (kept in the result only with ``word_timestamps``): where a window's
  text ends, and so where its chunk resumes, is where its last word ends, not where the model's last timestamp says
  (which can run over a sentence it skipped). Faster where a batch runs in about the time of one item.

The model is any backend's ``WhisperForConditionalGeneration``: this module calls only its ``generate`` (the tensor
work of decoding), ``detect_language`` and, for ``word_timestamps``, ``alignment_attention`` (see ``timing.py``).
"""

from __future__ import annotations

import itertools
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from whisper_multi.errors import InputError
from whisper_multi.features import HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram
from whisper_multi.longform.timing import (
    APPEND_PUNCTUATIONS,
    MEDIAN_FILTER_WIDTH,
    PREPEND_PUNCTUATIONS,
    SPEECH_LEVEL,
    SPEECH_RANGE,
    Word,
    add_word_timestamps,
    alignment_heads_for,
    speech_levels,
)
from whisper_multi.text.special_tokens import resolve_language_and_task, special_tokens_for_vocab

FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames a second
INPUT_STRIDE = 2  # mel frames per encoder position, so per timestamp step
TIME_PRECISION = INPUT_STRIDE * HOP_LENGTH / SAMPLE_RATE  # 0.02 s between timestamp tokens
DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
MAX_INITIAL_TIMESTAMP = 1.0  # seconds: the first timestamp of a window comes no later than this
SAMPLE_LENGTH = 224  # the most tokens decoded per window (half the decoder's context), as openai-whisper
PROMPT_LENGTH = 223  # the most previous-text tokens in a prompt
ALIGNMENT_BUCKET = 64  # the word-timing pass's token count is padded to a multiple of this
UNHEARD_SPEECH_FRAMES = 100  # loud frames (1 s) after a window's last segment that a lone-timestamp ending can't skip
CHUNK_FRAMES = 2400  # chunks of at most 24 s: their 30 s window leaves the model room to finish the last sentence
CUT_SEARCH_FRAMES = 1400  # a chunk is cut in the last 14 s before its limit
CUT_SMOOTHING_FRAMES = 20  # loudness averaged over 0.2 s when looking for the quietest place to cut
CUT_PAUSE_FRAMES = 30  # a quiet stretch of 0.3 s is a pause between phrases: the last one before the limit is cut
LAST_WORD_DECAY_FRAMES = 50  # frames after the last segment's end still counted as its sound
Progress = Callable[[float, float], None]


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


@dataclass
class _Decoded:
    """One window's decode: the generated tokens (no prefix, no end of text) and its statistics."""

    tokens: list[int]
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float = 0.0


@dataclass(frozen=True)
class _Options:
    language: str | None
    task: str
    temperatures: tuple[float, ...]
    compression_ratio_threshold: float | None
    logprob_threshold: float | None
    no_speech_threshold: float | None
    num_beams: int
    length_penalty: float | None
    seed: int


def compression_ratio(text: str) -> float:
    """How much zlib shrinks the text: repeated text compresses far better than speech does."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _load(audio: str | os.PathLike[str] | np.ndarray) -> np.ndarray:
    if isinstance(audio, (str, os.PathLike)):
        from whisper_multi.audio import load_audio

        return load_audio(audio)
    waveform = np.asarray(audio, dtype=np.float32)
    if waveform.ndim != 1:
        raise InputError(f"audio must be a 1-D 16 kHz waveform or a file path, got an array of shape {waveform.shape}")
    return waveform


def _temperatures(temperature: float | Sequence[float]) -> tuple[float, ...]:
    values = (float(temperature),) if isinstance(temperature, (int, float)) else tuple(float(t) for t in temperature)
    if not values or any(t < 0 for t in values):
        raise InputError(f"temperature must be one or more values >= 0, got {temperature!r}")
    return values


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


# ---------------------------------------------------------------------------------------------------------------------
# Decoding windows (the backend's generate does the tensor work)
# ---------------------------------------------------------------------------------------------------------------------
class _Decoder:
    """Decodes batches of 30 s windows with temperature fallback, through ``model.generate``."""

    def __init__(self, model: Any, tokenizer: Any, options: _Options):
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.special = special_tokens_for_vocab(model.config.vocab_size)
        self.eot = self.special.eot
        self.timestamp_begin = self.special.timestamp_begin
        self.max_target = int(model.config.max_target_positions)
        self.encoder_states: Any = None  # of the windows decoded last, when the model can hand them over

    def states_of(self, index: int) -> Any:
        """The encoder states of window ``index`` of the last batch (batch of one), or None."""
        return None if self.encoder_states is None else self.encoder_states[index : index + 1]

    @property
    def sot_sequence(self) -> list[int]:
        """``<|startoftranscript|>`` and, on a multilingual model, the language and task tokens."""
        if not self.special.is_multilingual:
            return [self.special.sot]
        language = self.special.language_token(self.options.language or "en")
        task = self.special.task_to_id[self.options.task]
        return [self.special.sot, language, task]

    def decode_text(self, tokens: list[int]) -> str:
        return self.tokenizer.decode([token for token in tokens if token < self.eot])

    def _generate(
        self, features: np.ndarray, prompt: list[int], temperature: float, seed: int, states: Any = None
    ) -> list[_Decoded]:
        prefix_length = len(prompt) + (1 if prompt else 0) + len(self.sot_sequence)
        multilingual = self.special.is_multilingual
        given = {} if states is None else {"encoder_outputs": states}
        outputs = self.model.generate(
            features,
            language=self.options.language if multilingual else None,
            task=self.options.task if multilingual else None,
            return_timestamps=True,
            prompt_ids=np.asarray([self.special.sot_prev, *prompt], dtype=np.int32) if prompt else None,
            temperature=temperature,
            num_beams=self.options.num_beams if temperature == 0.0 else 1,
            length_penalty=self.options.length_penalty,
            max_new_tokens=min(SAMPLE_LENGTH, self.max_target - prefix_length),
            max_initial_timestamp_index=round(MAX_INITIAL_TIMESTAMP / TIME_PRECISION),
            return_dict_in_generate=True,
            seed=seed,
            **given,
        )
        sequences = _to_numpy(outputs.sequences)
        decoded = []
        for index, row in enumerate(sequences):
            generated = [int(token) for token in row[prefix_length:]]
            if self.eot in generated:
                generated = generated[: generated.index(self.eot)]
            decoded.append(
                _Decoded(
                    tokens=generated,
                    avg_logprob=float(outputs.avg_logprobs[index]),
                    no_speech_prob=float(outputs.no_speech_probs[index]),
                    temperature=temperature,
                )
            )
        return decoded

    def _needs_fallback(self, result: _Decoded) -> bool:
        options = self.options
        result.compression_ratio = compression_ratio(self.decode_text(result.tokens))
        too_repetitive = (
            options.compression_ratio_threshold is not None
            and result.compression_ratio > options.compression_ratio_threshold
        )
        too_unlikely = options.logprob_threshold is not None and result.avg_logprob < options.logprob_threshold
        # Silence is not worth a retry: it is skipped instead.
        silent = (
            options.no_speech_threshold is not None
            and result.no_speech_prob > options.no_speech_threshold
            and too_unlikely
        )
        return (too_repetitive or too_unlikely) and not silent

    def decode(self, features: np.ndarray, prompt: list[int], seed: int) -> list[_Decoded]:
        """Each window decoded at the first temperature that passes the thresholds (or the last one tried)."""
        results: list[_Decoded | None] = [None] * len(features)
        pending = list(range(len(features)))
        # The windows are encoded once, for every temperature and for word timing (a backend model's encode_audio).
        encode = getattr(self.model, "encode_audio", None)
        self.encoder_states = None if encode is None else encode(features)
        for attempt, temperature in enumerate(self.options.temperatures):
            states = self.encoder_states if len(pending) == len(features) else None  # a retry of some: encode them
            decoded = self._generate(features[pending], prompt, temperature, seed + attempt, states)
            retry = []
            for index, result in zip(pending, decoded):
                results[index] = result
                if self._needs_fallback(result):
                    retry.append(index)
            pending = retry
            if not pending:
                break
        return [result for result in results if result is not None]

    def is_silent(self, result: _Decoded) -> bool:
        options = self.options
        if options.no_speech_threshold is None or result.no_speech_prob <= options.no_speech_threshold:
            return False
        return not (options.logprob_threshold is not None and result.avg_logprob > options.logprob_threshold)


def _split_segments(
    tokens: list[int], timestamp_begin: int, time_offset: float, segment_duration: float
) -> tuple[list[tuple[float, float, list[int]]], int | None]:
    """Segments (start, end, tokens) of one window, and how many timestamp steps to seek by (None: the whole
    window). Segments end at each pair of consecutive timestamp tokens."""
    is_timestamp = [token >= timestamp_begin for token in tokens]
    single_timestamp_ending = len(tokens) >= 2 and is_timestamp[-1] and not is_timestamp[-2]
    cuts = [i for i in range(1, len(tokens)) if is_timestamp[i] and is_timestamp[i - 1]]
    segments = []
    if cuts:
        if single_timestamp_ending:
            cuts.append(len(tokens))
        last = 0
        for cut in cuts:
            piece = tokens[last:cut]
            start = time_offset + (piece[0] - timestamp_begin) * TIME_PRECISION
            end = time_offset + (piece[-1] - timestamp_begin) * TIME_PRECISION
            segments.append((start, end, piece))
            last = cut
        seek_steps = None if single_timestamp_ending else tokens[last - 1] - timestamp_begin
        return segments, seek_steps
    duration = segment_duration
    timestamps = [token for token, stamp in zip(tokens, is_timestamp) if stamp]
    if timestamps and timestamps[-1] != timestamp_begin:
        duration = (timestamps[-1] - timestamp_begin) * TIME_PRECISION
    segments.append((time_offset, time_offset + duration, tokens))
    return segments, None


def _make_segments(
    decoder: _Decoder, result: _Decoded, pieces: list[tuple[float, float, list[int]]], seek: int
) -> list[Segment]:
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


def _keep_owned_words(segments: list[Segment], owned_from: float, owned_to: float) -> list[Segment]:
    """The segments cut down to their words whose middle falls in [owned_from, owned_to); a segment left without
    words is dropped, one cut short gets the text, tokens and bounds of the words it keeps."""
    kept = []
    for segment in segments:
        words = [w for w in segment.words or [] if owned_from <= (w.start + w.end) / 2 < owned_to]
        if not words:
            continue
        if len(words) < len(segment.words or []):
            segment.words = words
            segment.text = "".join(word.word for word in words)
            segment.tokens = [token for word in words for token in word.tokens]
            segment.start, segment.end = words[0].start, words[-1].end
        kept.append(segment)
    return kept


def _last_end(segments: list[Segment]) -> float:
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


def _window(mel: np.ndarray, seek: int, size: int) -> np.ndarray:
    """The mel frames [seek, seek + size) padded with zeros to 30 s: (n_mels, N_FRAMES)."""
    window = np.zeros((mel.shape[0], N_FRAMES), dtype=np.float32)
    window[:, :size] = mel[:, seek : seek + size]
    return window


class _WordTimer:
    """Adds word timestamps to the segments of a window (one forward pass of the backend)."""

    def __init__(
        self,
        model: Any,
        decoder: _Decoder,
        heads: list[tuple[int, int]],
        median_filter_width: int,
        punctuation: tuple[str, str],
        snap: bool = True,
    ):
        self.model, self.decoder, self.heads = model, decoder, heads
        self.median_filter_width = median_filter_width
        self.prepend, self.append = punctuation
        self.snap = snap

    def __call__(
        self,
        segments: list[Segment],
        window: np.ndarray,
        num_frames: int,
        time_offset: float,
        states: Any = None,
        last_speech: float | None = None,
    ) -> None:
        """Time the words of ``segments`` (one window); ``last_speech``: where the speech before the window ended."""
        text_tokens = [token for segment in segments for token in segment.text_tokens]
        if not text_tokens:
            for segment in segments:
                segment.words = []
            return
        prefix = [*self.decoder.sot_sequence, self.decoder.special.no_timestamps]
        sequence = [*prefix, *text_tokens, self.decoder.eot]
        # Padded at the end to a multiple of ALIGNMENT_BUCKET (causal attention: no earlier row changes), so the
        # compiled backends trace the pass for a handful of lengths, not one per window.
        padded = min(-(-len(sequence) // ALIGNMENT_BUCKET) * ALIGNMENT_BUCKET, self.decoder.max_target)
        tokens = np.full((1, max(padded, len(sequence))), self.decoder.eot, dtype=np.int32)
        tokens[0, : len(sequence)] = sequence
        given = {} if states is None else {"encoder_states": states}
        weights, logits = self.model.alignment_attention(window[None], tokens, self.heads, **given)
        rows = slice(len(prefix) - 1, len(sequence) - 1)  # the rows that predict the text and <|endoftext|>
        add_word_timestamps(
            segments, weights[0][:, rows], logits[0][rows], num_frames, time_offset, self.decoder.tokenizer.decode,
            self.decoder.eot, self.decoder.options.language, self.median_filter_width, self.prepend, self.append,
            speech_levels(window) if self.snap else None, last_speech,
        )  # fmt: skip


def _word_timer(
    model: Any,
    decoder: _Decoder,
    word_timestamps: bool,
    alignment_heads: Sequence[tuple[int, int]] | None,
    model_dir: str | os.PathLike[str] | None,
    median_filter_width: int,
    punctuation: tuple[str, str],
    snap: bool,
) -> _WordTimer | None:
    """The word timer of a transcription (None without ``word_timestamps``); the heads given, else the model's."""
    if not word_timestamps:
        return None
    heads = list(alignment_heads) if alignment_heads else alignment_heads_for(model, model_dir)
    return _WordTimer(model, decoder, heads, median_filter_width, punctuation, snap)


def _detect_language(model: Any, mel: np.ndarray, decoder: _Decoder) -> str:
    if not decoder.special.is_multilingual:
        return "en"
    detection = model.detect_language(_window(mel, 0, min(N_FRAMES, mel.shape[1]))[None])
    return str(detection.languages[0])


def _prepare(
    model: Any, tokenizer: Any, audio: Any, language: str | None, task: str, temperature: Any, **thresholds: Any
) -> tuple[np.ndarray, int, _Decoder]:
    # The request is checked before the audio is read: the one language rule of generate and the command line.
    language, task = resolve_language_and_task(language, task, special_tokens_for_vocab(model.config.vocab_size))
    temperatures = _temperatures(temperature)
    waveform = _load(audio)
    mel = log_mel_spectrogram(waveform, model.config.num_mel_bins, padding=N_SAMPLES)
    content_frames = mel.shape[1] - N_FRAMES
    options = _Options(language=language, task=task, temperatures=temperatures, **thresholds)
    decoder = _Decoder(model, tokenizer, options)
    if language is None:
        detected = _detect_language(model, mel, decoder)
        decoder.options = replace(options, language=detected)
    return mel, content_frames, decoder


@dataclass
class _Span:
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


def _decode_span_window(
    decoder: _Decoder,
    timer: _WordTimer | None,
    span: _Span,
    window: np.ndarray,
    result: _Decoded,
    states: Any,
    resume_after_early_stop: bool,
) -> list[Segment]:
    """The segments of one decoded window of ``span`` (words timed when asked), and ``span`` moved on: past the
    window when it is silent or its text ends on a lone timestamp, else to its last timestamp (its last word's end
    with word timing)."""
    seek, size = span.seek, span.window_size
    if decoder.is_silent(result):
        span.seek = seek + size
        return []
    time_offset = seek / FRAMES_PER_SECOND
    pieces, seek_steps = _split_segments(result.tokens, decoder.timestamp_begin, time_offset, size / FRAMES_PER_SECOND)
    window_end = time_offset + size / FRAMES_PER_SECOND
    pieces = [(min(start, window_end), min(end, window_end), tokens) for start, end, tokens in pieces]
    current = _make_segments(decoder, result, pieces, seek)
    next_seek = seek + size if seek_steps is None else seek + seek_steps * INPUT_STRIDE
    if timer is not None:
        timer(current, window, size, time_offset, states, span.last_speech)
        last_word_end = next((s.words[-1].end for s in reversed(current) if s.words), None)
        if seek_steps is not None and last_word_end is not None and last_word_end > time_offset:
            next_seek = round(last_word_end * FRAMES_PER_SECOND)
    if seek_steps is None and current and resume_after_early_stop:
        # The text ended on a lone timestamp, which skips the rest of the window; where speech remains after the
        # last segment (the tiny models stop at long pauses), the next window starts at that segment's end.
        end_frame = round((_last_end(current) - time_offset) * FRAMES_PER_SECOND)
        if end_frame >= FRAMES_PER_SECOND and _speech_left_behind(window, size, end_frame):
            next_seek = seek + end_frame
    span.seek = max(next_seek, seek + 1)  # always move on
    if current:
        span.last_speech = _last_end(current)
    return current


def transcribe(
    model: Any,
    audio: str | os.PathLike[str] | np.ndarray,
    tokenizer: Any,
    *,
    language: str | None = None,
    task: str = "transcribe",
    temperature: float | Sequence[float] = DEFAULT_TEMPERATURES,
    compression_ratio_threshold: float | None = 2.4,
    logprob_threshold: float | None = -1.0,
    no_speech_threshold: float | None = 0.6,
    condition_on_previous_text: bool = True,
    prompt_reset_on_temperature: float = 0.5,
    initial_prompt: str | None = None,
    word_timestamps: bool = False,
    clip_timestamps: str | Sequence[float] | None = None,
    num_beams: int = 1,
    length_penalty: float | None = None,
    alignment_heads: Sequence[tuple[int, int]] | None = None,
    model_dir: str | os.PathLike[str] | None = None,
    median_filter_width: int = MEDIAN_FILTER_WIDTH,
    prepend_punctuations: str = PREPEND_PUNCTUATIONS,
    append_punctuations: str = APPEND_PUNCTUATIONS,
    snap_words_to_speech: bool = True,
    resume_after_early_stop: bool = True,
    seed: int = 0,
    progress: Progress | None = None,
) -> TranscriptionResult:
    """Transcribe (or translate) ``audio`` of any length, window by window; see the module doc.

    ``audio``: a file path or a 16 kHz mono float waveform. ``language``: a name, code or token ("English", "en",
    "<|en|>"), detected from the first 30 s when left out on a multilingual model. ``clip_timestamps``: only these
    ranges, ``"start,end,start,end..."`` seconds. ``alignment_heads`` (or ``model_dir``, to read them from a
    CTranslate2 ``config.json``) for ``word_timestamps``.
    ``snap_words_to_speech``: move word bounds in to the loud frames inside them (``timing.snap_to_speech``).
    ``resume_after_early_stop``: when a window's text ends on a lone timestamp but a second or more of speech follows
    its last segment, start the next window at that segment's end instead of skipping the rest of the window
    (False: openai-whisper's and faster-whisper's rule).
    ``progress(done_seconds, total_seconds)`` is called after each window.
    """
    mel, content_frames, decoder = _prepare(
        model, tokenizer, audio, language, task, temperature,
        compression_ratio_threshold=compression_ratio_threshold, logprob_threshold=logprob_threshold,
        no_speech_threshold=no_speech_threshold, num_beams=num_beams, length_penalty=length_penalty, seed=seed,
    )  # fmt: skip
    duration = content_frames / FRAMES_PER_SECOND
    timer = _word_timer(
        model, decoder, word_timestamps, alignment_heads, model_dir, median_filter_width,
        (prepend_punctuations, append_punctuations), snap_words_to_speech,
    )  # fmt: skip
    clips = [
        (round(start * FRAMES_PER_SECOND), min(round(end * FRAMES_PER_SECOND), content_frames))
        for start, end in parse_clip_timestamps(clip_timestamps, duration)
    ]

    history = _PreviousText(_initial_prompt_tokens(tokenizer, initial_prompt))
    segments: list[Segment] = []
    seek, last_speech = 0, 0.0
    for clip_start, clip_end in clips:
        span = _Span(clip_start, clip_end, max(seek, clip_start), last_speech)
        while span.seek < span.end:
            window = _window(mel, span.seek, span.window_size)
            result = decoder.decode(window[None], history.prompt(), seed + span.seek)[0]
            current = _decode_span_window(
                decoder, timer, span, window, result, decoder.states_of(0), resume_after_early_stop
            )
            segments += current
            reset = not condition_on_previous_text or result.temperature > prompt_reset_on_temperature
            history.add(current, reset)
            _report(progress, min(span.seek, content_frames), content_frames)
        seek, last_speech = span.seek, span.last_speech
    _report(progress, content_frames, content_frames)
    return _result(segments, decoder, content_frames, word_timestamps)


class _PreviousText:
    """The tokens said so far, the prompt of the next window: the initial prompt, then every segment's tokens, from
    the last reset on (a window decoded at a high temperature is not a prompt to build on)."""

    def __init__(self, initial: list[int]):
        self.tokens, self.since = list(initial), 0

    def prompt(self) -> list[int]:
        return self.tokens[self.since :][-PROMPT_LENGTH:]

    def add(self, segments: list[Segment], reset: bool) -> None:
        for segment in segments:
            self.tokens.extend(segment.tokens)
        if reset:
            self.since = len(self.tokens)


def _result(
    segments: list[Segment], decoder: _Decoder, content_frames: int, word_timestamps: bool
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
        language=decoder.options.language or "en",
        duration=content_frames / FRAMES_PER_SECOND,
    )


def _initial_prompt_tokens(tokenizer: Any, initial_prompt: str | None) -> list[int]:
    if not initial_prompt:
        return []
    return list(tokenizer.encode(" " + initial_prompt.strip(), add_special_tokens=False))


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


def _report(progress: Progress | None, frames: int, total: int) -> None:
    if progress is not None:
        progress(frames / FRAMES_PER_SECOND, total / FRAMES_PER_SECOND)


def pause_cuts(mel: np.ndarray, content_frames: int, limit: int = CHUNK_FRAMES) -> list[tuple[int, int]]:
    """[start, end) mel frames of chunks of at most ``limit`` frames covering the audio, each cut in the middle of
    the last pause (``CUT_PAUSE_FRAMES`` quiet) of the last ``CUT_SEARCH_FRAMES`` before its limit, else of its
    longest quiet stretch, else at its quietest 0.2 s."""
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


def transcribe_chunked(
    model: Any,
    audio: str | os.PathLike[str] | np.ndarray,
    tokenizer: Any,
    *,
    batch_size: int = 8,
    language: str | None = None,
    task: str = "transcribe",
    temperature: float | Sequence[float] = DEFAULT_TEMPERATURES,
    compression_ratio_threshold: float | None = 2.4,
    logprob_threshold: float | None = -1.0,
    no_speech_threshold: float | None = 0.6,
    initial_prompt: str | None = None,
    word_timestamps: bool = False,
    num_beams: int = 1,
    length_penalty: float | None = None,
    alignment_heads: Sequence[tuple[int, int]] | None = None,
    model_dir: str | os.PathLike[str] | None = None,
    median_filter_width: int = MEDIAN_FILTER_WIDTH,
    prepend_punctuations: str = PREPEND_PUNCTUATIONS,
    append_punctuations: str = APPEND_PUNCTUATIONS,
    snap_words_to_speech: bool = True,
    resume_after_early_stop: bool = True,
    seed: int = 0,
    progress: Progress | None = None,
) -> TranscriptionResult:
    """Transcribe ``audio`` cut at pauses into chunks (``pause_cuts``), the windows of the chunks decoded
    ``batch_size`` at a time; see the module doc. The arguments are ``transcribe``'s, less the previous text: each
    window's prompt is ``initial_prompt`` alone."""
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    mel, content_frames, decoder = _prepare(
        model, tokenizer, audio, language, task, temperature,
        compression_ratio_threshold=compression_ratio_threshold, logprob_threshold=logprob_threshold,
        no_speech_threshold=no_speech_threshold, num_beams=num_beams, length_penalty=length_penalty, seed=seed,
    )  # fmt: skip
    # Every window's words are timed where the model can (every backend's can), for where its chunk resumes.
    timer = _word_timer(
        model, decoder, word_timestamps or hasattr(model, "alignment_attention"), alignment_heads, model_dir,
        median_filter_width, (prepend_punctuations, append_punctuations), snap_words_to_speech,
    )  # fmt: skip
    prompt = _initial_prompt_tokens(tokenizer, initial_prompt)[-PROMPT_LENGTH:]
    spans = [_Span(start, end, start, start / FRAMES_PER_SECOND) for start, end in pause_cuts(mel, content_frames)]
    active = [span for span in spans if span.seek < span.end]
    while active:
        for first in range(0, len(active), batch_size):
            batch = active[first : first + batch_size]
            _decode_batch(decoder, timer, mel, batch, prompt, seed + batch[0].seek, resume_after_early_stop)
            _report(progress, sum(min(span.seek, span.end) - span.start for span in spans), content_frames)
        active = [span for span in spans if span.seek < span.end]
    return _result([segment for span in spans for segment in span.segments], decoder, content_frames, word_timestamps)


def _decode_batch(
    decoder: _Decoder,
    timer: _WordTimer | None,
    mel: np.ndarray,
    batch: list[_Span],
    prompt: list[int],
    seed: int,
    resume_after_early_stop: bool,
) -> None:
    """The next window of each span of ``batch``, decoded together; each span gets its segments and moves on."""
    windows = np.stack([_window(mel, span.seek, span.window_size) for span in batch])
    results = decoder.decode(windows, prompt, seed)
    for position, (span, result) in enumerate(zip(batch, results)):
        span.segments += _decode_span_window(
            decoder, timer, span, windows[position], result, decoder.states_of(position), resume_after_early_stop
        )
