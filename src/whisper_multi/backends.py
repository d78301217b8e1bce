"""The backends, defined once: what each is called, which modules hold it, and its class for each head.

``BACKENDS`` are the three framework models (every head, training, conversion); ``INFERENCE_BACKENDS`` adds the
onnx backend, which transcribes (the PyTorch model's ONNX graphs run by onnxruntime) and does nothing else.
Everything that works "for each backend" (the CLI, ``check``, the conformance suite, the benchmarks, the tests) reads
these tables instead of spelling module names. Importing this module imports no framework; ``model_class`` imports the
backend's package (and so its framework) on first use.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from whisper_multi.errors import BackendError

# Head -> the class name every backend shares, before the backend's prefix ("TF", "Flax").
HEADS: dict[str, str] = {
    "base": "WhisperModel",
    "conditional_generation": "WhisperForConditionalGeneration",
    "audio_classification": "WhisperForAudioClassification",
}


@dataclass(frozen=True)
class Backend:
    """One framework's models: where they live and what they need."""

    key: str  # what users type: --backend pt, return_tensors="pt" picks the tensor type below
    framework: str  # the framework's name, for messages
    package: str  # the subpackage holding the models
    framework_modules: tuple[str, ...]  # what must be importable for the backend to run
    install_extra: str  # pip install "whisper-multi[<extra>]"
    class_prefix: str  # "TF" in TFWhisperModel
    return_tensors: str  # the key of this framework's tensors in ``return_tensors``
    tensor_module: str  # the module whose ``asarray``-like function makes those tensors
    # What ``generate(compiled=None)`` does: the mode measured fastest on CPU (benchmarks/results.md, "compiled").
    compiled_by_default: bool
    heads: tuple[str, ...] = tuple(HEADS)  # the heads it has a class for

    def class_name(self, head: str = "conditional_generation") -> str:
        if head not in HEADS:
            raise BackendError(f"head={head!r} is not a Whisper head; expected one of {', '.join(HEADS)}")
        if head not in self.heads:
            raise BackendError(f"backend {self.key!r} has no {head} model; it has {', '.join(self.heads)}")
        return self.class_prefix + HEADS[head]

    def available(self) -> bool:
        """Whether the framework is installed (without importing it)."""
        return all(importlib.util.find_spec(name.split(".")[0]) is not None for name in self.framework_modules)

    def missing_reason(self) -> str:
        """What to say (and do) when the framework is not installed."""
        return (
            f"backend {self.key!r} needs {self.framework}, which is not installed; "
            f'run: pip install "whisper-multi[{self.install_extra}]"'
        )

    def module(self, name: str = "") -> ModuleType:
        """The backend's package, or one of its modules (``module("generation")``), imported."""
        if not self.available():
            raise BackendError(self.missing_reason())
        return importlib.import_module(f"{self.package}.{name}" if name else self.package)

    def model_class(self, head: str = "conditional_generation") -> Any:
        return getattr(self.module(), self.class_name(head))


BACKENDS: dict[str, Backend] = {
    backend.key: backend
    for backend in (
        Backend("pt", "PyTorch", "whisper_multi.pt", ("torch",), "torch", "", "pt", "torch", False),
        Backend(
            "tf", "TensorFlow", "whisper_multi.tf", ("tensorflow", "keras"), "tf-cpu", "TF", "tf", "tensorflow", True
        ),
        Backend("flax", "Flax", "whisper_multi.flax", ("jax", "flax"), "flax", "Flax", "jax", "jax.numpy", True),
    )
}
ONNX = Backend(
    "onnx", "ONNX Runtime", "whisper_multi.onnx", ("onnxruntime",), "export", "Onnx", "np", "numpy", False,
    heads=("conditional_generation",),
)  # fmt: skip
INFERENCE_BACKENDS: dict[str, Backend] = {**BACKENDS, ONNX.key: ONNX}


def backend(key: str) -> Backend:
    if key not in INFERENCE_BACKENDS:
        raise BackendError(f"backend {key!r} is not one of {', '.join(INFERENCE_BACKENDS)}; pick one of those")
    return INFERENCE_BACKENDS[key]


def model_class(key: str, head: str = "conditional_generation") -> Any:
    """``model_class("tf", "base")`` is ``whisper_multi.tf.TFWhisperModel``."""
    return backend(key).model_class(head)


def backend_of(model: Any) -> Backend:
    """The backend whose package defines ``model``'s class."""
    module = type(model).__module__
    for candidate in INFERENCE_BACKENDS.values():
        if module == candidate.package or module.startswith(candidate.package + "."):
            return candidate
    raise BackendError(
        f"{type(model).__name__} (from {module}) is not a whisper_multi model; load one with from_pretrained"
    )


# ``return_tensors`` key -> the module that makes that tensor type ("np" needs none).
TENSOR_MODULES: dict[str, str] = {spec.return_tensors: spec.tensor_module for spec in BACKENDS.values()}


def to_tensor(
    array: Any, return_tensors: str | None, device: str | None = None, unsupported: type[Exception] = BackendError
) -> Any:
    """``array`` as the tensor type ``return_tensors`` names (None and "np" keep numpy), importing only that
    framework: the one place that maps ``return_tensors``, for features and tokenizers alike. An unknown name raises
    ``unsupported`` (the caller's error class); a framework that is not installed raises ``BackendError``."""
    import numpy as np

    if return_tensors is None or return_tensors == "np":
        return np.asarray(array)
    if return_tensors not in TENSOR_MODULES:
        expected = ", ".join(repr(key) for key in ("np", *TENSOR_MODULES))
        raise unsupported(f"return_tensors={return_tensors!r} is not supported; expected one of None, {expected}")
    module_name = TENSOR_MODULES[return_tensors]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BackendError(f"return_tensors={return_tensors!r} needs {module_name}, which is not installed") from error
    if return_tensors == "pt":
        tensor = module.from_numpy(np.ascontiguousarray(array))
        return tensor.to(device) if device not in (None, "cpu") else tensor
    if return_tensors == "tf":
        return module.constant(array)
    return module.asarray(array)
