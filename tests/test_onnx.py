"""The onnx backend: the PyTorch model's ONNX graphs (``export --format onnx``) run by onnxruntime under the core's
decoding. The graphs against the model's forward, its decoding against the eager PyTorch model's (beam search,
language detection, long-form with word timing), int8 size and WER, and the command line.

(The float32 tokens in a fresh process that imports only onnxruntime: tests/test_export.py, with the other formats.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import installed_backend, load_tiny_en, load_wav, longform_pieces

pytest.importorskip("onnxruntime", reason='the onnx backend runs on onnxruntime: pip install "whisper-multi[export]"')
torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
AUDIO = ROOT / "tests" / "fixtures" / "audio"


@pytest.fixture(scope="module")
def tiny_en_pt():
    from whisper_multi import WhisperProcessor

    path, model, _ = load_tiny_en(installed_backend("pt").model_class().from_pretrained)
    return path, model, WhisperProcessor.from_pretrained(path)


@pytest.fixture(scope="module")
def exported(tiny_en_pt, tmp_path_factory) -> dict[str, Path]:
    """tiny.en exported as ONNX, float32 and int8."""
    from whisper_multi.export import export

    _, model, processor = tiny_en_pt
    root = tmp_path_factory.mktemp("onnx")
    return {
        dtype: export(model, root / dtype, "onnx", processor=processor, quantize=None if dtype == "float32" else dtype)
        for dtype in ("float32", "int8")
    }


@pytest.fixture(scope="module")
def onnx_tiny_en(exported):
    from whisper_multi.onnx import OnnxWhisperForConditionalGeneration

    return OnnxWhisperForConditionalGeneration.from_pretrained(exported["float32"])


def _features(*names: str) -> np.ndarray:
    from whisper_multi import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor()
    audio = [load_wav(AUDIO / f"{name}.wav") for name in names]
    return np.concatenate([extractor(clip, sampling_rate=16000).input_features for clip in audio])


# --- the graphs ------------------------------------------------------------------------------------------------------
def test_the_graphs_give_the_models_logits_and_attentions_with_the_cache_grown_in_two_calls(tmp_path: Path) -> None:
    import onnxruntime

    from whisper_multi.configuration import WhisperConfig
    from whisper_multi.pt.export import write_decoder, write_encoder

    shape = {"d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128}
    config = WhisperConfig.from_preset("tiny.en", encoder_attention_heads=2, decoder_attention_heads=2, **shape)
    torch.manual_seed(0)
    model = installed_backend("pt").model_class()(config).eval()
    write_encoder(model, tmp_path / "encoder.onnx")
    write_decoder(model, tmp_path / "decoder.onnx")
    encoder = onnxruntime.InferenceSession(str(tmp_path / "encoder.onnx"))
    decoder = onnxruntime.InferenceSession(str(tmp_path / "decoder.onnx"))

    features = np.random.default_rng(0).standard_normal((2, 80, 3000)).astype(np.float32)
    tokens = np.array([[50257, 50362, 440, 2068, 7586]] * 2, dtype=np.int64)
    (audio,) = encoder.run(None, {"input_features": features})
    assert audio.shape == (2, 2, 2, 2, 1500, 32)  # batch, layers, keys/values, heads, positions, head_dim
    empty = np.zeros((2, 2, 2, 2, 0, 32), dtype=np.float32)
    first = {"input_ids": tokens[:, :3], "past_keys_values": empty, "cross_keys_values": audio}
    logits, present, cross = decoder.run(None, {**first, "logit_positions": np.arange(3)})
    rest = {"input_ids": tokens[:, 3:], "past_keys_values": present, "cross_keys_values": audio}
    last_logits, grown, _ = decoder.run(None, {**rest, "logit_positions": np.array([1])})
    assert present.shape[4] == 3 and grown.shape[4] == 5

    with torch.no_grad():
        reference = model(
            input_features=torch.from_numpy(features), decoder_input_ids=torch.from_numpy(tokens),
            output_attentions=True,
        )  # fmt: skip
    expected = reference.logits.numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(logits, expected[:, :3], rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(last_logits[:, 0], expected[:, 4], rtol=0, atol=1e-5 * scale)
    expected_cross = torch.stack(reference.cross_attentions, dim=1).numpy()[:, :, :, :3]
    np.testing.assert_allclose(cross, expected_cross, rtol=0, atol=1e-6)


def test_the_tied_vocabulary_matrix_is_stored_once(exported) -> None:
    import onnx

    decoder = onnx.load(str(exported["float32"] / "decoder.onnx"))
    vocabulary = [tensor for tensor in decoder.graph.initializer if 51864 in tensor.dims]
    assert [list(tensor.dims) for tensor in vocabulary] == [[384, 51864]]


# --- decoding through the onnx backend -------------------------------------------------------------------------------
def test_beam_search_gives_the_eager_pytorch_models_tokens(tiny_en_pt, onnx_tiny_en) -> None:
    features = _features("speech_en_short")
    expected = tiny_en_pt[1].generate(torch.from_numpy(features), num_beams=3, compiled=False).numpy()
    tokens = onnx_tiny_en.generate(features, num_beams=3)
    assert tokens.dtype == np.int64
    np.testing.assert_array_equal(tokens, expected)


def test_long_form_with_word_timestamps_matches_the_pytorch_backend(tiny_en_pt, onnx_tiny_en) -> None:
    from whisper_multi.longform.transcribe import transcribe

    path, model, processor = tiny_en_pt
    audio = load_wav(AUDIO / "speech_en_25s.wav")
    options = {"word_timestamps": True, "model_dir": path}
    expected = transcribe(model, audio, processor.tokenizer, **options)
    result = transcribe(onnx_tiny_en, audio, processor.tokenizer, **options)
    assert result.text == expected.text and len(result.text.split()) > 40
    words = [word for segment in result.segments for word in segment.words]
    expected_words = [word for segment in expected.segments for word in segment.words]
    assert [word.word for word in words] == [word.word for word in expected_words]
    # The cross-attention weights agree to float32 round-off; the timings are read on a 20 ms grid.
    starts = np.array([word.start for word in words]) - np.array([word.start for word in expected_words])
    assert np.abs(starts).max() <= 0.02


# --- int8 ------------------------------------------------------------------------------------------------------------
def test_int8_is_under_a_third_of_float32_and_keeps_the_long_form_wer(exported, tiny_en_pt) -> None:
    from whisper_multi.export import artifact_size
    from whisper_multi.longform.evaluate import word_error_rate
    from whisper_multi.onnx import OnnxWhisperForConditionalGeneration

    features, reference = longform_pieces()
    processor = tiny_en_pt[2]
    wer = {}
    for dtype, folder in exported.items():
        model = OnnxWhisperForConditionalGeneration.from_pretrained(folder)
        text = " ".join(processor.batch_decode(model.generate(features), skip_special_tokens=True))
        wer[dtype] = word_error_rate(reference, text)
    assert wer["float32"] < 0.3  # it transcribes (0.20 on this fixture with 20 s pieces)
    assert wer["int8"] <= wer["float32"] + 0.02, wer
    sizes = {dtype: artifact_size(folder) for dtype, folder in exported.items()}
    assert sizes["int8"] <= 0.3 * sizes["float32"], sizes


# --- the command line ------------------------------------------------------------------------------------------------
def _run(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "whisper_multi", *arguments]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def test_transcribe_with_the_onnx_backend_writes_the_pytorch_models_text(exported, tiny_en_pt, tmp_path: Path) -> None:
    from whisper_multi.longform.transcribe import transcribe

    clip = str(AUDIO / "speech_en_short.wav")
    result = _run(
        "transcribe", clip, "--model", str(exported["float32"]), "--backend", "onnx", "-f", "json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    text = json.loads((tmp_path / "speech_en_short.json").read_text())["text"]
    assert text == transcribe(tiny_en_pt[1], clip, tiny_en_pt[2].tokenizer).text and "lazy dog" in text


def test_the_onnx_backend_given_a_checkpoint_says_how_to_export_it(tmp_path: Path) -> None:
    result = _run("transcribe", str(AUDIO / "speech_en_short.wav"), "--backend", "onnx", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "has no encoder.onnx, decoder.onnx" in result.stderr and "--format onnx" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_decoding_options_are_refused_for_onnx_which_takes_them_at_run_time() -> None:
    from whisper_multi.errors import InputError
    from whisper_multi.export import ExportOptions

    with pytest.raises(InputError, match="format onnx holds the model's graphs, not one decoding; drop language, task"):
        ExportOptions("onnx", language="fr", task="translate")


def test_evaluate_with_the_onnx_backend_gives_the_pytorch_models_rates(exported, tiny_en_pt, tmp_path: Path) -> None:
    from whisper_multi.longform.evaluate import evaluate

    data = tmp_path / "data"
    data.mkdir()
    (data / "clip.wav").write_bytes((AUDIO / "speech_en_short.wav").read_bytes())
    truth = (AUDIO / "speech_en_short.txt").read_text(encoding="utf-8").strip()
    (data / "metadata.csv").write_text(f'file_name,transcription\nclip.wav,"{truth}"\n', encoding="utf-8")
    result = _run(
        "evaluate", str(exported["float32"]), str(data), "--backend", "onnx", "-o", "rates.json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    rates = json.loads((tmp_path / "rates.json").read_text())
    expected = evaluate(tiny_en_pt[1], tiny_en_pt[2], data)
    assert (rates["wer"], rates["cer"]) == (expected.wer, expected.cer) and rates["files"][0]["words"] > 10
