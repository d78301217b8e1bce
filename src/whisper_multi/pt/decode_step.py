"""One decoding step of one new token per row, for the eager ``generate`` loop: the decoder's weights in the layouts
that CPU kernels stream fastest, and attention over the written cache positions only.

A step multiplies one row per beam by every decoder matrix and by the vocabulary matrix: memory-bound work (every
decoder weight, the audio keys and values and the whole vocabulary matrix are read per token). Measured on CPU
(``benchmarks/bench_generation.py``, figures in ``benchmarks/results.md``), what the model's ``forward`` leaves on
the table is:

- ``F.linear`` with the (out, in) weight runs one single-threaded GEMV, slower than an (in, out) layout, so every matrix is stored (in, out), split by output columns into one slice per thread and applied with
  ``baddbmm``, whose batch dimension torch spreads over its threads;
- the query, key and value projections of self-attention are one matrix, applied once;
- the static cache is preallocated for the longest sequence; attention reads only the positions written so far
  instead of masking the rest;
- the audio keys and values come out of the prefill as transposed views; attention over them is faster once they
  are contiguous, which the seam makes them once per search (``contiguous_cross_pairs``).

The packing is a second copy of the decoder's matrices (the cross-attention key and value matrices excepted, as only
the prefill uses them) and of the vocabulary matrix, made on CPU only: other devices' kernels need none of this.

The arithmetic is the model's (pre-norm blocks, the query scaled after its projection, the key without bias): the
logits agree with ``forward`` to float32 round-off (the summation order of the products differs), and the tests
hold the generated tokens equal. The model's ``forward`` stays the reference and serves everything else (prefill,
training, attentions, head masks, compiled decoding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# (weight slices (chunks, in, out / chunks), bias slices (chunks, 1, out / chunks) or None)
Packed = tuple[torch.Tensor, torch.Tensor | None]


def pack_linear(weight: torch.Tensor, bias: torch.Tensor | None, chunks: int) -> Packed:
    """``weight`` (out, in) as ``chunks`` contiguous (in, out / chunks) slices; one slice when out does not split."""
    out_features, in_features = weight.shape
    chunks = chunks if out_features % chunks == 0 else 1
    width = out_features // chunks
    slices = weight.detach().t().reshape(in_features, chunks, width).permute(1, 0, 2).contiguous()
    return slices, None if bias is None else bias.detach().reshape(chunks, 1, width).contiguous()


def apply_linear(x: torch.Tensor, packed: Packed) -> torch.Tensor:
    """``x`` (rows, in) times a packed matrix: (rows, out), as ``F.linear`` with the unpacked weight gives it."""
    slices, bias = packed
    rows = x.expand(slices.shape[0], *x.shape)  # the same rows against every slice: (chunks, rows, in)
    y = torch.bmm(rows, slices) if bias is None else torch.baddbmm(bias, rows, slices)
    return y.permute(1, 0, 2).reshape(x.shape[0], -1)  # (rows, chunks * width)


def _layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


@dataclass
class PackedLayer:
    self_attn_layer_norm: nn.LayerNorm
    qkv_proj: Packed  # q, k, v of self-attention side by side; the key's bias is zero
    self_out_proj: Packed
    encoder_attn_layer_norm: nn.LayerNorm
    cross_q_proj: Packed
    cross_out_proj: Packed
    final_layer_norm: nn.LayerNorm
    fc1: Packed
    fc2: Packed
    activation_fn: Any
    num_heads: int
    scaling: float


def _pack_layer(layer: Any, chunks: int) -> PackedLayer:
    attention, cross = layer.self_attn, layer.encoder_attn
    qkv_weight = torch.cat([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight])
    key_bias = torch.zeros_like(attention.q_proj.bias)
    qkv_bias = torch.cat([attention.q_proj.bias, key_bias, attention.v_proj.bias])
    return PackedLayer(
        self_attn_layer_norm=layer.self_attn_layer_norm,
        qkv_proj=pack_linear(qkv_weight, qkv_bias, chunks),
        self_out_proj=pack_linear(attention.out_proj.weight, attention.out_proj.bias, chunks),
        encoder_attn_layer_norm=layer.encoder_attn_layer_norm,
        cross_q_proj=pack_linear(cross.q_proj.weight, cross.q_proj.bias, chunks),
        cross_out_proj=pack_linear(cross.out_proj.weight, cross.out_proj.bias, chunks),
        final_layer_norm=layer.final_layer_norm,
        fc1=pack_linear(layer.fc1.weight, layer.fc1.bias, chunks),
        fc2=pack_linear(layer.fc2.weight, layer.fc2.bias, chunks),
        activation_fn=layer.activation_fn,
        num_heads=attention.num_heads,
        scaling=attention.scaling,
    )


class PackedDecoder:
    """The decoder and vocabulary projection of a ``WhisperForConditionalGeneration``, packed for one-token steps.

    ``current(model)`` gives the packing of the model's weights as they are now: it is rebuilt when a parameter was
    replaced or changed in place (its data pointer or version moved), so fine-tuning between calls is seen.
    """

    def __init__(self, model: Any, chunks: int):
        decoder = model.model.decoder
        self.embed_tokens = decoder.embed_tokens.weight.detach()
        self.embed_positions = decoder.embed_positions.weight.detach()
        self.layers = [_pack_layer(layer, chunks) for layer in decoder.layers]
        self.layer_norm = decoder.layer_norm
        self.proj_out = pack_linear(model.proj_out.weight, None, chunks)
        self.source = _weights_state(model)

    @classmethod
    def current(cls, model: Any, previous: PackedDecoder | None) -> PackedDecoder:
        if previous is not None and previous.source == _weights_state(model):
            return previous
        return cls(model, chunks=torch.get_num_threads())

    def step(self, tokens: torch.Tensor, cache: Any, position: int) -> tuple[torch.Tensor, Any]:
        """Logits (rows, 1, vocab) of ``tokens`` (rows, 1) written at ``position`` of the static ``cache``."""
        rows = tokens.shape[0]
        hidden = self.embed_tokens[tokens[:, 0]] + self.embed_positions[position]  # (rows, d_model)
        d_model = hidden.shape[-1]
        next_cache = []
        for layer, (self_k, self_v, cross_k, cross_v) in zip(self.layers, cache):
            heads = layer.num_heads
            head_dim = d_model // heads

            x = _layer_norm(hidden, layer.self_attn_layer_norm)
            q, k, v = apply_linear(x, layer.qkv_proj).split(d_model, dim=-1)
            self_k[:, :, position] = k.view(rows, heads, head_dim)
            self_v[:, :, position] = v.view(rows, heads, head_dim)
            written = position + 1
            wv = _attend(q * layer.scaling, self_k[:, :, :written], self_v[:, :, :written], heads)
            hidden = hidden + apply_linear(wv, layer.self_out_proj)

            x = _layer_norm(hidden, layer.encoder_attn_layer_norm)
            q = apply_linear(x, layer.cross_q_proj) * layer.scaling
            hidden = hidden + apply_linear(_attend(q, cross_k, cross_v, heads), layer.cross_out_proj)

            x = _layer_norm(hidden, layer.final_layer_norm)
            hidden = hidden + apply_linear(layer.activation_fn(apply_linear(x, layer.fc1)), layer.fc2)
            next_cache.append((self_k, self_v, cross_k, cross_v))
        hidden = _layer_norm(hidden, self.layer_norm)
        return apply_linear(hidden, self.proj_out)[:, None], tuple(next_cache)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """One scaled query per row (rows, d_model) against (rows, heads, time, head_dim) keys: (rows, d_model)."""
    rows, d_model = q.shape
    q = q.view(rows, heads, 1, d_model // heads)
    return F.scaled_dot_product_attention(q, k, v, scale=1.0).reshape(rows, d_model)


def contiguous_cross_pairs(cache: Any) -> Any:
    """The cache with each layer's audio keys and values made contiguous (done once, after the prefill)."""
    return tuple(
        (k, v, cross_k, cross_v)
        if cross_k is None or cross_k.is_contiguous()
        else (k, v, cross_k.contiguous(), cross_v.contiguous())
        for k, v, cross_k, cross_v in cache
    )


def _weights_state(model: Any) -> tuple[tuple[int, int], ...]:
    parameters = [*model.model.decoder.parameters(), model.proj_out.weight]
    return tuple((parameter.data_ptr(), parameter._version) for parameter in parameters)
