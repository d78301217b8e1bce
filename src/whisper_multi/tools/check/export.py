"""The ``export`` stage group: every export format's float32 artifact, run by its runtime, against the greedy tokens
of the eager model it was written from (the same weights, features and number of new tokens).

One row per format, ``export_<format>``, pair ``<format>-<backend>``; the bound is 0 differing token ids. An
artifact whose runtime is not installed (LiteRT, onnxruntime) is a skipped row that says what to install.
"""

from __future__ import annotations

import functools
import importlib.util
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from whisper_multi.export import FORMATS, export
from whisper_multi.text.special_tokens import special_tokens_for_vocab
from whisper_multi.tools.check.rows import ERROR, SKIPPED, token_differences
from whisper_multi.tools.check.run import Run

EXPORT_STAGES = tuple(f"export_{name}" for name in FORMATS)


def exports(run: Run) -> None:
    features = run.inputs.generation_features
    features = run.inputs.features if features is None else features
    with tempfile.TemporaryDirectory(prefix="whisper-multi-export-") as scratch:
        for name, spec in FORMATS.items():
            stage, pair = f"export_{name}", f"{name}-{spec.backend}"
            blocked = run.blocked([spec.backend])
            runtime = spec.runtime_module
            if blocked:
                run.unavailable(stage, pair, *blocked)
            elif runtime is not None and importlib.util.find_spec(runtime) is None:
                run.unavailable(
                    stage, pair, SKIPPED, f'{runtime} is not installed: pip install "whisper-multi[export]"'
                )
            else:
                measure = functools.partial(_tokens, run, name, Path(scratch) / name, features)
                found = run.guarded(stage, spec.backend, measure)
                if found is None:
                    run.unavailable(stage, pair, ERROR, run.step_errors[(stage, spec.backend)])
                    continue
                artifact, eager = found
                note = f"{eager.shape[-1]} ids; float32 artifact vs eager greedy"
                run.row(stage, pair, token_differences(artifact, eager), measure="tokens", note=note)


def _tokens(run: Run, name: str, folder: Path, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the artifact's sequences, the eager model's), each the prefix, the tokens and <|endoftext|>, then padding."""
    spec = FORMATS[name]
    model = run.model(spec.backend)
    decoding = {"max_new_tokens": run.inputs.generation_new_tokens, "language": _language(model.config)}
    if spec.holds_decoding:
        export(model, folder, name, batch_size=len(features), **decoding)
    else:
        export(model, folder, name)
    artifact = RUNNERS[name](folder, features, decoding)
    outputs = run.adapter(spec.backend).generate(
        model, features, return_dict_in_generate=True, compiled=False, **decoding
    )
    pad = model.config.pad_token_id
    width = max(artifact.shape[1], outputs.shape[1])
    return tuple(  # type: ignore[return-value]
        np.pad(np.asarray(x, np.int64), ((0, 0), (0, width - x.shape[1])), constant_values=pad)
        for x in (artifact, outputs)
    )


def _language(config: Any) -> str | None:
    """English for a multilingual model (an artifact's prefix is fixed), None for an English-only one."""
    return "en" if special_tokens_for_vocab(config.vocab_size).is_multilingual else None


# --- each format's runtime -------------------------------------------------------------------------------------------
def _run_savedmodel(folder: Path, features: np.ndarray, decoding: dict[str, Any]) -> np.ndarray:
    import tensorflow as tf

    serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
    return serve(input_features=tf.constant(features))["sequences"].numpy()


def _run_tflite(folder: Path, features: np.ndarray, decoding: dict[str, Any]) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(folder / FORMATS["tflite"].artifact)).get_signature_runner()
    return runner(input_features=features)["sequences"]


def _run_jax(folder: Path, features: np.ndarray, decoding: dict[str, Any]) -> np.ndarray:
    import jax

    from whisper_multi.flax.export import JAX_FILE

    exported = jax.export.deserialize(bytearray((folder / JAX_FILE).read_bytes()))
    return np.asarray(exported.call(features))


def _run_onnx(folder: Path, features: np.ndarray, decoding: dict[str, Any]) -> np.ndarray:
    from whisper_multi.onnx import OnnxWhisperForConditionalGeneration

    model = OnnxWhisperForConditionalGeneration.from_pretrained(folder)
    return model.generate(features, return_dict_in_generate=True, **decoding).sequences


RUNNERS: dict[str, Callable[[Path, np.ndarray, dict[str, Any]], np.ndarray]] = {
    "savedmodel": _run_savedmodel,
    "tflite": _run_tflite,
    "onnx": _run_onnx,
    "jax": _run_jax,
}
