"""Deployable artifacts: ``export(model, out, format=...)``.

The formats (``formats.FORMATS``): a TensorFlow SavedModel and a TFLite file from the TF model and ``jax.export``
bytes from the Flax model run the whole greedy decoding, the core's (``plan.export_plan``, ``decoding.search``),
traced into the artifact by the backend's ``export`` module; ONNX graphs from the PyTorch model are decoded by the
onnx backend (``whisper_multi.onnx``). OUT also holds the config, generation config, tokenizer and preprocessor
files, and ``export.json`` (what was exported and how to call it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from whisper_multi.backends import BACKENDS, backend_of
from whisper_multi.decoding.generate import generation_config_of
from whisper_multi.errors import InputError
from whisper_multi.export.folder import folder_bytes, staged
from whisper_multi.export.formats import FORMATS, QUANTIZATIONS, ExportFormat
from whisper_multi.export.options import ExportOptions
from whisper_multi.export.plan import export_plan
from whisper_multi.jsonfile import atomic_write_text

__all__ = ["FORMATS", "QUANTIZATIONS", "ExportFormat", "ExportOptions", "export"]


def export(model: Any, out: str | os.PathLike[str], format: str, *, processor: Any = None, **options: Any) -> Path:
    """Write ``model`` as ``format`` into the new folder ``out`` (atomically) and return it. ``options``: those of
    ``ExportOptions`` (quantize, max_new_tokens, language, task, timestamps, batch_size). ``processor``: its
    tokenizer and feature extractor files are written beside the artifact (the CLI passes the checkpoint's)."""
    chosen = ExportOptions(format=format, **options)
    _check_backend(model, chosen.spec)
    plan, prefix = export_plan(model, chosen) if chosen.spec.holds_decoding else (None, None)
    destination = Path(out)
    with staged(destination) as staging:
        BACKENDS[chosen.spec.backend].module("export").write(model, plan, prefix, chosen, staging)
        model.config.save_pretrained(staging)
        generation_config_of(model).save_pretrained(staging)
        if processor is not None:
            processor.save_pretrained(staging)
        description = json.dumps(_description(chosen, plan, prefix), indent=2) + "\n"
        atomic_write_text(staging / "export.json", description)
    return destination


def _check_backend(model: Any, spec: ExportFormat) -> None:
    backend = backend_of(model)
    if backend.key != spec.backend:
        wanted = BACKENDS[spec.backend].class_name()
        raise InputError(
            f"format {spec.name} is written from the {spec.framework} model, got a {backend.framework} "
            f"{type(model).__name__}: load the checkpoint with {wanted} (the CLI does it for you)"
        )


def _description(options: ExportOptions, plan: Any, prefix: Any) -> dict[str, Any]:
    if plan is None:
        spec = options.spec
        return {
            "format": spec.name,
            "quantize": options.quantize or "float32",
            "files": spec.artifact,
            "runtime": spec.runtime,
        }
    return {
        "format": options.format,
        "quantize": options.quantize or "float32",
        "batch_size": options.batch_size,
        "prefix": [int(token) for token in prefix[0]],
        "max_length": plan.max_length,
        "eos_token_id": plan.eot,
        "pad_token_id": plan.pad,
        "timestamps": options.timestamps,
    }


def artifact_size(out: Path) -> int:
    """The bytes of the folder ``export`` wrote."""
    if not out.is_dir():
        raise InputError(f"{out} is not an exported folder")
    return folder_bytes(out)
