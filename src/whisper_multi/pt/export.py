"""ONNX graphs of the PyTorch model, for the onnx backend (``whisper_multi.onnx``) to run with onnxruntime.

Two graphs, so that no weight is stored twice and the decoding stays the core's (run by the onnx backend over the same
seam as every backend), not a loop traced into the graph:

- ``encoder.onnx``: ``input_features`` (batch, n_mels, frames) -> ``cross_keys_values`` (batch, layers, 2, heads,
  positions, head_dim): the audio's keys and values for every decoder layer's cross-attention, all the decoder ever
  reads of the audio. Its cross-attention key and value matrices live here and nowhere else.
- ``decoder.onnx``: ``input_ids`` (batch, time) int64 written after ``past_keys_values`` (batch, layers, 2, heads,
  past, head_dim; ``past`` may be 0), ``cross_keys_values``, and ``logit_positions`` (k,) int64 (which of the time
  positions get logits: the vocabulary projection of a long prompt is the costliest part of a prefill, and the search
  reads two positions) -> ``logits`` (batch, k, vocab), ``present_keys_values`` (past + time positions) and
  ``cross_attentions`` (batch, layers, heads, time, positions; for word timing).

The graphs are traced by torch's TorchScript exporter at its newest opset: the graphs are plain tensor code with
dynamic sizes, which it writes without the onnxscript package the torch.export-based exporter needs. The decoder's
arithmetic is the model's (pre-norm blocks, the query scaled after its projection, no key bias), written
out so the cache is a plain input and output. The token embedding, tied to the vocabulary projection, is one (d_model,
vocab) initializer read by both the lookup and the projection: stored once, in float32 and in int8.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from whisper_multi.errors import InputError
from whisper_multi.export.graphs import (
    DECODER_FILE,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_FILE,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
)
from whisper_multi.modeling.utils import expected_num_frames

# The TorchScript exporter's newest opset (torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET).
OPSET = 20


class EncoderGraph(nn.Module):
    """Log-mel features -> every decoder layer's cross-attention keys and values, stacked."""

    def __init__(self, model: Any):
        super().__init__()
        self.encoder = model.model.encoder
        self.cross_attentions = nn.ModuleList(layer.encoder_attn for layer in model.model.decoder.layers)

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_features, return_dict=True).last_hidden_state
        pairs = [
            torch.stack([_heads(attention.k_proj(states), attention), _heads(attention.v_proj(states), attention)], 1)
            for attention in self.cross_attentions
        ]
        return torch.stack(pairs, dim=1)


class DecoderGraph(nn.Module):
    """New tokens after a cache of the ones before -> logits at ``logit_positions``, the grown cache, cross-attention
    weights."""

    def __init__(self, model: Any):
        super().__init__()
        decoder = model.model.decoder
        self.layers = decoder.layers
        self.layer_norm = decoder.layer_norm
        self.embed_positions = decoder.embed_positions
        # (d_model, vocab): the layout the projection multiplies by; the lookup gathers its columns.
        self.vocabulary = nn.Parameter(model.proj_out.weight.detach().t().contiguous(), requires_grad=False)
        tied = model.proj_out.weight.data_ptr() == decoder.embed_tokens.weight.data_ptr()
        embedding = self.vocabulary if tied else decoder.embed_tokens.weight.detach().t().contiguous()
        self.embedding = embedding if tied else nn.Parameter(embedding, requires_grad=False)

    def forward(
        self,
        input_ids: torch.Tensor,
        past_keys_values: torch.Tensor,
        cross_keys_values: torch.Tensor,
        logit_positions: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, time = input_ids.shape
        offset = past_keys_values.shape[4]
        positions = torch.arange(time, device=input_ids.device) + offset
        tokens = self.embedding.index_select(1, input_ids.reshape(-1)).t().reshape(batch, time, -1)
        hidden = tokens + self.embed_positions.weight.index_select(0, positions)
        mask = _causal_mask(positions, offset + time, hidden.dtype)
        presents, cross_weights = [], []
        for index, layer in enumerate(self.layers):
            attention = layer.self_attn
            x = layer.self_attn_layer_norm(hidden)
            query = _heads(attention.q_proj(x) * attention.scaling, attention)
            keys = torch.cat([past_keys_values[:, index, 0], _heads(attention.k_proj(x), attention)], dim=2)
            values = torch.cat([past_keys_values[:, index, 1], _heads(attention.v_proj(x), attention)], dim=2)
            presents.append(torch.stack([keys, values], dim=1))
            weights = torch.softmax(query @ keys.transpose(-1, -2) + mask, dim=-1)
            hidden = hidden + attention.out_proj(_merge(weights @ values))

            cross = layer.encoder_attn
            x = layer.encoder_attn_layer_norm(hidden)
            query = _heads(cross.q_proj(x) * cross.scaling, cross)
            weights = torch.softmax(query @ cross_keys_values[:, index, 0].transpose(-1, -2), dim=-1)
            cross_weights.append(weights)
            hidden = hidden + cross.out_proj(_merge(weights @ cross_keys_values[:, index, 1]))

            x = layer.final_layer_norm(hidden)
            hidden = hidden + layer.fc2(layer.activation_fn(layer.fc1(x)))
        hidden = self.layer_norm(hidden).index_select(1, logit_positions)
        logits = hidden @ self.vocabulary
        return logits, torch.stack(presents, dim=1), torch.stack(cross_weights, dim=1)


def _heads(x: torch.Tensor, attention: Any) -> torch.Tensor:
    """(batch, time, d_model) -> (batch, heads, time, head_dim)."""
    batch, time, _ = x.shape
    return x.reshape(batch, time, attention.num_heads, attention.head_dim).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(batch, heads, time, head_dim) -> (batch, time, d_model)."""
    batch, heads, time, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, time, heads * head_dim)


def _causal_mask(positions: torch.Tensor, length: Any, dtype: torch.dtype) -> torch.Tensor:
    """(time, length): 0 where a query at ``positions`` may see a key, the dtype's lowest value after it."""
    keys = torch.arange(length, device=positions.device)
    blocked = keys[None, :] > positions[:, None]
    return torch.where(blocked, torch.finfo(dtype).min, 0.0).to(dtype)


def _example_inputs(model: Any) -> tuple[torch.Tensor, ...]:
    """Small inputs to trace with; every size the graphs take as dynamic is above 1 so none is specialised."""
    config = model.config
    heads = config.decoder_attention_heads
    head_dim = config.d_model // heads
    layers, positions = config.decoder_layers, config.max_source_positions
    batch, past, time = 2, 3, 2
    return (
        torch.zeros(batch, time, dtype=torch.int64),
        torch.zeros(batch, layers, 2, heads, past, head_dim),
        torch.zeros(batch, layers, 2, heads, positions, head_dim),
        torch.tensor([0, time - 1], dtype=torch.int64),
    )


def write_encoder(model: Any, path: Path) -> None:
    config = model.config
    features = torch.zeros(2, config.num_mel_bins, expected_num_frames(config))
    torch.onnx.export(
        EncoderGraph(model).eval(),
        (features,),
        str(path),
        input_names=list(ENCODER_INPUTS),
        output_names=list(ENCODER_OUTPUTS),
        dynamic_axes={"input_features": {0: "batch"}, "cross_keys_values": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )


def write_decoder(model: Any, path: Path) -> None:
    torch.onnx.export(
        DecoderGraph(model).eval(),
        _example_inputs(model),
        str(path),
        input_names=list(DECODER_INPUTS),
        output_names=list(DECODER_OUTPUTS),
        dynamic_axes={
            "input_ids": {0: "batch", 1: "time"},
            "past_keys_values": {0: "batch", 4: "past"},
            "cross_keys_values": {0: "batch"},
            "logit_positions": {0: "kept"},
            "logits": {0: "batch", 1: "kept"},
            "present_keys_values": {0: "batch", 4: "length"},
            "cross_attentions": {0: "batch", 3: "time"},
        },
        opset_version=OPSET,
        dynamo=False,
    )


def quantize_int8(path: Path) -> None:
    """``path`` rewritten with int8 weights by onnxruntime's dynamic quantization (activations quantized per call):
    per output channel, which for the shared vocabulary matrix is per token in both its uses, so it stays one
    initializer; 7-bit range, since x86 CPUs without VNNI saturate 8-bit products of unsigned activations and
    signed weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    float_path = path.with_name(path.stem + ".float32.onnx")
    path.rename(float_path)
    with _quiet_root_logger("Please consider to run pre-processing"):  # advice for static quantization
        quantize_dynamic(
            float_path, path, op_types_to_quantize=["MatMul", "Gather"], weight_type=QuantType.QInt8,
            per_channel=True, reduce_range=True,
        )  # fmt: skip
    float_path.unlink()


@contextlib.contextmanager
def _quiet_root_logger(prefix: str) -> Iterator[None]:
    """The root logger's records that start with ``prefix`` dropped while inside."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(prefix)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def write(model: Any, plan: Any, prefix: Any, options: Any, directory: Path) -> None:
    """Write the artifact of ``options.format`` into ``directory`` (the export's staging folder)."""
    if options.format != "onnx":
        raise InputError(f"format {options.format!r} is not written by PyTorch; expected onnx")
    if model.dtype != torch.float32:
        raise InputError(
            f"the model is {model.dtype}; ONNX graphs are written from float32 weights: load it in float32"
        )
    training = model.training
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter, chosen (see the module doc), warns that it is not the default one; tracing
            # warns of the encoder's shape checks, which read sizes the graph's inputs then fix.
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*legacy TorchScript-based ONNX")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            write_encoder(model.eval(), directory / ENCODER_FILE)
            write_decoder(model, directory / DECODER_FILE)
    finally:
        model.train(training)
    if options.quantize == "int8":
        for name in (ENCODER_FILE, DECODER_FILE):
            quantize_int8(directory / name)
