"""Word and character error rates of a model on a set of recordings with their transcripts.

Each recording is transcribed by ``transcribe`` (or ``transcribe_chunked`` with ``batch_size`` above 1), the very
decoding of ``whisper-multi transcribe``; reference and hypothesis are normalized as openai-whisper's and the Open
ASR Leaderboard's evaluations do (``EnglishTextNormalizer`` when the model is English-only or the language is
English, ``BasicTextNormalizer`` otherwise), and jiwer counts the edits: the corpus WER and CER are jiwer's over all
normalized pairs at once (total edits over total reference words or characters), not a mean of per-file rates.
The sources are those of ``datasets_io``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

from whisper_multi.errors import BackendError, InputError
from whisper_multi.features import SAMPLE_RATE
from whisper_multi.longform.datasets_io import EvaluationItem, evaluation_data
from whisper_multi.longform.transcribe import transcribe, transcribe_chunked
from whisper_multi.text.normalizers import BasicTextNormalizer, EnglishTextNormalizer
from whisper_multi.text.special_tokens import resolve_language_and_task, special_tokens_for_vocab

__all__ = [
    "EvaluationResult",
    "FileEvaluation",
    "FileFailedError",
    "evaluate",
    "normalizer_for",
    "normalizer_name",
    "word_error_rate",
]

# (files done, files in all), called after each file.
FileProgress = Callable[[int, int], None]


class FileFailedError(InputError):
    """One recording could not be read or transcribed: no rate is given for a set with a file missing from it."""

    def __init__(self, file: str, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file = file


@dataclass
class FileEvaluation:
    """One recording: its transcripts as given and as compared, and jiwer's word and character edits."""

    file: str
    reference: str
    hypothesis: str
    errors: int  # word substitutions + deletions + insertions between the normalized texts
    words: int  # words in the normalized reference
    character_errors: int
    characters: int
    duration: float  # seconds of audio
    normalized_reference: str
    normalized_hypothesis: str
    language: str | None = None

    @property
    def wer(self) -> float:
        return self.errors / self.words if self.words else float(self.errors > 0)


@dataclass
class EvaluationResult:
    """The corpus rates, every file's row, the audio's length and how long transcribing took."""

    wer: float
    cer: float
    files: list[FileEvaluation] = field(default_factory=list)
    audio_duration: float = 0.0  # seconds of audio over all files
    transcribe_seconds: float = 0.0  # wall time of the transcription calls (decoding the audio files excluded)
    normalizer: str = ""  # "english", "basic", or both names where the files' languages differed

    @property
    def real_time_factor(self) -> float:
        """Seconds of computing per second of audio (below 1: faster than real time)."""
        return self.transcribe_seconds / self.audio_duration if self.audio_duration else 0.0

    def to_dict(self) -> dict[str, Any]:
        """``wer`` and ``cer`` on top, the totals, and ``files``: one object per recording."""
        return {
            "wer": self.wer,
            "cer": self.cer,
            "files": [asdict(row) for row in self.files],
            "file_count": len(self.files),
            "audio_duration": self.audio_duration,
            "transcribe_seconds": self.transcribe_seconds,
            "real_time_factor": self.real_time_factor,
            "normalizer": self.normalizer,
        }


def evaluate(
    model: Any,
    processor: Any,
    dataset: Any,
    *,
    batch_size: int = 1,
    language: str | None = None,
    audio_column: str | None = None,
    text_column: str | None = None,
    progress: FileProgress | None = None,
    **options: Any,
) -> EvaluationResult:
    """WER and CER of ``model`` (any backend's ``WhisperForConditionalGeneration``) on ``dataset``.

    ``dataset``: a ``datasets.Dataset``, or the path of an audiofolder or of a ``save_to_disk`` folder (see
    ``datasets_io``). ``processor``: a ``WhisperProcessor`` (or its tokenizer). ``language``: as ``transcribe``'s
    (None: English for English-only models, else detected per file); it also picks the normalizer. ``options``: the
    other ``TranscribeOptions``. Raises ``FileFailedError`` naming the first file that cannot be read or
    transcribed; the request and the source's layout are checked before any audio is read.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer of at least 1, got {batch_size!r}")
    tokenizer = getattr(processor, "tokenizer", processor)
    special = special_tokens_for_vocab(model.config.vocab_size)
    language, task = resolve_language_and_task(language, options.get("task"), special)
    if language is None and not special.is_multilingual:
        language = "en"
    data = evaluation_data(dataset, audio_column, text_column)
    if len(data) == 0:
        raise InputError(f"{data.source} holds no recordings; expected at least one")
    run = _Transcriber(model, tokenizer, batch_size, dict(options, language=language, task=task))
    rows = []
    for item in data:
        rows.append(run(item))
        if progress is not None:
            progress(len(rows), len(data))
    return _result(rows, run.seconds)


class _Transcriber:
    """Transcribes one item after another, adding up the time spent in transcription."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int, options: dict[str, Any]):
        self.model, self.tokenizer, self.batch_size, self.options = model, tokenizer, batch_size, options
        self.seconds = 0.0

    def __call__(self, item: EvaluationItem) -> FileEvaluation:
        try:
            waveform = item.waveform()
            started = time.perf_counter()
            if self.batch_size > 1:
                result = transcribe_chunked(
                    self.model, waveform, self.tokenizer, batch_size=self.batch_size, **self.options
                )
            else:
                result = transcribe(self.model, waveform, self.tokenizer, **self.options)
            self.seconds += time.perf_counter() - started
        except (InputError, BackendError, RuntimeError, ValueError, OSError) as error:
            raise FileFailedError(item.name, " ".join(str(error).split()) or type(error).__name__) from error
        # A translation is English whatever was spoken: it is compared as English.
        language = "en" if self.options["task"] == "translate" else result.language
        return _compare(item, result.text.strip(), len(waveform) / SAMPLE_RATE, language)


_NORMALIZERS: dict[str, Callable[[], Callable[[str], str]]] = {
    "english": EnglishTextNormalizer,
    "basic": BasicTextNormalizer,
}


def normalizer_name(language: str | None) -> str:
    """ "english" for English, "basic" for every other language (and an unknown one): a key of ``_NORMALIZERS``."""
    return "english" if language == "en" else "basic"


@cache
def normalizer_for(language: str | None) -> Callable[[str], str]:
    """The normalizer ``evaluate`` applies to both texts of a file in ``language``."""
    return _NORMALIZERS[normalizer_name(language)]()


def word_error_rate(reference: str, hypothesis: str, language: str | None = "en") -> float:
    """One pair's WER as ``evaluate`` counts it: both texts normalized for ``language``, jiwer's word edits over
    the reference's words."""
    normalize = normalizer_for(language)
    reference_words, hypothesis_words = normalize(reference), normalize(hypothesis)
    if not reference_words.split():
        return float(bool(hypothesis_words.split()))
    return float(_jiwer().wer(reference_words, hypothesis_words))


def _compare(item: EvaluationItem, hypothesis: str, duration: float, language: str | None) -> FileEvaluation:
    jiwer = _jiwer()
    normalize = normalizer_for(language)
    reference_words, hypothesis_words = normalize(item.reference), normalize(hypothesis)
    words = jiwer.process_words(reference_words, hypothesis_words)
    characters = jiwer.process_characters(reference_words, hypothesis_words)
    return FileEvaluation(
        file=item.name,
        reference=item.reference,
        hypothesis=hypothesis,
        errors=words.substitutions + words.deletions + words.insertions,
        words=words.substitutions + words.deletions + words.hits,
        character_errors=characters.substitutions + characters.deletions + characters.insertions,
        characters=characters.substitutions + characters.deletions + characters.hits,
        duration=duration,
        normalized_reference=reference_words,
        normalized_hypothesis=hypothesis_words,
        language=language,
    )


def _result(rows: list[FileEvaluation], seconds: float) -> EvaluationResult:
    jiwer = _jiwer()
    references = [row.normalized_reference for row in rows]
    hypotheses = [row.normalized_hypothesis for row in rows]
    return EvaluationResult(
        wer=float(jiwer.wer(references, hypotheses)),
        cer=float(jiwer.cer(references, hypotheses)),
        files=rows,
        audio_duration=sum(row.duration for row in rows),
        transcribe_seconds=seconds,
        normalizer=" and ".join(sorted({normalizer_name(row.language) for row in rows})),
    )


def _jiwer() -> Any:
    try:
        import jiwer
    except ImportError as error:
        raise BackendError(
            "word error rates need jiwer, which is not installed; pip install 'whisper-multi[evaluate]'"
        ) from error
    return jiwer
