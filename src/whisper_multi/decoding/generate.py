"""``generate`` and ``detect_language``, written once; each backend's mixin calls these with its ``GenerationBackend``.

The backend supplies the seam of ``search.py`` plus four helpers: ``encode`` (the encoder), ``compile`` (its way of
compiling a core function once per shape: ``torch.compile`` of the decoder step, ``tf.function(jit_compile=True)``
or ``jax.jit`` of the whole search, or the function itself when eager), and the conversions between its tensors and
numpy. Short-form output follows Transformers 4.57: a tensor of the generated tokens without the prefix and without
the final ``<|endoftext|>``, padded with ``pad_token_id``; with ``return_dict_in_generate=True`` a
``WhisperGenerateOutput`` whose ``sequences`` start with the decoder prefix and end with ``<|endoftext|>``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any, Protocol, TypeVar

import numpy as np

from whisper_multi.configuration import WhisperConfig, WhisperGenerationConfig
from whisper_multi.decoding.language import language_logprobs, most_likely
from whisper_multi.decoding.options import DecodingPlan, resolve_request
from whisper_multi.decoding.outputs import LanguageDetectionOutput, WhisperGenerateOutput
from whisper_multi.decoding.search import DecoderSeam, SearchResult, finish, run_search
from whisper_multi.errors import InputError
from whisper_multi.text.special_tokens import special_tokens_for_vocab


class GenerationBackend(Protocol):
    seam: DecoderSeam

    def encode(self, input_features: Any) -> Any:
        """Encoder states (batch, positions, d_model) of log-mel ``input_features`` (batch, n_mels, frames)."""

    def compile(self, function: Callable[..., Any], key: Hashable) -> Callable[..., Any]:
        """``function`` of tensors, compiled once for ``key`` (and per input shape); itself when eager."""

    def to_numpy(self, x: Any) -> np.ndarray: ...

    def to_tensor(self, array: np.ndarray) -> Any: ...

    def to_output_tokens(self, array: np.ndarray) -> Any:
        """Token ids as the framework's generate returns them (int64 in PyTorch, int32 elsewhere)."""


def generation_config_of(model: Any) -> WhisperGenerationConfig:
    """The model's ``generation_config``, made from its config the first time (Transformers' attribute name)."""
    config = getattr(model, "generation_config", None)
    if config is None:
        config = WhisperGenerationConfig.from_model_config(model.config)
        model.generation_config = config
    return config


def _batch_size(input_features: Any, config: WhisperConfig) -> int:
    shape = tuple(input_features.shape)
    if len(shape) != 3 or shape[1] != config.num_mel_bins:
        raise InputError(
            f"input_features has shape {shape}, expected (batch, {config.num_mel_bins}, frames) log-mel features"
        )
    return int(shape[0])


def detect_language(
    backend: GenerationBackend, config: WhisperConfig, input_features: Any = None, encoder_states: Any = None
) -> LanguageDetectionOutput:
    """The most likely language of each item and the probabilities of all languages."""
    special = special_tokens_for_vocab(config.vocab_size)
    if not special.is_multilingual:
        raise InputError(
            f"language detection needs a multilingual model; vocab_size {config.vocab_size} is English-only"
        )
    if encoder_states is None:
        _batch_size(input_features, config)
        encoder_states = backend.encode(input_features)

    def detect(states: Any) -> Any:
        return language_logprobs(backend.seam, special, states)

    logprobs = backend.to_numpy(backend.compile(detect, ("language", config.vocab_size))(encoder_states))
    probabilities = np.exp(logprobs.astype(np.float64)).astype(np.float32)
    codes, ids = most_likely(special, probabilities)
    return LanguageDetectionOutput(
        language_ids=backend.to_output_tokens(ids),
        languages=codes,
        language_probs=probabilities,
        language_codes=special.languages,
    )


def generate(
    backend: GenerationBackend,
    model: Any,
    input_features: Any,
    rng: Any = None,
    return_dict_in_generate: bool = False,
    output_scores: bool = False,
    generation_config: WhisperGenerationConfig | None = None,
    **kwargs: Any,
) -> Any:
    """Short-form generation (up to 30 s of audio per item) with Transformers' arguments; see the module doc."""
    config: WhisperConfig = model.config
    generation_config = generation_config or generation_config_of(model)
    unknown = set(kwargs) - _ARGUMENTS
    if unknown:
        raise InputError(f"generate() got unexpected arguments: {', '.join(sorted(unknown))}")
    if kwargs.get("num_return_sequences") not in (None, 1):
        raise InputError(f"num_return_sequences={kwargs['num_return_sequences']}: one sequence per item is returned")
    kwargs = {name: value for name, value in kwargs.items() if name not in _IGNORED}
    encoder_outputs = kwargs.pop("encoder_outputs", None)
    batch = _batch_size(input_features, config)
    request = resolve_request(
        generation_config,
        config.vocab_size,
        config.max_target_positions,
        batch,
        output_scores=output_scores and return_dict_in_generate,
        **kwargs,
    )
    # Given encoder outputs (the backend's ``encode_audio`` of these features) spare a second encoder pass.
    encoder_states = backend.encode(input_features) if encoder_outputs is None else _last_hidden_state(encoder_outputs)
    detected = None
    languages = language_probs = None
    if request.needs_language_detection:
        detection = detect_language(backend, config, encoder_states=encoder_states)
        languages, language_probs = detection.languages, detection.language_probs
        detected = [request.special.sot + 1 + request.special.languages.index(code) for code in languages or []]
    prefix = request.prefix(detected)
    plan = request.plan()

    def search(prefix_tokens: Any, states: Any, key: Any) -> dict[str, Any]:
        return run_search(backend.seam, plan, prefix_tokens, states, key)

    outputs = backend.compile(search, ("search", plan))(backend.to_tensor(prefix), encoder_states, rng)
    result = finish(plan, {name: backend.to_numpy(value) for name, value in outputs.items()})
    if not return_dict_in_generate:
        return backend.to_output_tokens(_generated_only(result, plan))
    return WhisperGenerateOutput(
        sequences=backend.to_output_tokens(_pad(result.sequences, plan.pad)),
        scores=None if result.scores is None else tuple(backend.to_tensor(step) for step in result.scores),
        sequences_scores=None if result.sequences_scores is None else backend.to_tensor(result.sequences_scores),
        avg_logprobs=_avg_logprobs(result, plan),
        no_speech_probs=result.no_speech_probs.astype(np.float32),
        languages=languages,
        language_probs=language_probs,
    )


# Transformers' generate arguments that short-form decoding takes (the rest of its long-form options are refused).
_ARGUMENTS = {
    "language", "task", "is_multilingual", "return_timestamps", "prompt_ids", "prompt_condition_type",
    "forced_decoder_ids", "max_new_tokens", "max_length", "num_beams", "do_sample", "temperature",
    "length_penalty", "suppress_tokens", "begin_suppress_tokens", "max_initial_timestamp_index", "attention_mask",
    "use_cache", "num_return_sequences", "encoder_outputs", "labels", "synced_gpus",
}  # fmt: skip
# Seq2SeqTrainer's predict_with_generate passes the batch's labels and synced_gpus: generation needs neither.
_IGNORED = {"attention_mask", "use_cache", "num_return_sequences", "labels", "synced_gpus"}


def _last_hidden_state(encoder_outputs: Any) -> Any:
    """The encoder states of ``encoder_outputs``: a model output, a tuple whose first item they are, or the states."""
    if hasattr(encoder_outputs, "last_hidden_state"):
        return encoder_outputs.last_hidden_state
    return encoder_outputs[0] if isinstance(encoder_outputs, (tuple, list)) else encoder_outputs


def _generated_only(result: SearchResult, plan: DecodingPlan) -> np.ndarray:
    rows = []
    for sequence in result.sequences:
        generated = sequence[plan.prefix_length :]
        if len(generated) and generated[-1] == plan.eot:
            generated = generated[:-1]
        rows.append(generated)
    return _pad(rows, plan.pad)


def _pad(rows: list[np.ndarray], pad: int) -> np.ndarray:
    width = max((len(row) for row in rows), default=0)
    out = np.full((len(rows), width), pad, dtype=np.int64)
    for index, row in enumerate(rows):
        out[index, : len(row)] = row
    return out


def _avg_logprobs(result: SearchResult, plan: DecodingPlan) -> np.ndarray:
    ended = [len(row) > plan.prefix_length and row[-1] == plan.eot for row in result.sequences]
    lengths = np.asarray(
        [len(row) - plan.prefix_length - int(end) for row, end in zip(result.sequences, ended)], dtype=np.float32
    )
    return (result.sum_logprobs / (lengths + 1)).astype(np.float32)


BackendT = TypeVar("BackendT")
_BACKENDS: weakref.WeakKeyDictionary[Any, dict[tuple[Any, bool], Any]] = weakref.WeakKeyDictionary()


def cached_backend(model: Any, compiled: bool, factory: Callable[[Any, bool], BackendT]) -> BackendT:
    """The backend object of ``model`` for one path (eager or compiled), made once and kept while the model lives,
    so compiled functions are reused across ``generate`` calls."""
    backends = _BACKENDS.setdefault(model, {})
    key = (factory, compiled)
    if key not in backends:
        backends[key] = factory(model, compiled)
    return backends[key]
