"""The onnx backend: Whisper's ONNX graphs (``whisper-multi export MODEL OUT --format onnx``, from the PyTorch model)
run by onnxruntime, for inference only. Imports onnxruntime, no deep-learning framework."""

from __future__ import annotations

from whisper_multi.onnx.modeling import OnnxWhisperForConditionalGeneration

__all__ = ["OnnxWhisperForConditionalGeneration"]
