"""WhisperFeatureExtractor: values against an independent float64 reference and against openai-whisper /
Transformers fixtures, padding and batching behaviour, tensor outputs, input checking and preprocessor_config.json.

Tolerances: 1e-6 against the float64 reference written below (our FFT runs in float64; measured ~2e-7) and against
Transformers' numpy extractor (measured ~2e-7); 1e-4 against openai-whisper, whose float32 torch.stft sits up to
~5e-5 from float64 on quiet bins next to loud ones, and against Transformers' float32 do_normalize (~2e-5).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from whisper_multi import ConfigError, InputError, WhisperFeatureExtractor
from whisper_multi import features as features_module
from whisper_multi.features import BatchFeature, log_mel_spectrogram, mel_filters

REFERENCE_FILE = Path(__file__).parent / "fixtures" / "features" / "reference_features.npz"
SR = 16000
REFERENCE_TOLERANCE = 1e-6
PEER_TOLERANCE = {"openai": 1e-4, "hf": 1e-6}
NORMALIZE_TOLERANCE = 1e-4


# ---------------------------------------------------------------------------------------------------------------------
# Independent float64 reference: explicit DFT matrix, hand-made reflect padding, np.interp triangles.
# ---------------------------------------------------------------------------------------------------------------------


def slaney_hz_to_mel(hz: float) -> float:
    # 3 mels per 200 Hz up to 1 kHz (= 15 mels), then 27 mels per factor 6.4 in frequency.
    return 3.0 * hz / 200.0 if hz < 1000.0 else 15.0 + 27.0 * math.log(hz / 1000.0) / math.log(6.4)


def slaney_mel_to_hz(mel: float) -> float:
    return 200.0 * mel / 3.0 if mel < 15.0 else 1000.0 * 6.4 ** ((mel - 15.0) / 27.0)


def reference_mel_filters(n_mels: int, sampling_rate: int = SR, n_fft: int = 400) -> np.ndarray:
    top = slaney_hz_to_mel(sampling_rate / 2.0)
    edges = [slaney_mel_to_hz(top * i / (n_mels + 1)) for i in range(n_mels + 2)]
    bin_hz = np.arange(n_fft // 2 + 1) * sampling_rate / n_fft
    filters = np.zeros((n_mels, n_fft // 2 + 1))
    for i in range(n_mels):
        low, centre, high = edges[i : i + 3]
        triangle = np.interp(bin_hz, [low, centre, high], [0.0, 1.0, 0.0], left=0.0, right=0.0)
        filters[i] = triangle * 2.0 / (high - low)  # equal area for every filter
    return filters


def reference_log_mel(audio: np.ndarray, n_mels: int, n_samples: int = 30 * SR) -> np.ndarray:
    x = np.zeros(n_samples)
    kept = np.asarray(audio, dtype=np.float64)[:n_samples]
    x[: len(kept)] = kept
    padded = np.concatenate([x[200:0:-1], x, x[-2:-202:-1]])  # reflect, edge sample not repeated
    n = np.arange(400)
    window = np.sin(np.pi * n / 400) ** 2  # periodic Hann
    dft = np.exp(-2j * np.pi * np.outer(n, np.arange(201)) / 400)  # (400, 201)
    n_frames = n_samples // 160  # the centred STFT's last frame is dropped
    frames = np.stack([padded[t * 160 : t * 160 + 400] for t in range(n_frames)])  # (frames, 400)
    power = np.abs((frames * window) @ dft) ** 2  # (frames, 201)
    log_mel = np.log10(np.maximum(reference_mel_filters(n_mels) @ power.T, 1e-10))
    log_mel = np.maximum(log_mel, log_mel.max() - 8.0)
    return (log_mel + 4.0) / 4.0


# ---------------------------------------------------------------------------------------------------------------------
# Shared inputs
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def references() -> np.lib.npyio.NpzFile:
    return np.load(REFERENCE_FILE)


@pytest.fixture(scope="module")
def clips(load_audio: Callable[[str], np.ndarray], references: np.lib.npyio.NpzFile) -> dict[str, np.ndarray]:
    short, medium = load_audio("speech_en_short"), load_audio("speech_en_25s")
    return {
        "speech_en_short": short,
        "speech_en_25s": medium,
        "speech_en_long": np.concatenate([medium, short, medium]),  # 48 s, as in make_feature_fixtures.py
        "noise": references["noise_int16"].astype(np.float32) / 32768.0,
        "white_noise_35s": np.random.default_rng(7).standard_normal(35 * SR).astype(np.float32) * 0.1,
    }


@pytest.fixture(scope="module")
def extractor() -> WhisperFeatureExtractor:
    return WhisperFeatureExtractor()


def features(extractor: WhisperFeatureExtractor, audio: object, **kwargs: object) -> np.ndarray:
    return extractor(audio, sampling_rate=SR, **kwargs)["input_features"]


def test_clip_lengths_cover_short_and_long_inputs(clips: dict[str, np.ndarray]) -> None:
    assert len(clips["speech_en_short"]) < 30 * SR < len(clips["speech_en_long"])
    assert len(clips["white_noise_35s"]) > 30 * SR


# ---------------------------------------------------------------------------------------------------------------------
# (a) against the float64 reference
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_match_slaney_formulas(n_mels: int) -> None:
    ours = mel_filters(n_mels)
    assert ours.shape == (n_mels, 201) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference_mel_filters(n_mels), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_match_openai_whisper_assets(n_mels: int, references: np.lib.npyio.NpzFile) -> None:
    np.testing.assert_allclose(mel_filters(n_mels), references[f"mel_filters_{n_mels}"], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("clip", ["speech_en_short", "speech_en_25s", "speech_en_long", "white_noise_35s"])
def test_log_mel_matches_float64_reference(clip: str, n_mels: int, clips: dict[str, np.ndarray]) -> None:
    audio = clips[clip]
    ours = features(WhisperFeatureExtractor(feature_size=n_mels), audio)
    assert ours.shape == (1, n_mels, 3000) and ours.dtype == np.float32
    difference = np.abs(ours[0] - reference_log_mel(audio, n_mels))
    assert difference.max() <= REFERENCE_TOLERANCE, f"max abs difference {difference.max():.3g}"


def test_log_mel_spectrogram_function_matches_extractor(clips: dict[str, np.ndarray], extractor) -> None:
    audio = clips["speech_en_short"]
    whole = log_mel_spectrogram(audio, padding=30 * SR - len(audio))
    assert whole.shape == (80, 3000)
    np.testing.assert_array_equal(whole, features(extractor, audio)[0])


def test_log_mel_spectrogram_function_clamps_against_whole_input(clips: dict[str, np.ndarray]) -> None:
    audio = clips["speech_en_long"]
    whole = log_mel_spectrogram(audio)
    assert whole.shape == (80, len(audio) // 160)
    difference = np.abs(whole - reference_log_mel(audio, 80, n_samples=len(audio)))
    assert difference.max() <= REFERENCE_TOLERANCE


# ---------------------------------------------------------------------------------------------------------------------
# (b) against openai-whisper and Transformers (fixtures from scripts/make_feature_fixtures.py)
# ---------------------------------------------------------------------------------------------------------------------

PEER_CASES = [
    (peer, n_mels, clip)
    for peer in ("openai", "hf")
    for n_mels, clip in [
        (80, "speech_en_short"),
        (80, "speech_en_25s"),
        (80, "speech_en_long"),
        (80, "noise"),
        (128, "speech_en_short"),
        (128, "speech_en_long"),
    ]
]


@pytest.mark.parametrize(("peer", "n_mels", "clip"), PEER_CASES)
def test_log_mel_matches_peers(peer: str, n_mels: int, clip: str, clips, references) -> None:
    ours = features(WhisperFeatureExtractor(feature_size=n_mels), clips[clip])[0]
    theirs = references[f"{peer}_{n_mels}__{clip}"]
    difference = np.abs(ours[:, references[f"frames__{clip}"]] - theirs)
    assert difference.max() <= PEER_TOLERANCE[peer], f"max abs difference {difference.max():.3g}"
    assert difference.mean() <= 1e-6, f"mean abs difference {difference.mean():.3g}"


def test_do_normalize_matches_transformers(clips, references, extractor) -> None:
    ours = features(extractor, clips["speech_en_short"], do_normalize=True)[0]
    theirs = references["hf_80_normalized__speech_en_short"]
    assert np.abs(ours[:, references["frames__speech_en_short"]] - theirs).max() <= NORMALIZE_TOLERANCE


def test_longest_padding_and_mask_match_transformers(clips, references, extractor) -> None:
    out = extractor(
        [clips["speech_en_short"], clips["noise"]], sampling_rate=SR, padding="longest", return_attention_mask=True
    )
    np.testing.assert_array_equal(out["attention_mask"], references["hf_80_longest_attention_mask"])
    assert np.abs(out["input_features"][1] - references["hf_80_longest__noise"]).max() <= PEER_TOLERANCE["hf"]


# ---------------------------------------------------------------------------------------------------------------------
# (c) padding, truncation, batching, masks, tensor types, normalisation
# ---------------------------------------------------------------------------------------------------------------------


def test_defaults_and_derived_sizes(extractor) -> None:
    assert (extractor.feature_size, extractor.sampling_rate, extractor.hop_length) == (80, 16000, 160)
    assert (extractor.chunk_length, extractor.n_fft, extractor.padding_value) == (30, 400, 0.0)
    assert (extractor.n_samples, extractor.nb_max_frames) == (480000, 3000)
    assert extractor.mel_filters.shape == (201, 80)  # Transformers' layout


def test_output_is_a_batch_feature_with_attribute_access(clips, extractor) -> None:
    out = extractor(clips["speech_en_short"], sampling_rate=SR)
    assert isinstance(out, BatchFeature) and isinstance(out, dict)
    assert out.input_features is out["input_features"]
    assert list(out) == ["input_features"]
    with pytest.raises(AttributeError, match="attention_mask"):
        _ = out.attention_mask


def test_attention_mask_marks_real_frames(clips, extractor) -> None:
    audio = clips["speech_en_short"]  # 88118 samples: frames 0..550 start inside the audio
    mask = extractor(audio, sampling_rate=SR, return_attention_mask=True)["attention_mask"]
    assert mask.shape == (1, 3000) and mask.dtype == np.int32
    assert mask.sum() == math.ceil(len(audio) / 160) == 551
    assert mask[0, :551].all() and not mask[0, 551:].any()


def test_attention_mask_default_comes_from_the_constructor(clips) -> None:
    extractor = WhisperFeatureExtractor(return_attention_mask=True)
    assert "attention_mask" in extractor(clips["noise"], sampling_rate=SR)
    assert "attention_mask" not in extractor(clips["noise"], sampling_rate=SR, return_attention_mask=False)


def test_attention_mask_is_all_ones_for_truncated_audio(clips, extractor) -> None:
    mask = extractor(clips["speech_en_long"], sampling_rate=SR, return_attention_mask=True)["attention_mask"]
    assert mask.shape == (1, 3000) and mask.all()


def test_padding_longest_pads_to_the_longest_item(clips, extractor) -> None:
    short, noise = clips["speech_en_short"], clips["noise"]
    out = features(extractor, [noise, short], padding="longest")
    assert out.shape == (2, 80, len(short) // 160)
    np.testing.assert_allclose(out[1], features(extractor, short, padding="longest")[0], atol=1e-6)
    # The shorter item equals its own features over the same padded length.
    padded_noise = np.concatenate([noise, np.zeros(len(short) - len(noise), np.float32)])
    np.testing.assert_allclose(out[0], features(extractor, padded_noise, padding="longest")[0], atol=1e-6)


def test_padding_true_means_longest(clips, extractor) -> None:
    assert features(extractor, clips["noise"], padding=True).shape == (1, 80, 400)


def test_ragged_batch_equals_one_by_one(clips, extractor) -> None:
    items = [clips["speech_en_short"], clips["speech_en_long"], clips["noise"], clips["speech_en_25s"]]
    batch = extractor(items, sampling_rate=SR, return_attention_mask=True)
    assert batch["input_features"].shape == (4, 80, 3000)
    for i, item in enumerate(items):
        single = extractor(item, sampling_rate=SR, return_attention_mask=True)
        np.testing.assert_allclose(batch["input_features"][i], single["input_features"][0], atol=1e-6)
        np.testing.assert_array_equal(batch["attention_mask"][i], single["attention_mask"][0])


def test_threaded_stft_gives_the_same_features(monkeypatch, clips, extractor) -> None:
    items = [clips["speech_en_short"], clips["noise"], clips["speech_en_25s"]]  # 3 chunks: up to 3 threads
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    one_thread = features(extractor, items)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    np.testing.assert_array_equal(features(extractor, items), one_thread)


def test_two_dimensional_array_is_a_batch(clips, extractor) -> None:
    rows = np.stack([clips["noise"], clips["noise"][::-1]])
    np.testing.assert_array_equal(features(extractor, rows), features(extractor, list(rows)))


def test_list_of_floats_is_one_waveform(clips, extractor) -> None:
    audio = clips["noise"][:8000]
    np.testing.assert_array_equal(features(extractor, audio.tolist()), features(extractor, audio))


def test_truncation_keeps_the_first_30_seconds(clips, extractor) -> None:
    audio = clips["speech_en_long"]
    np.testing.assert_array_equal(features(extractor, audio), features(extractor, audio[: 30 * SR]))


def test_no_truncation_keeps_every_frame(clips, extractor) -> None:
    audio = clips["speech_en_long"]
    out = features(extractor, [audio, clips["noise"]], truncation=False)
    assert out.shape == (2, 80, len(audio) // 160)


def test_max_length_sets_the_padded_length(clips, extractor) -> None:
    out = extractor(clips["speech_en_short"], sampling_rate=SR, max_length=10 * SR, return_attention_mask=True)
    assert out["input_features"].shape == (1, 80, 1000)
    assert out["attention_mask"].sum() == 551


@pytest.mark.parametrize(
    ("padding", "max_length", "multiple", "frames"),
    [("longest", None, 16000, 600), ("max_length", 100000, 16000, 700), ("max_length", None, 16000, 3000)],
)
def test_pad_to_multiple_of_rounds_up(clips, extractor, padding, max_length, multiple, frames) -> None:
    out = features(
        extractor, clips["speech_en_short"], padding=padding, max_length=max_length, pad_to_multiple_of=multiple
    )
    assert out.shape == (1, 80, frames)


def test_padding_value_fills_the_padding(clips) -> None:
    audio = clips["noise"]
    shifted = WhisperFeatureExtractor(padding_value=0.25)
    expected = np.concatenate([audio, np.full(30 * SR - len(audio), 0.25, np.float32)])
    np.testing.assert_allclose(features(shifted, audio), features(shifted, expected), atol=1e-6)


def test_do_normalize_scales_the_real_samples_only(clips, extractor) -> None:
    audio = clips["speech_en_short"].astype(np.float64)
    normalized = ((audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)).astype(np.float32)
    np.testing.assert_allclose(
        features(extractor, clips["speech_en_short"], do_normalize=True), features(extractor, normalized), atol=1e-5
    )


def test_return_token_timestamps_gives_frame_counts(clips, extractor) -> None:
    out = extractor([clips["speech_en_short"], clips["noise"]], sampling_rate=SR, return_token_timestamps=True)
    np.testing.assert_array_equal(out["num_frames"], [len(clips["speech_en_short"]) // 160, 400])


@pytest.mark.parametrize(
    ("return_tensors", "module", "type_name"),
    [("np", "numpy", "ndarray"), ("pt", "torch", "Tensor"), ("tf", "tensorflow", "Tensor"), ("jax", "jax", "Array")],
)
def test_return_tensors(clips, extractor, return_tensors: str, module: str, type_name: str) -> None:
    framework = pytest.importorskip(module)
    out = extractor(clips["noise"], sampling_rate=SR, return_tensors=return_tensors, return_attention_mask=True)
    assert isinstance(out["input_features"], getattr(framework, type_name))
    assert isinstance(out["attention_mask"], getattr(framework, type_name))
    np.testing.assert_array_equal(np.asarray(out["input_features"]), features(extractor, clips["noise"]))
    assert tuple(out["attention_mask"].shape) == (1, 3000)


# ---------------------------------------------------------------------------------------------------------------------
# Integer PCM
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "to_float"),
    [
        (np.int16, lambda x: x / 32768.0),
        (np.int32, lambda x: x / 2.0**31),
        (np.int8, lambda x: x / 128.0),
        (np.uint8, lambda x: (x - 128.0) / 128.0),
    ],
)
def test_integer_pcm_is_scaled_by_dtype(dtype, to_float, extractor) -> None:
    info = np.iinfo(dtype)
    pcm = np.random.default_rng(3).integers(info.min, info.max, size=SR, dtype=dtype, endpoint=True)
    expected = to_float(pcm.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(features(extractor, pcm), features(extractor, expected))


# ---------------------------------------------------------------------------------------------------------------------
# (d) bad input
# ---------------------------------------------------------------------------------------------------------------------

BAD_INPUTS = [
    ("stereo item", [np.zeros((2, SR), np.float32)], r"raw_speech\[0\] has shape \(2, 16000\).*mix it down"),
    ("channels last", np.zeros((SR, 2), np.float32), r"shape \(16000, 2\).*\(samples, channels\).*mix it down"),
    ("3-D array", np.zeros((2, 2, SR), np.float32), r"shape \(2, 2, 16000\); expected a 1-D waveform"),
    ("scalar", np.float32(0.5), r"scalar .*expected a 1-D waveform"),
    ("empty array", np.zeros(0, np.float32), r"raw_speech is empty; expected at least one"),
    ("empty list", [], r"empty list"),
    ("empty item", [np.zeros(SR, np.float32), np.zeros(0, np.float32)], r"raw_speech\[1\] is empty"),
    ("nan", np.array([0.0, np.nan, 0.1], np.float32), r"non-finite sample \(nan\) at index 1"),
    (
        "inf",
        [np.array([0.0, 0.1, -np.inf], np.float32)],
        r"raw_speech\[0\] has a non-finite sample \(-inf\) at index 2",
    ),
    ("bool", np.ones(SR, dtype=bool), r"dtype bool; expected real float audio"),
    ("complex", np.ones(SR, dtype=np.complex64), r"dtype complex64; expected real float audio"),
    ("object", np.array([0.1, "a"], dtype=object), r"dtype object; expected real float audio"),
    ("string", "speech.wav", r"raw_speech must be audio samples, got str"),
    ("int64", np.zeros(SR, dtype=np.int64), r"integer dtype int64.*ambiguous.*int16"),
    ("ragged nested list", [[0.1, 0.2], [[0.1], 0.2]], r"raw_speech\[1\] must be a rectangular array"),
    ("number in batch", [np.zeros(SR, np.float32), 0.5], r"raw_speech\[1\] is a single number"),
]


@pytest.mark.parametrize(("bad", "pattern"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_rejected(extractor, bad, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        extractor(bad, sampling_rate=SR)


def test_wrong_sampling_rate_is_rejected(clips, extractor) -> None:
    with pytest.raises(InputError, match=r"44100 Hz.*expects 16000 Hz; resample the audio to 16000 Hz"):
        extractor(clips["noise"], sampling_rate=44100)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"padding": "left"}, r"padding='left' is not supported; expected 'max_length', 'longest'"),
        ({"padding": "do_not_pad"}, r"do_not_pad.*lengths \[8000, 16000\].*longest"),
        ({"pad_to_multiple_of": 0}, r"pad_to_multiple_of=0 must be a positive integer"),
        ({"max_length": -5}, r"max_length=-5 must be a positive integer"),
        ({"return_tensors": "mx"}, r"return_tensors='mx' is not supported; expected one of"),
    ],
)
def test_bad_call_arguments_are_rejected(extractor, kwargs, pattern: str) -> None:
    batch = [np.zeros(SR // 2, np.float32), np.zeros(SR, np.float32)]
    with pytest.raises(InputError, match=pattern):
        extractor(batch, sampling_rate=SR, **kwargs)


@pytest.mark.parametrize("n_samples", [160, 200, 201, 450])
def test_audio_shorter_than_a_window_gives_finite_features(extractor, n_samples: int) -> None:
    audio = np.random.default_rng(n_samples).uniform(-1, 1, n_samples).astype(np.float32)
    out = features(extractor, audio, padding="longest")
    assert out.shape == (1, 80, n_samples // 160) and np.isfinite(out).all()


def test_audio_shorter_than_a_hop_without_padding_is_rejected(extractor) -> None:
    with pytest.raises(InputError, match=r"padded to 100 samples gives no frame; expected at least hop_length=160"):
        extractor(np.zeros(100, np.float32), sampling_rate=SR, padding="longest")


def test_errors_are_value_errors(extractor) -> None:
    with pytest.raises(ValueError):
        extractor(np.zeros(0, np.float32), sampling_rate=SR)


def test_missing_sampling_rate_warns_once(monkeypatch, clips, extractor) -> None:
    monkeypatch.setattr(features_module, "_warned_missing_sampling_rate", False)
    with pytest.warns(UserWarning, match="sampling_rate was not passed.*16000 Hz"):
        extractor(clips["noise"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        extractor(clips["noise"])


# ---------------------------------------------------------------------------------------------------------------------
# (e) preprocessor_config.json
# ---------------------------------------------------------------------------------------------------------------------

TRANSFORMERS_STYLE_CONFIG = """{
  "chunk_length": 30,
  "feature_extractor_type": "WhisperFeatureExtractor",
  "feature_size": 128,
  "hop_length": 160,
  "n_fft": 400,
  "n_samples": 480000,
  "nb_max_frames": 3000,
  "padding_side": "right",
  "padding_value": 0.0,
  "processor_class": "WhisperProcessor",
  "return_attention_mask": false,
  "sampling_rate": 16000
}
"""


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    original = WhisperFeatureExtractor(feature_size=128, return_attention_mask=True, custom_key=[1, 2])
    file = original.save_pretrained(tmp_path / "model")
    assert file == tmp_path / "model" / "preprocessor_config.json"
    assert sorted(p.name for p in file.parent.iterdir()) == ["preprocessor_config.json"]  # no temporary file left
    loaded = WhisperFeatureExtractor.from_pretrained(tmp_path / "model")
    assert loaded == original and loaded.to_dict()["custom_key"] == [1, 2]
    assert WhisperFeatureExtractor.from_pretrained(file) == original


def test_written_keys_are_transformers_keys(tmp_path: Path) -> None:
    data = json.loads(WhisperFeatureExtractor().save_pretrained(tmp_path).read_text())
    assert data == json.loads(TRANSFORMERS_STYLE_CONFIG) | {"feature_size": 80}


def test_transformers_style_file_loads(tmp_path: Path, clips) -> None:
    (tmp_path / "preprocessor_config.json").write_text(TRANSFORMERS_STYLE_CONFIG)
    loaded = WhisperFeatureExtractor.from_pretrained(tmp_path)
    assert (loaded.feature_size, loaded.n_samples, loaded.nb_max_frames) == (128, 480000, 3000)
    assert loaded(clips["noise"], sampling_rate=SR)["input_features"].shape == (1, 128, 3000)
    assert json.loads(loaded.to_json_string()) == json.loads(TRANSFORMERS_STYLE_CONFIG)


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "preprocessor_config.json"
    file.write_text('{\n  "feature_size": 80,\n  "hop_length": 160\n  "n_fft": 400\n}\n')
    with pytest.raises(ConfigError, match=r"preprocessor_config\.json is not valid JSON: .* line 4"):
        WhisperFeatureExtractor.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"n_samples": 160000}, r"n_samples is derived .* must be 480000"),
        ({"feature_size": 0}, r"feature_size must be a positive integer, got 0"),
        ({"hop_length": "160"}, r"hop_length must be a positive integer, got '160'"),
        ({"dither": 0.5}, r"dither=0\.5 is not supported"),
        ({"padding_side": "left"}, r"padding_side='left' is not supported"),
    ],
)
def test_invalid_config_values_name_the_file(tmp_path: Path, change: dict, pattern: str) -> None:
    file = tmp_path / "preprocessor_config.json"
    file.write_text(json.dumps(json.loads(TRANSFORMERS_STYLE_CONFIG) | change))
    with pytest.raises(ConfigError, match=rf"{file}: {pattern}"):
        WhisperFeatureExtractor.from_pretrained(file)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no preprocessor_config\.json"):
        WhisperFeatureExtractor.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# Property: any finite waveform gives finite features of the fixed shape
# ---------------------------------------------------------------------------------------------------------------------

_extractor_for_property = WhisperFeatureExtractor()


@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        st.integers(min_value=1, max_value=50000),
        elements=st.floats(-4.0, 4.0, width=32, allow_nan=False, allow_infinity=False),
    )
)
def test_any_finite_waveform_gives_finite_features(audio: np.ndarray) -> None:
    out = _extractor_for_property(audio, sampling_rate=SR)["input_features"]
    assert out.shape == (1, 80, 3000) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= out.max() - 2.0 - 1e-6  # the clamp: 8 log10 units below the maximum, divided by 4
