"""The export formats, defined once: which backend's model writes each, what OUT holds, which quantizations it has.
(ONNX from the PyTorch model, run by onnxruntime, is to come; it will be one more row here.)"""

from __future__ import annotations

from dataclasses import dataclass

from whisper_multi.backends import BACKENDS


@dataclass(frozen=True)
class ExportFormat:
    name: str  # what users type: --format savedmodel
    backend: str  # the key (whisper_multi.backends) of the model that writes it
    artifact: str  # what OUT holds beside the config, tokenizer and preprocessor files
    runtime: str  # what runs it, for messages and docs
    quantizations: tuple[str, ...]  # the --quantize values it takes; float32 is always there

    @property
    def framework(self) -> str:
        return BACKENDS[self.backend].framework


FORMATS: dict[str, ExportFormat] = {
    spec.name: spec
    for spec in (
        ExportFormat("savedmodel", "tf", "a SavedModel folder (saved_model.pb, variables/)", "tf.saved_model.load", ()),
        ExportFormat("tflite", "tf", "model.tflite", "the ai-edge-litert interpreter", ("int8", "float16")),
        ExportFormat("jax", "flax", "model.jax (jax.export's serialized Exported)", "jax.export.deserialize", ()),
    )
}
QUANTIZATIONS = ("int8", "float16")
