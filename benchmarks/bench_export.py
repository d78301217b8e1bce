"""Exported artifacts (case 8): each format's greedy decoding of the 25 s clip, and its file size, beside
CTranslate2 (faster-whisper) in float32 and int8 on the same tiny.en weights.

An artifact is written once by ``whisper-multi export`` of the embedded tiny.en (cached in
``$WHISPER_MULTI_BENCH_CACHE``) and run in the measured process by its runtime alone: ``tf.saved_model.load`` for
savedmodel, LiteRT's signature runner for tflite, ``jax.export.deserialize`` for jax, and for onnx the onnx backend
(onnxruntime sessions of the encoder and decoder graphs under the core's greedy decoding). The input is the clip's
log-mel padded to 30 s (1, 80, 3000); the artifact runs the encoder and the whole greedy decoding (448 positions at
most). faster-whisper runs the same features through ``encode`` + greedy ``generate_with_fallback`` (bench_generation)
with ``compute_type`` float32, and int8 for the quantized artifacts. Sizes: the artifact folder's bytes against the
CTranslate2 model's ``model.bin`` as packaged (float16 weights; CTranslate2 converts them to the compute type when
it loads). No target: reported.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path

from benchmarks.bench_generation import faster_whisper_greedy
from benchmarks.harness import (
    Case,
    Measured,
    Peer,
    Run,
    Settings,
    Unavailable,
    cache_dir,
    model_dir,
    ours_python,
    speech_features,
)

ARTIFACTS = (
    ("savedmodel", None), ("tflite", None), ("tflite", "float16"), ("tflite", "int8"), ("onnx", None), ("onnx", "int8"),
    ("jax", None),
)  # fmt: skip
SMOKE_TOKENS = 4  # smoke runs export artifacts that stop after a few tokens


def _name(format: str, quantize: str | None) -> str:
    return f"{format}-{quantize or 'float32'}"


def _artifact(format: str, quantize: str | None, settings: Settings) -> Path:
    """The exported folder, written by ``whisper-multi export`` in our environment on first use."""
    suffix = "-smoke" if settings.smoke else ""
    out = cache_dir() / f"export-tiny.en-{_name(format, quantize)}{suffix}"
    if not (out / "export.json").exists():
        command = [ours_python(), "-m", "whisper_multi", "export", str(model_dir()), str(out), "--format", format]
        command += ["--quantize", quantize] if quantize else []
        # onnx holds no decoding: its runner stops early instead (_runner).
        command += ["--max-new-tokens", str(SMOKE_TOKENS)] if settings.smoke and format != "onnx" else []
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1][:300]
            raise Unavailable(f"whisper-multi export --format {format} failed: {last}")
    return out


def _runner(format: str, out: Path, settings: Settings) -> Callable[[object], object]:
    """``features -> sequences`` of the artifact, through its runtime only."""
    import numpy as np

    if format == "onnx":
        try:
            from whisper_multi.onnx import OnnxWhisperForConditionalGeneration
        except ImportError as error:
            raise Unavailable(f"onnxruntime is not installed: {error}") from error
        model = OnnxWhisperForConditionalGeneration.from_pretrained(out)
        tokens = {"max_new_tokens": SMOKE_TOKENS} if settings.smoke else {}
        return lambda features: model.generate(features, return_dict_in_generate=True, **tokens).sequences
    if format == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(str(out)).signatures["serving_default"]
        return lambda features: serve(input_features=tf.constant(features))["sequences"].numpy()
    if format == "tflite":
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise Unavailable(f"ai-edge-litert is not installed: {error}") from error
        runner = Interpreter(model_path=str(out / "model.tflite")).get_signature_runner()
        return lambda features: runner(input_features=features)["sequences"]
    import jax

    exported = jax.export.deserialize(bytearray((out / "model.jax").read_bytes()))
    return lambda features: np.asarray(exported.call(features))


def _ours_time(format: str, quantize: str | None, settings: Settings) -> Callable[[], object]:
    run = _runner(format, _artifact(format, quantize, settings), settings)
    features = speech_features(1)
    return lambda: run(features)


def _ours_size(format: str, quantize: str | None, settings: Settings) -> Callable[[], object]:
    out = _artifact(format, quantize, settings)
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    return lambda: Measured(float(size))


def _ct2_time(compute_type: str, settings: Settings) -> Callable[[], object]:
    try:
        import faster_whisper  # noqa: F401
    except ImportError as error:
        raise Unavailable(f"faster-whisper is not installed: {error}") from error
    tokens = SMOKE_TOKENS if settings.smoke else None
    return faster_whisper_greedy(str(model_dir()), speech_features(1)[0], tokens, compute_type=compute_type)


def _ct2_size(settings: Settings) -> Callable[[], object]:
    size = (model_dir() / "model.bin").stat().st_size
    return lambda: Measured(float(size))


def cases() -> list[Case]:
    ct2 = {dtype: Peer(Run(f"faster-whisper ct2 {dtype}", partial(_ct2_time, dtype))) for dtype in ("float32", "int8")}
    ct2_size = Peer(Run("ct2 model.bin (float16)", _ct2_size, deterministic=True))
    result = []
    for format, quantize in ARTIFACTS:
        name = _name(format, quantize)
        peers = (ct2["float32"], ct2["int8"]) if quantize == "int8" else (ct2["float32"],)
        ours = Run(f"{name} artifact", partial(_ours_time, format, quantize))
        result.append(Case(f"export/{name}", "export", ours, peers, report_peak_rss=True))
        size = Run(f"{name} files", partial(_ours_size, format, quantize), deterministic=True)
        result.append(Case(f"export-size/{name}", "export", size, (ct2_size,), kind="memory"))
    return result
