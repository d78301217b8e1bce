"""Whisper in PyTorch: encoder, decoder, the speech-to-text model and the audio classifier.

The TF Keras and Flax model files mirror this one line for line: same classes in the same order, same attribute
and local names, same comments. Attribute names are the checkpoint keys of Transformers' ``model.safetensors``, so
loading needs no rename.

Key/value cache (functional, no hooks): ``past_key_values`` is a tuple with one entry per decoder layer,
``(self_k, self_v, cross_k, cross_v)``, each (batch, heads, time, head_dim). Attention takes its pair and returns the
new pair. Without ``cache_position`` the self-attention pair grows by concatenation (a dynamic cache); with
``cache_position`` the pair is preallocated (``WhisperDecoder.init_cache``) and the new keys are written at those
positions (a static cache, fixed shapes for compiled decoding). The cross-attention pair is computed from the audio
when it is None and reused unchanged afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import InputError
from whisper_multi.modeling import arguments
from whisper_multi.modeling.utils import IGNORE_INDEX, compute_mask_indices, sinusoids
from whisper_multi.pt.generation import WhisperGenerationMixin
from whisper_multi.pt.loading import PreTrainedModelMixin
from whisper_multi.pt.outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Cache,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    SequenceClassifierOutput,
)

LayerCache = tuple[Any, Any, Any, Any]  # (self_k, self_v, cross_k, cross_v); the cross pair may be None


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def _tanh_gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": _tanh_gelu,
    "gelu_fast": _tanh_gelu,
    "gelu_pytorch_tanh": _tanh_gelu,
    "quick_gelu": _quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def _token_id_range(ids: torch.Tensor) -> tuple[int, int] | None:
    """The smallest and largest token id; None inside a compiled graph, where reading values would break it."""
    if ids.numel() == 0 or torch.compiler.is_compiling():
        return None
    lowest, highest = torch.aminmax(ids)
    return int(lowest), int(highest)


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Half precision in float32 for the softmax and the loss; float32 and float64 as they are."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    """PyTorch's F.cross_entropy: the mean over the labels that are not ``ignore_index`` (NaN if none is kept).

    Written with logsumexp because F.cross_entropy's float32 CPU log_softmax sums 51k exponentials with a bias: on the
    real base checkpoint its loss is 1.2e-5 off the float64 value (logsumexp: 1e-7) and its gradients 2e-3 off."""
    kept = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != ignore_index
    picked = logits.gather(-1, torch.where(kept, labels, 0)[:, None])[:, 0]  # (rows,)
    losses = torch.logsumexp(logits, dim=-1) - picked
    return torch.where(kept, losses, 0.0).sum() / kept.sum()


def _shift_tokens_right(labels: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs for teacher forcing, in the graph: the start token, then the labels less the last, -100 made pad."""
    if pad_token_id is None:
        raise InputError("config.pad_token_id is None; it is needed to replace ignored labels (-100)")
    start = torch.full_like(labels[:, :1], decoder_start_token_id)  # (batch, 1)
    shifted = torch.cat([start, labels[:, :-1]], dim=1)  # (batch, time)
    return shifted.masked_fill(shifted == IGNORE_INDEX, pad_token_id)


# ======================================================================================================================
# Layers
# ======================================================================================================================
class WhisperAttention(nn.Module):
    """Multi-head attention; self-attention when ``key_value_states`` is None, cross-attention otherwise."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, attn_implementation: str = "sdpa"):
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = dropout
        self.attn_implementation = attn_implementation
        # The key has no bias: it would add the same score to every key of a query, which the softmax cancels.
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=False)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, time = x.shape[0], x.shape[1]
        x = x.reshape(batch, time, self.num_heads, self.head_dim)  # (batch, time, heads, head_dim)
        return x.transpose(1, 2)  # (batch, heads, time, head_dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        past_key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        layer_head_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        cache_position: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor]]:
        """Return (output, attention weights or None, the new (k, v) cache pair)."""
        batch, time = hidden_states.shape[0], hidden_states.shape[1]
        is_cross_attention = key_value_states is not None
        # The query is scaled before the product, as the reference does, so the rounding matches it.
        q = self._split_heads(self.q_proj(hidden_states) * self.scaling)

        if is_cross_attention and past_key_value is not None and past_key_value[0] is not None:
            # The audio does not change while decoding: its keys and values were computed at the first step.
            k, v = past_key_value
        else:
            source = key_value_states if is_cross_attention else hidden_states
            k = self._split_heads(self.k_proj(source))
            v = self._split_heads(self.v_proj(source))
            if not is_cross_attention and past_key_value is not None:
                k, v = self._update_cache(past_key_value, k, v, cache_position)

        wv, qk = self._attend(q, k, v, attention_mask, layer_head_mask, output_attentions)
        wv = wv.transpose(1, 2)  # (batch, time, heads, head_dim)
        wv = wv.reshape(batch, time, self.embed_dim)  # (batch, time, d_model)
        return self.out_proj(wv), qk, (k, v)

    def _update_cache(
        self,
        past_key_value: tuple[torch.Tensor, torch.Tensor],
        k: torch.Tensor,
        v: torch.Tensor,
        cache_position: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        past_k, past_v = past_key_value
        if cache_position is None:
            # Dynamic cache: the new positions follow the cached ones.
            return torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        # Static cache: the pair is preallocated; write the new positions in place of zeros. Without gradients the
        # write is in place (a copy of the whole cache per step otherwise dominates a decoding step).
        if torch.is_grad_enabled():
            return past_k.index_copy(2, cache_position, k), past_v.index_copy(2, cache_position, v)
        return past_k.index_copy_(2, cache_position, k), past_v.index_copy_(2, cache_position, v)

    def _attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attention_mask: torch.Tensor | None,
        layer_head_mask: torch.Tensor | None,
        output_attentions: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        dropout = self.dropout if self.training else 0.0
        if self.attn_implementation == "sdpa" and not output_attentions and layer_head_mask is None:
            # Fused kernel; the query is already scaled.
            wv = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, dropout_p=dropout, scale=1.0)
            return wv, None
        qk = q @ k.transpose(-1, -2)  # (batch, heads, query_time, key_time)
        if attention_mask is not None:
            qk = qk + attention_mask
        w = torch.softmax(_at_least_float32(qk), dim=-1).to(q.dtype)
        if layer_head_mask is not None:
            w = w * layer_head_mask.reshape(1, -1, 1, 1)  # (1, heads, 1, 1)
        w_dropped = F.dropout(w, p=dropout, training=self.training)
        return w_dropped @ v, (w if output_attentions else None)


class WhisperEncoderLayer(nn.Module):
    """Pre-norm block: self-attention, then a two-layer feed-forward, each added to its input."""

    def __init__(self, config: WhisperConfig, attn_implementation: str = "sdpa"):
        super().__init__()
        self.embed_dim = config.d_model
        self.self_attn = WhisperAttention(
            self.embed_dim, config.encoder_attention_heads, config.attention_dropout, attn_implementation
        )
        self.self_attn_layer_norm = nn.LayerNorm(self.embed_dim)
        self.dropout = config.dropout
        self.activation_fn = ACTIVATIONS[config.activation_function]
        self.activation_dropout = config.activation_dropout
        self.fc1 = nn.Linear(self.embed_dim, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, self.embed_dim)
        self.final_layer_norm = nn.LayerNorm(self.embed_dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        layer_head_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        residual = hidden_states
        hidden_states = self.self_attn_layer_norm(hidden_states)
        hidden_states, attn_weights, _ = self.self_attn(
            hidden_states, layer_head_mask=layer_head_mask, output_attentions=output_attentions
        )
        hidden_states = F.dropout(hidden_states, p=self.dropout, training=self.training)
        hidden_states = residual + hidden_states

        residual = hidden_states
        hidden_states = self.final_layer_norm(hidden_states)
        hidden_states = self.activation_fn(self.fc1(hidden_states))
        hidden_states = F.dropout(hidden_states, p=self.activation_dropout, training=self.training)
        hidden_states = self.fc2(hidden_states)
        hidden_states = F.dropout(hidden_states, p=self.dropout, training=self.training)
        hidden_states = residual + hidden_states

        if hidden_states.dtype == torch.float16:
            # Half precision overflows in long audio; keep values finite.
            limit = torch.finfo(hidden_states.dtype).max - 1000
            hidden_states = torch.clamp(hidden_states, min=-limit, max=limit)
        return hidden_states, attn_weights


class WhisperDecoderLayer(nn.Module):
    """Pre-norm block: causal self-attention, cross-attention to the audio, then the feed-forward."""

    def __init__(self, config: WhisperConfig, attn_implementation: str = "sdpa"):
        super().__init__()
        self.embed_dim = config.d_model
        self.self_attn = WhisperAttention(
            self.embed_dim, config.decoder_attention_heads, config.attention_dropout, attn_implementation
        )
        self.dropout = config.dropout
        self.activation_fn = ACTIVATIONS[config.activation_function]
        self.activation_dropout = config.activation_dropout
        self.self_attn_layer_norm = nn.LayerNorm(self.embed_dim)
        self.encoder_attn = WhisperAttention(
            self.embed_dim, config.decoder_attention_heads, config.attention_dropout, attn_implementation
        )
        self.encoder_attn_layer_norm = nn.LayerNorm(self.embed_dim)
        self.fc1 = nn.Linear(self.embed_dim, config.decoder_ffn_dim)
        self.fc2 = nn.Linear(config.decoder_ffn_dim, self.embed_dim)
        self.final_layer_norm = nn.LayerNorm(self.embed_dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        layer_head_mask: torch.Tensor | None = None,
        cross_attn_layer_head_mask: torch.Tensor | None = None,
        past_key_value: LayerCache | None = None,
        output_attentions: bool = False,
        cache_position: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, LayerCache]:
        """Return (hidden states, self-attention weights, cross-attention weights, the new layer cache)."""
        self_cache = None if past_key_value is None else (past_key_value[0], past_key_value[1])
        cross_cache = None if past_key_value is None else (past_key_value[2], past_key_value[3])

        residual = hidden_states
        hidden_states = self.self_attn_layer_norm(hidden_states)
        hidden_states, self_attn_weights, self_cache = self.self_attn(
            hidden_states,
            past_key_value=self_cache,
            attention_mask=attention_mask,
            layer_head_mask=layer_head_mask,
            output_attentions=output_attentions,
            cache_position=cache_position,
        )
        hidden_states = F.dropout(hidden_states, p=self.dropout, training=self.training)
        hidden_states = residual + hidden_states

        cross_attn_weights = None
        if encoder_hidden_states is not None:
            residual = hidden_states
            hidden_states = self.encoder_attn_layer_norm(hidden_states)
            hidden_states, cross_attn_weights, cross_cache = self.encoder_attn(
                hidden_states,
                key_value_states=encoder_hidden_states,
                past_key_value=cross_cache,
                layer_head_mask=cross_attn_layer_head_mask,
                output_attentions=output_attentions,
            )
            hidden_states = F.dropout(hidden_states, p=self.dropout, training=self.training)
            hidden_states = residual + hidden_states
        cross_k, cross_v = (None, None) if cross_cache is None else cross_cache

        residual = hidden_states
        hidden_states = self.final_layer_norm(hidden_states)
        hidden_states = self.activation_fn(self.fc1(hidden_states))
        hidden_states = F.dropout(hidden_states, p=self.activation_dropout, training=self.training)
        hidden_states = self.fc2(hidden_states)
        hidden_states = F.dropout(hidden_states, p=self.dropout, training=self.training)
        hidden_states = residual + hidden_states
        return hidden_states, self_attn_weights, cross_attn_weights, (self_cache[0], self_cache[1], cross_k, cross_v)


# ======================================================================================================================
# Models
# ======================================================================================================================
class WhisperPreTrainedModel(PreTrainedModelMixin, nn.Module):
    """Weight initialisation, loading and saving, gradient checkpointing; shared by every Whisper model."""

    config_class = WhisperConfig
    main_input_name = "input_features"
    base_model_prefix = "model"
    head = "base"  # the name of this model's parameter set in weights.table

    def __init__(self, config: WhisperConfig):
        super().__init__()
        if not isinstance(config, WhisperConfig):
            raise TypeError(f"{type(self).__name__} expects a WhisperConfig, got {type(config).__name__}")
        self.config = config

    @property
    def attn_implementation(self) -> str:
        return arguments.attn_implementation(self.config)

    def set_attn_implementation(self, implementation: str) -> None:
        """Switch every attention between the fused kernel ("sdpa") and the explicit softmax ("eager")."""
        self.config._attn_implementation = arguments.check_attn_implementation(implementation)
        for module in self.modules():
            if isinstance(module, WhisperAttention):
                module.attn_implementation = implementation

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.init_std
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, WhisperEncoder):
            # Children are initialised first, so this replaces the random table with the fixed sinusoids.
            with torch.no_grad():
                module.embed_positions.weight.copy_(torch.from_numpy(sinusoids(*module.embed_positions.weight.shape)))
        elif isinstance(module, WhisperForAudioClassification) and module.layer_weights is not None:
            nn.init.constant_(module.layer_weights, 1.0 / module.layer_weights.shape[0])

    def post_init(self) -> None:
        with torch.no_grad():
            self.apply(self._init_weights)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the output projection with the token embedding where the model has both."""

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """Recompute each layer's activations in the backward pass instead of storing them.
        ``gradient_checkpointing_kwargs`` (Transformers' Trainer passes it) is accepted and not needed."""
        for module in self.modules():
            if isinstance(module, (WhisperEncoder, WhisperDecoder)):
                module.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        for module in self.modules():
            if isinstance(module, (WhisperEncoder, WhisperDecoder)):
                module.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(getattr(module, "gradient_checkpointing", False) for module in self.modules())

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self, only_trainable: bool = False) -> int:
        unique = {id(p): p for p in self.parameters() if p.requires_grad or not only_trainable}
        return sum(p.numel() for p in unique.values())

    def _run_layer(self, layer: nn.Module, *args: Any) -> Any:
        """Call a layer, through activation checkpointing when it is on and the model trains."""
        if getattr(self, "gradient_checkpointing", False) and self.training:
            return checkpoint(layer, *args, use_reentrant=False)
        return layer(*args)

    def _layer_dropped(self, layerdrop: float) -> bool:
        """LayerDrop: while training, skip a whole layer with probability ``layerdrop``."""
        return self.training and layerdrop > 0 and float(torch.rand([])) < layerdrop


class WhisperEncoder(WhisperPreTrainedModel):
    """Two convolutions over the log-mel frames, fixed sinusoidal positions, then ``encoder_layers`` blocks."""

    def __init__(self, config: WhisperConfig):
        super().__init__(config)
        self.dropout = config.dropout
        self.layerdrop = config.encoder_layerdrop
        self.num_mel_bins = config.num_mel_bins
        self.max_source_positions = config.max_source_positions
        embed_dim = config.d_model
        self.conv1 = nn.Conv1d(self.num_mel_bins, embed_dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(embed_dim, embed_dim, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(self.max_source_positions, embed_dim)
        self.embed_positions.requires_grad_(False)  # fixed sinusoids, never trained
        with torch.no_grad():
            self.embed_positions.weight.copy_(torch.from_numpy(sinusoids(self.max_source_positions, embed_dim)))
        self.layers = nn.ModuleList(
            [WhisperEncoderLayer(config, self.attn_implementation) for _ in range(config.encoder_layers)]
        )
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.gradient_checkpointing = False

    def _freeze_parameters(self) -> None:
        for param in self.parameters():
            param.requires_grad = False

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutput | tuple[Any, ...]:
        """``attention_mask`` is accepted for compatibility and unused: Whisper always sees a whole 30-second window."""
        resolved = arguments.encoder_call(
            self.config, input_features, head_mask, output_attentions, output_hidden_states, return_dict
        )
        input_features = input_features.to(self.conv1.weight.dtype)

        hidden_states = F.gelu(self.conv1(input_features))
        hidden_states = F.gelu(self.conv2(hidden_states))  # (batch, d_model, positions)
        hidden_states = hidden_states.transpose(1, 2)  # (batch, positions, d_model)
        hidden_states = hidden_states + self.embed_positions.weight
        hidden_states = F.dropout(hidden_states, p=self.dropout, training=self.training)

        all_hidden_states: tuple[torch.Tensor, ...] | None = () if resolved.output_hidden_states else None
        all_attentions: tuple[Any, ...] | None = () if resolved.output_attentions else None
        for index, layer in enumerate(self.layers):
            if all_hidden_states is not None:
                all_hidden_states += (hidden_states,)
            attn_weights = None
            if not self._layer_dropped(self.layerdrop):
                layer_head_mask = None if head_mask is None else head_mask[index]
                hidden_states, attn_weights = self._run_layer(
                    layer, hidden_states, layer_head_mask, resolved.output_attentions
                )
            if all_attentions is not None:
                all_attentions += (attn_weights,)
        hidden_states = self.layer_norm(hidden_states)
        if all_hidden_states is not None:
            all_hidden_states += (hidden_states,)

        output = BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, attentions=all_attentions
        )
        return output if resolved.return_dict else output.to_tuple()


class WhisperDecoder(WhisperPreTrainedModel):
    """Token and learned position embeddings, then ``decoder_layers`` blocks attending to the encoder output."""

    def __init__(self, config: WhisperConfig):
        super().__init__(config)
        self.dropout = config.dropout
        self.layerdrop = config.decoder_layerdrop
        self.padding_idx = config.pad_token_id
        self.max_target_positions = config.max_target_positions
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model, self.padding_idx)
        self.embed_positions = nn.Embedding(self.max_target_positions, config.d_model)
        self.layers = nn.ModuleList(
            [WhisperDecoderLayer(config, self.attn_implementation) for _ in range(config.decoder_layers)]
        )
        self.layer_norm = nn.LayerNorm(config.d_model)
        self.gradient_checkpointing = False

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def init_cache(self, batch_size: int, max_length: int | None = None) -> Cache:
        """A static cache: zeros for ``max_length`` self-attention positions, cross pairs filled at the first step.

        Decode with it by passing ``cache_position`` (the positions being written) at every step. Without gradients
        (under ``torch.no_grad``) the self-attention pairs are written in place: the returned cache holds the same
        tensors.
        """
        shape = arguments.static_cache_shape(self.config, batch_size, max_length)  # (batch, heads, time, head_dim)
        weight = self.embed_tokens.weight
        return tuple(
            (weight.new_zeros(shape), weight.new_zeros(shape), None, None)  # type: ignore[misc]
            for _ in self.layers
        )

    def _causal_mask(
        self,
        attention_mask: torch.Tensor | None,
        query_positions: torch.Tensor,
        key_length: int,
        batch_size: int,
        dtype: torch.dtype,
        static: bool,
    ) -> torch.Tensor:
        """Additive mask (batch or 1, 1, query_time, key_time): 0 where a query may look, the dtype's minimum else."""
        key_positions = torch.arange(key_length, device=query_positions.device)
        allowed = key_positions[None, :] <= query_positions[:, None]  # (query_time, key_time)
        allowed = allowed[None, None]  # (1, 1, query_time, key_time)
        if attention_mask is not None:
            arguments.check_decoder_attention_mask(attention_mask, batch_size, key_length, static)
            # A static cache is longer than the positions written so far: the rest is hidden by causality.
            padding = attention_mask.new_ones((batch_size, key_length - attention_mask.shape[-1]))
            keys_kept = torch.cat([attention_mask, padding], dim=-1).bool()
            allowed = allowed & keys_kept[:, None, None, :]  # (batch, 1, query_time, key_time)
        zero = torch.zeros((), dtype=dtype, device=query_positions.device)
        minimum = torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=query_positions.device)
        return torch.where(allowed, zero, minimum)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: torch.Tensor | None = None,
    ) -> BaseModelOutputWithPastAndCrossAttentions | tuple[Any, ...]:
        resolved = arguments.decoder_call(
            self.config, input_ids, inputs_embeds, head_mask, cross_attn_head_mask, past_key_values, cache_position,
            (use_cache, output_attentions, output_hidden_states, return_dict), _token_id_range,
            checkpointing=self.gradient_checkpointing and self.training,
        )  # fmt: skip
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        batch_size, length = inputs_embeds.shape[0], inputs_embeds.shape[1]

        if resolved.static:
            # Static cache: the keys span the whole preallocated length; the written positions are given.
            query_positions = cache_position
        else:
            query_positions = torch.arange(resolved.past_length, resolved.key_length, device=inputs_embeds.device)
        if position_ids is None:
            position_ids = query_positions[None, :]  # (1, time)

        hidden_states = inputs_embeds + self.embed_positions(position_ids).to(inputs_embeds.dtype)
        hidden_states = F.dropout(hidden_states, p=self.dropout, training=self.training)
        if length == 1 and attention_mask is None and cache_position is None:
            causal_mask = None  # one new token may look at every cached one
        else:
            causal_mask = self._causal_mask(
                attention_mask, query_positions, resolved.key_length, batch_size, hidden_states.dtype, resolved.static
            )

        all_hidden_states: tuple[torch.Tensor, ...] | None = () if resolved.output_hidden_states else None
        all_self_attentions: tuple[Any, ...] | None = () if resolved.output_attentions else None
        all_cross_attentions: tuple[Any, ...] | None = (
            () if resolved.output_attentions and encoder_hidden_states is not None else None
        )
        next_cache: list[LayerCache] = []
        for index, layer in enumerate(self.layers):
            if all_hidden_states is not None:
                all_hidden_states += (hidden_states,)
            past_key_value = None if past_key_values is None else past_key_values[index]
            if self._layer_dropped(self.layerdrop):
                next_cache.append(past_key_value)  # type: ignore[arg-type]
                continue
            hidden_states, self_attn_weights, cross_attn_weights, layer_cache = self._run_layer(
                layer,
                hidden_states,
                causal_mask,
                encoder_hidden_states,
                None if head_mask is None else head_mask[index],
                None if cross_attn_head_mask is None else cross_attn_head_mask[index],
                past_key_value,
                resolved.output_attentions,
                cache_position,
            )
            next_cache.append(layer_cache)
            if all_self_attentions is not None:
                all_self_attentions += (self_attn_weights,)
            if all_cross_attentions is not None:
                all_cross_attentions += (cross_attn_weights,)
        hidden_states = self.layer_norm(hidden_states)
        if all_hidden_states is not None:
            all_hidden_states += (hidden_states,)

        output = BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states,
            past_key_values=tuple(next_cache) if resolved.use_cache else None,
            hidden_states=all_hidden_states,
            attentions=all_self_attentions,
            cross_attentions=all_cross_attentions,
        )
        return output if resolved.return_dict else output.to_tuple()


class WhisperModel(WhisperPreTrainedModel):
    """Encoder and decoder, returning the decoder's last hidden state (no vocabulary projection)."""

    head = "base"

    def __init__(self, config: WhisperConfig):
        super().__init__(config)
        self.encoder = WhisperEncoder(config)
        self.decoder = WhisperDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.decoder.embed_tokens = value

    def get_encoder(self) -> WhisperEncoder:
        return self.encoder

    def get_decoder(self) -> WhisperDecoder:
        return self.decoder

    def freeze_encoder(self) -> None:
        """Stop training the encoder (e.g. to fine-tune only the decoder)."""
        self.encoder._freeze_parameters()

    def _mask_input_features(
        self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """SpecAugment: while training, zero random spans of frames and of mel bins."""
        if not self.config.apply_spec_augment or not self.training:
            return input_features
        batch_size, num_mel_bins, frames = input_features.shape
        # torch's generator seeds numpy, so torch.manual_seed reproduces the masks.
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ())))
        if self.config.mask_time_prob > 0:
            time_mask = compute_mask_indices(
                (batch_size, frames),
                self.config.mask_time_prob,
                self.config.mask_time_length,
                self.config.mask_time_min_masks,
                attention_mask=None if attention_mask is None else attention_mask.cpu().numpy(),
                rng=rng,
            )
            time_mask = torch.from_numpy(time_mask).to(input_features.device)[:, None, :]  # (batch, 1, frames)
            input_features = input_features.masked_fill(time_mask, 0.0)
        if self.config.mask_feature_prob > 0:
            feature_mask = compute_mask_indices(
                (batch_size, num_mel_bins),
                self.config.mask_feature_prob,
                self.config.mask_feature_length,
                self.config.mask_feature_min_masks,
                rng=rng,
            )
            feature_mask = torch.from_numpy(feature_mask).to(input_features.device)[:, :, None]  # (batch, mels, 1)
            input_features = input_features.masked_fill(feature_mask, 0.0)
        return input_features

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        decoder_head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple[torch.Tensor, ...] | None = None,
        past_key_values: Cache | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        decoder_position_ids: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: torch.Tensor | None = None,
    ) -> Seq2SeqModelOutput | tuple[Any, ...]:
        return_dict = arguments.config_flag(self.config, "use_return_dict", return_dict, True)
        if encoder_outputs is None:
            arguments.check_encoder_inputs(input_features, self.config)
            input_features = self._mask_input_features(input_features, attention_mask)
            encoder_outputs = self.encoder(
                input_features,
                head_mask=head_mask,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
            )
        else:
            encoder_outputs = arguments.as_encoder_output(encoder_outputs, BaseModelOutput)

        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask,
            past_key_values=past_key_values,
            inputs_embeds=decoder_inputs_embeds,
            position_ids=decoder_position_ids,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            cache_position=cache_position,
        )
        output = Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            past_key_values=decoder_outputs.past_key_values,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


class WhisperForConditionalGeneration(WhisperGenerationMixin, WhisperPreTrainedModel):
    """Speech to text: ``WhisperModel`` plus the vocabulary projection ``proj_out``, tied to the token embedding."""

    head = "conditional_generation"

    def __init__(self, config: WhisperConfig):
        super().__init__(config)
        self.model = WhisperModel(config)
        self.proj_out = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.max_target_positions = config.max_target_positions
        self.post_init()

    def tie_weights(self) -> None:
        if getattr(self.config, "tie_word_embeddings", True):
            self.proj_out.weight = self.model.decoder.embed_tokens.weight

    def get_encoder(self) -> WhisperEncoder:
        return self.model.encoder

    def get_decoder(self) -> WhisperDecoder:
        return self.model.decoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.decoder.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.proj_out

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.proj_out = value

    def freeze_encoder(self) -> None:
        """Stop training the encoder (e.g. to fine-tune only the decoder)."""
        self.model.encoder._freeze_parameters()

    def init_cache(self, batch_size: int, max_length: int | None = None) -> Cache:
        """A static cache for compiled decoding; see ``WhisperDecoder.init_cache``."""
        return self.model.decoder.init_cache(batch_size, max_length)

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        decoder_head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple[torch.Tensor, ...] | None = None,
        past_key_values: Cache | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        decoder_position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: torch.Tensor | None = None,
    ) -> Seq2SeqLMOutput | tuple[Any, ...]:
        """``labels`` (batch, time): next-token targets, -100 where no loss is wanted; the decoder inputs are the
        labels shifted right behind ``decoder_start_token_id`` unless given."""
        return_dict = arguments.config_flag(self.config, "use_return_dict", return_dict, True)
        if labels is not None:
            arguments.check_labels(labels, self.config)
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = _shift_tokens_right(
                    labels, self.config.pad_token_id, self.config.decoder_start_token_id
                )

        outputs = self.model(
            input_features,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            head_mask=head_mask,
            decoder_head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask,
            encoder_outputs=encoder_outputs,
            past_key_values=past_key_values,
            decoder_inputs_embeds=decoder_inputs_embeds,
            decoder_position_ids=decoder_position_ids,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            cache_position=cache_position,
        )
        logits = self.proj_out(outputs.last_hidden_state)

        loss = None
        if labels is not None:
            # Mean over the positions whose label is not -100.
            flat_logits = _at_least_float32(logits).reshape(-1, logits.shape[-1])  # (batch * time, vocab)
            loss = _cross_entropy(flat_logits, labels.reshape(-1), ignore_index=-100)  # labels: (batch * time,)

        output = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )
        return output if return_dict else output.to_tuple()


class WhisperForAudioClassification(WhisperPreTrainedModel):
    """Encoder, then a projection, a mean over time and a linear classifier (e.g. language identification)."""

    head = "audio_classification"

    def __init__(self, config: WhisperConfig):
        super().__init__(config)
        self.encoder = WhisperEncoder(config)
        num_layers = config.num_hidden_layers + 1  # the embeddings and every layer's output
        self.layer_weights = (
            nn.Parameter(torch.ones(num_layers) / num_layers) if config.use_weighted_layer_sum else None
        )
        self.projector = nn.Linear(config.d_model, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)
        self.post_init()

    def get_encoder(self) -> WhisperEncoder:
        return self.encoder

    def freeze_encoder(self) -> None:
        """Stop training the encoder (train only the projector and the classifier)."""
        self.encoder._freeze_parameters()

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple[torch.Tensor, ...] | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple[Any, ...]:
        return_dict = arguments.config_flag(self.config, "use_return_dict", return_dict, True)
        output_hidden_states = arguments.classifier_hidden_states(self.config, output_hidden_states)
        if encoder_outputs is None:
            arguments.check_encoder_inputs(input_features)
            encoder_outputs = self.encoder(
                input_features,
                head_mask=head_mask,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
            )
        else:
            encoder_outputs = arguments.as_encoder_output(encoder_outputs, BaseModelOutput)

        if self.layer_weights is not None:
            hidden_states = torch.stack(encoder_outputs.hidden_states, dim=1)  # (batch, layers, positions, d_model)
            norm_weights = torch.softmax(self.layer_weights, dim=-1)
            norm_weights = norm_weights.reshape(-1, 1, 1)  # (layers, 1, 1)
            hidden_states = (hidden_states * norm_weights).sum(dim=1)  # (batch, positions, d_model)
        else:
            hidden_states = encoder_outputs.last_hidden_state
        hidden_states = self.projector(hidden_states)
        pooled_output = hidden_states.mean(dim=1)
        logits = self.classifier(pooled_output)

        loss = None
        if labels is not None:
            flat_logits = _at_least_float32(logits).reshape(-1, self.config.num_labels)  # (batch, num_labels)
            loss = _cross_entropy(flat_logits, labels.reshape(-1))  # labels: (batch,)

        output = SequenceClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "WhisperAttention",
    "WhisperDecoder",
    "WhisperDecoderLayer",
    "WhisperEncoder",
    "WhisperEncoderLayer",
    "WhisperForAudioClassification",
    "WhisperForConditionalGeneration",
    "WhisperModel",
    "WhisperPreTrainedModel",
]
