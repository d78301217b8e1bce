"""Decoding 30 s windows of log-mel through a backend model, the same way for either way through a recording.

``WindowDecoder`` decodes a batch of windows with temperature fallback (the backend's ``generate`` does the tensor
work; its forced prefix comes from ``decoding.options.decoder_prefix``); ``WordTimer`` times the words of a decoded
window (the backend's ``alignment_attention``, then ``timing.add_word_timestamps``).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from whisper_multi.decoding.options import decoder_prefix, prompt_tokens
from whisper_multi.features import N_FRAMES
from whisper_multi.longform.options import TranscribeOptions
from whisper_multi.longform.timing import add_word_timestamps, alignment_heads_for, speech_levels
from whisper_multi.text.special_tokens import TIME_PRECISION, special_tokens_for_vocab

if TYPE_CHECKING:
    from whisper_multi.longform.segments import Segment

MAX_INITIAL_TIMESTAMP = 1.0  # seconds: the first timestamp of a window comes no later than this
SAMPLE_LENGTH = 224  # the most tokens decoded per window (half the decoder's context), as openai-whisper
PROMPT_LENGTH = 223  # the most previous-text tokens in a prompt
ALIGNMENT_BUCKET = 64  # the word-timing pass's token count is padded to a multiple of this


def compression_ratio(text: str) -> float:
    """How much zlib shrinks the text: repeated text compresses far better than speech does."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def mel_window(mel: np.ndarray, seek: int, size: int) -> np.ndarray:
    """The mel frames [seek, seek + size) padded with zeros to 30 s: (n_mels, N_FRAMES)."""
    window = np.zeros((mel.shape[0], N_FRAMES), dtype=np.float32)
    window[:, :size] = mel[:, seek : seek + size]
    return window


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


@dataclass
class DecodedWindow:
    """One window's decode: the generated tokens (no prefix, no end of text) and its statistics."""

    tokens: list[int]
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float = 0.0


class WindowDecoder:
    """Decodes batches of 30 s windows with temperature fallback, through ``model.generate``. ``options`` have their
    language and task resolved (see ``transcribe``); ``temperatures`` are the checked ``options.temperatures``."""

    def __init__(self, model: Any, tokenizer: Any, options: TranscribeOptions, temperatures: tuple[float, ...]):
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.temperatures = temperatures
        self.language = options.language or "en"
        self.special = special_tokens_for_vocab(model.config.vocab_size)
        self.eot = self.special.eot
        self.timestamp_begin = self.special.timestamp_begin
        self.max_target = int(model.config.max_target_positions)
        self.encoder_states: Any = None  # of the windows decoded last, when the model can hand them over

    def states_of(self, index: int) -> Any:
        """The encoder states of window ``index`` of the last batch (batch of one), or None."""
        return None if self.encoder_states is None else self.encoder_states[index : index + 1]

    def prefix(self, prompt: Sequence[int] = (), timestamps: bool = True) -> list[int]:
        """The forced prefix of a window after the previous-text ``prompt`` (none: no ``<|startofprev|>``)."""
        multilingual = self.special.is_multilingual
        return decoder_prefix(
            self.special,
            self.special.language_token(self.language) if multilingual else None,
            self.special.task_to_id[self.options.task] if multilingual else None,
            timestamps=timestamps,
            prompt=prompt_tokens(self.special, prompt) if prompt else (),
        )

    def decode_text(self, tokens: list[int]) -> str:
        return self.tokenizer.decode([token for token in tokens if token < self.eot])

    def decode(self, features: np.ndarray, prompt: list[int], first_frame: int) -> list[DecodedWindow]:
        """Each window decoded at the first temperature that passes the thresholds (or the last one tried); the draws
        of a sampled fallback depend on ``options.seed`` and ``first_frame``, where the batch's first window starts."""
        results: list[DecodedWindow | None] = [None] * len(features)
        pending = list(range(len(features)))
        # The windows are encoded once, for every temperature and for word timing (a backend model's encode_audio).
        encode = getattr(self.model, "encode_audio", None)
        self.encoder_states = None if encode is None else encode(features)
        for attempt, temperature in enumerate(self.temperatures):
            states = self.encoder_states if len(pending) == len(features) else None  # a retry of some: encode them
            decoded = self._generate(
                features[pending], prompt, temperature, self.options.seed + first_frame + attempt, states
            )
            for index, result in zip(pending, decoded):
                results[index] = result
            pending = [index for index, result in zip(pending, decoded) if self._needs_fallback(result)]
            if not pending:
                break
        return [result for result in results if result is not None]

    def is_silent(self, result: DecodedWindow) -> bool:
        options = self.options
        if options.no_speech_threshold is None or result.no_speech_prob <= options.no_speech_threshold:
            return False
        return not (options.logprob_threshold is not None and result.avg_logprob > options.logprob_threshold)

    def _generate(
        self, features: np.ndarray, prompt: list[int], temperature: float, seed: int, states: Any = None
    ) -> list[DecodedWindow]:
        multilingual = self.special.is_multilingual
        prefix_length = len(self.prefix(prompt))
        given = {} if states is None else {"encoder_outputs": states}
        outputs = self.model.generate(
            features,
            language=self.language if multilingual else None,
            task=self.options.task if multilingual else None,
            return_timestamps=True,
            prompt_ids=np.asarray(prompt_tokens(self.special, prompt), dtype=np.int32) if prompt else None,
            temperature=temperature,
            num_beams=self.options.num_beams if temperature == 0.0 else 1,
            length_penalty=self.options.length_penalty,
            max_new_tokens=min(SAMPLE_LENGTH, self.max_target - prefix_length),
            max_initial_timestamp_index=round(MAX_INITIAL_TIMESTAMP / TIME_PRECISION),
            return_dict_in_generate=True,
            seed=seed,
            **given,
        )
        rows = _to_numpy(outputs.sequences)
        return [self._decoded(row[prefix_length:], outputs, index, temperature) for index, row in enumerate(rows)]

    def _decoded(self, generated: np.ndarray, outputs: Any, index: int, temperature: float) -> DecodedWindow:
        """Item ``index`` of ``generate``'s ``outputs``, whose tokens after the prefix are ``generated``."""
        tokens = [int(token) for token in generated]
        if self.eot in tokens:
            tokens = tokens[: tokens.index(self.eot)]
        return DecodedWindow(
            tokens=tokens,
            avg_logprob=float(outputs.avg_logprobs[index]),
            no_speech_prob=float(outputs.no_speech_probs[index]),
            temperature=temperature,
            compression_ratio=compression_ratio(self.decode_text(tokens)),
        )

    def _needs_fallback(self, result: DecodedWindow) -> bool:
        options = self.options
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


class WordTimer:
    """Adds word timestamps to the segments of a window (one forward pass of the backend)."""

    def __init__(self, model: Any, decoder: WindowDecoder, heads: list[tuple[int, int]]):
        self.model, self.decoder, self.heads = model, decoder, heads
        self.options = decoder.options

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
        decoder, options = self.decoder, self.options
        prefix = decoder.prefix(timestamps=False)
        sequence = [*prefix, *text_tokens, decoder.eot]
        given = {} if states is None else {"encoder_states": states}
        weights, logits = self.model.alignment_attention(window[None], self._padded(sequence), self.heads, **given)
        rows = slice(len(prefix) - 1, len(sequence) - 1)  # the rows that predict the text and <|endoftext|>
        add_word_timestamps(
            segments, weights[0][:, rows], logits[0][rows], num_frames, time_offset, decoder.tokenizer.decode,
            decoder.eot, decoder.language, options.median_filter_width, options.prepend_punctuations,
            options.append_punctuations, speech_levels(window) if options.snap_words_to_speech else None, last_speech,
        )  # fmt: skip

    def _padded(self, sequence: list[int]) -> np.ndarray:
        """``sequence`` as (1, length) int32, padded at the end with ``<|endoftext|>`` to a multiple of
        ``ALIGNMENT_BUCKET`` (causal attention: no earlier row changes), so the compiled backends trace the pass for
        a handful of lengths, not one per window."""
        padded = min(-(-len(sequence) // ALIGNMENT_BUCKET) * ALIGNMENT_BUCKET, self.decoder.max_target)
        tokens = np.full((1, max(padded, len(sequence))), self.decoder.eot, dtype=np.int32)
        tokens[0, : len(sequence)] = sequence
        return tokens


def word_timer(model: Any, decoder: WindowDecoder, enabled: bool) -> WordTimer | None:
    """The word timer of a transcription (None unless ``enabled``); the heads given, else the model's."""
    if not enabled:
        return None
    options = decoder.options
    heads = list(options.alignment_heads) if options.alignment_heads else alignment_heads_for(model, options.model_dir)
    return WordTimer(model, decoder, heads)
