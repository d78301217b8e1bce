"""The ONNX format's two graphs, named once: what the PyTorch model writes (``pt/export.py``) and the onnx backend
reads (``onnx/``). Shapes: ``pt/export.py``."""

from __future__ import annotations

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
ENCODER_INPUTS = ("input_features",)
ENCODER_OUTPUTS = ("cross_keys_values",)
DECODER_INPUTS = ("input_ids", "past_keys_values", "cross_keys_values", "logit_positions")
DECODER_OUTPUTS = ("logits", "present_keys_values", "cross_attentions")
