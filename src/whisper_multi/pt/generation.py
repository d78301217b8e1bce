"""``generate`` and ``detect_language`` for the PyTorch model: the ArrayOps adapter and the decoding seam for torch.

The decoding logic is the core's (``whisper_multi.decoding``); this file supplies tensor work only. The loop runs in
Python over the preallocated static cache (``cache_position``). The prefill runs the model's decoder; each later
one-token step runs ``decode_step.PackedDecoder`` (the same arithmetic over weights packed for fast one-row products).
``compiled=True`` runs every step through the model's decoder under ``torch.compile`` instead (compiled once per
shape; on CPU it is slower than the packed eager step, as ``benchmarks/bench_generation.py`` measures, so the
default ``compiled=None`` means eager here: ``backends.backend("pt").compiled_by_default``).

Sampling is seeded by ``seed`` (an int) or ``generator`` (a ``torch.Generator``, from which one seed is drawn);
without either, the seed is drawn from torch's global generator, so ``torch.manual_seed`` reproduces a run. The
noise of each step depends only on that seed and the step, so eager and compiled runs draw the same tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import torch

from whisper_multi.decoding.mixin import GenerationMixinCore, samples
from whisper_multi.pt.decode_step import PackedDecoder, apply_linear, contiguous_cross_pairs

_DTYPES = {"int32": torch.int32, "float32": torch.float32, "bool": torch.bool}
_TINY = float(np.finfo(np.float32).tiny)


class TorchOps:
    """``ArrayOps`` for torch tensors on one device."""

    def __init__(self, device: torch.device):
        self.device = device

    def asarray(self, value: Any, dtype: str) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            return value.to(_DTYPES[dtype])
        return torch.as_tensor(np.asarray(value, dtype=dtype), device=self.device)

    def arange(self, n: int) -> torch.Tensor:
        return torch.arange(n, dtype=torch.int32, device=self.device)

    def where(self, condition: Any, x: Any, y: Any) -> torch.Tensor:
        return torch.where(condition, x, y)

    def max(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.amax(x, dim=axis)

    def logsumexp(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.logsumexp(x, dim=axis)

    def log_softmax(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.log_softmax(x, dim=axis)

    def take_column(self, x: torch.Tensor, index: Any) -> torch.Tensor:
        return x[:, index]

    def expand_last(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., None]

    def cast(self, x: torch.Tensor, dtype: str) -> torch.Tensor:
        return x.to(_DTYPES[dtype])

    def full(self, shape: tuple[int, ...], value: Any, dtype: str) -> torch.Tensor:
        return torch.full(shape, value, dtype=_DTYPES[dtype], device=self.device)

    def reshape(self, x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        return x.reshape(shape)

    def concat(self, xs: list[torch.Tensor], axis: int) -> torch.Tensor:
        return torch.cat(xs, dim=axis)

    def exp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)

    def log(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)

    def sum(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.sum(x, dim=axis, dtype=x.dtype if x.is_floating_point() else torch.int32)

    def cumsum(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.cumsum(x, dim=axis, dtype=torch.int32)

    def argmax(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.argmax(x, dim=axis).to(torch.int32)

    def top_k(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = torch.topk(x, k, dim=-1)
        return values, indices.to(torch.int32)

    def take_rows(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return x.index_select(0, indices.long())

    def take_along_last(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return torch.gather(x, -1, indices.long())

    def any(self, x: torch.Tensor) -> torch.Tensor:
        return torch.any(x)

    def all(self, x: torch.Tensor) -> torch.Tensor:
        return torch.all(x)


class TorchSeam:
    """The decoding seam over a ``WhisperForConditionalGeneration``; ``compiled`` runs its step via torch.compile."""

    def __init__(self, model: Any, compiled: bool = False):
        self.model = model
        self.ops = TorchOps(model.device)
        self.compiled = compiled
        self._decoder_step = torch.compile(self._decode, dynamic=False) if compiled else self._decode
        self._projection: torch.Tensor | None = None
        self._projection_source: tuple[int, int] | None = None
        self._packed: PackedDecoder | None = None

    def init_cache(self, batch_size: int, max_length: int) -> Any:
        if not self.compiled and self.model.device.type == "cpu":
            # Once per search: repack only if the weights changed since the last one. The packing works around CPU
            # kernels (see decode_step); elsewhere the model's decoder runs every step and no copy is kept.
            self._packed = PackedDecoder.current(self.model, self._packed)
        return self.model.init_cache(batch_size, max_length)

    def _run_decoder(self, tokens: torch.Tensor, cache: Any, encoder_states: torch.Tensor, positions: torch.Tensor):
        return self.model.model.decoder(
            input_ids=tokens,
            encoder_hidden_states=encoder_states,
            past_key_values=cache,
            cache_position=positions.long(),
            use_cache=True,
            return_dict=True,
        )

    def _decode(
        self,
        tokens: torch.Tensor,
        cache: Any,
        encoder_states: torch.Tensor,
        positions: torch.Tensor,
        projection: torch.Tensor,
        keep: tuple[int, ...] | None,
    ):
        outputs = self._run_decoder(tokens, cache, encoder_states, positions)
        hidden = _kept(outputs.last_hidden_state, keep)
        return torch.matmul(hidden, projection).float(), outputs.past_key_values

    def decode(
        self, tokens: Any, cache: Any, encoder_states: Any, positions: Any, keep: tuple[int, ...] | None = None
    ) -> tuple[Any, Any]:
        if self.compiled or self._packed is None or self.model.training:
            return self._decoder_step(tokens, cache, encoder_states, positions, self.projection(), keep)
        if tokens.shape[1] == 1 and cache[0][2] is not None:
            logits, cache = self._packed.step(tokens, cache, int(positions[0]))
            return _kept(logits.float(), keep), cache
        return self._prefill(tokens, cache, encoder_states, positions, self._packed, keep)

    def _prefill(
        self,
        tokens: torch.Tensor,
        cache: Any,
        encoder_states: torch.Tensor,
        positions: torch.Tensor,
        packed: PackedDecoder,
        keep: tuple[int, ...] | None,
    ) -> tuple[torch.Tensor, Any]:
        """The model's decoder over the whole prefix; the audio keys and values made contiguous for the steps."""
        outputs = self._run_decoder(tokens, cache, encoder_states, positions)
        hidden = _kept(outputs.last_hidden_state, keep)  # (rows, time, d_model)
        logits = apply_linear(hidden.reshape(-1, hidden.shape[-1]), packed.proj_out).float()
        return logits.reshape(*hidden.shape[:2], -1), contiguous_cross_pairs(outputs.past_key_values)

    def projection(self) -> torch.Tensor:
        """``proj_out.weight`` transposed to (d_model, vocab), contiguous, kept while the weight is unchanged.

        A one-token step multiplies one row by the whole vocabulary matrix: memory-bound, and on CPU the kernels
        stream the (d_model, vocab) layout faster than the (vocab, d_model) one (benchmarks/results.md).
        """
        weight = self.model.proj_out.weight
        source = (weight.data_ptr(), weight._version)
        if self._projection is None or self._projection_source != source:
            self._projection = weight.detach().t().contiguous()
            self._projection_source = source
        return self._projection

    def reorder_cache(self, cache: Any, indices: torch.Tensor) -> Any:
        # Beams never move between audios, so the cross-attention pairs stay as they are.
        rows = indices.long()
        return tuple((k.index_select(0, rows), v.index_select(0, rows), ck, cv) for k, v, ck, cv in cache)

    def while_loop(self, cond: Callable[[Any], Any], body: Callable[[Any], Any], state: Any) -> Any:
        while bool(cond(state)):
            state = body(state)
        return state

    def uniform(self, rng: Any, step: Any, shape: tuple[int, ...]) -> torch.Tensor:
        generator = torch.Generator().manual_seed(int(rng) * 1_000_003 + int(step))
        noise = torch.rand(shape, generator=generator, dtype=torch.float32)
        return noise.clamp_min(_TINY).to(self.ops.device)


def _kept(x: torch.Tensor, keep: tuple[int, ...] | None) -> torch.Tensor:
    """``x`` (rows, time, ...) at the time indices ``keep`` (all when None)."""
    return x if keep is None else x[:, list(keep)]


class TorchBackend:
    """What the core's ``generate`` needs from PyTorch."""

    def __init__(self, model: Any, compiled: bool = False):
        self.model = model
        self.seam = TorchSeam(model, compiled)

    def encode(self, input_features: Any) -> torch.Tensor:
        features = torch.as_tensor(input_features).to(device=self.model.device, dtype=self.model.dtype)
        return self.model.model.encoder(features, return_dict=True).last_hidden_state

    def compile(self, function: Callable[..., Any], key: Hashable) -> Callable[..., Any]:
        return function  # the loop stays in Python; the step is compiled by the seam

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)

    def to_tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.model.device)

    def to_output_tokens(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(array, dtype=np.int64)).to(self.model.device)

    def alignment(self, tokens: np.ndarray, encoder_states: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], Any]:
        """(every layer's cross-attention weights, float32 logits) of one forward pass over ``tokens``."""
        outputs = self.model(
            encoder_outputs=(encoder_states,),
            decoder_input_ids=torch.as_tensor(tokens, device=self.model.device),
            output_attentions=True,
            return_dict=True,
        )
        return outputs.cross_attentions, outputs.logits.float()


def _seed(seed: int | None, generator: torch.Generator | None) -> int:
    if seed is not None:
        return int(seed)
    return int(torch.randint(0, 2**31 - 1, (), generator=generator))


class WhisperGenerationMixin(GenerationMixinCore):
    """``generate`` and ``detect_language`` for ``WhisperForConditionalGeneration``."""

    decoding_backend = TorchBackend

    def _inference(self) -> contextlib.AbstractContextManager[Any]:
        return torch.no_grad()

    def generate(
        self,
        input_features: torch.Tensor,
        generation_config: Any = None,
        *,
        return_dict_in_generate: bool = False,
        output_scores: bool = False,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        compiled: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Transcribe or translate one 30-second window of audio per item, with Transformers' arguments: ``language``
        ("english", "en" or "<|en|>"; one per item or one for all; detected when left out on a multilingual model),
        ``task``, ``is_multilingual``, ``return_timestamps``, ``prompt_ids``, ``forced_decoder_ids``,
        ``max_new_tokens`` / ``max_length``, ``num_beams``, ``length_penalty``, ``do_sample`` / ``temperature``.

        ``compiled``: True runs each decoding step under ``torch.compile``, False the eager packed step; None (the
        default) takes the backend's ``compiled_by_default`` (``whisper_multi.backends``), False for PyTorch.

        Returns the generated tokens (batch, length) without the prefix and the final ``<|endoftext|>``, or with
        ``return_dict_in_generate=True`` a ``WhisperGenerateOutput`` (sequences with the prefix, no-speech
        probabilities, detected languages, and the scores with ``output_scores=True``).
        """
        rng = _seed(seed, generator) if samples(kwargs) else 0
        return self._generate(
            input_features, rng, compiled, generation_config, return_dict_in_generate, output_scores, kwargs
        )
