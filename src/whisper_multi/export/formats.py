"""The export formats, defined once: which backend's model writes each, what OUT holds, which quantizations it has,
and whether the decoding is in the artifact (savedmodel, tflite, jax: one greedy decoding for a fixed prefix) or run
beside it (onnx: the model's graphs, decoded by the onnx backend with every option of ``generate``)."""

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
    holds_decoding: bool = True  # False: graphs of the model; language, task and length are chosen when it runs
    runtime_module: str | None = None  # what runs it beside the writing model's framework, when that is another

    @property
    def framework(self) -> str:
        return BACKENDS[self.backend].framework


FORMATS: dict[str, ExportFormat] = {
    spec.name: spec
    for spec in (
        ExportFormat("savedmodel", "tf", "a SavedModel folder (saved_model.pb, variables/)", "tf.saved_model.load", ()),
        ExportFormat(
            "tflite",
            "tf",
            "model.tflite",
            "the ai-edge-litert interpreter",
            ("int8", "float16"),
            runtime_module="ai_edge_litert",
        ),
        ExportFormat(
            "onnx",
            "pt",
            "encoder.onnx and decoder.onnx",
            "the onnx backend (onnxruntime)",
            ("int8",),
            holds_decoding=False,
            runtime_module="onnxruntime",
        ),
        ExportFormat("jax", "flax", "model.jax (jax.export's serialized Exported)", "jax.export.deserialize", ()),
    )
}
QUANTIZATIONS = ("int8", "float16")
