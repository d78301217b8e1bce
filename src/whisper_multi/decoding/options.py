"""Turn ``generate``'s arguments into what decoding needs: the forced prefix and a fixed ``DecodingPlan``.

The arguments are Transformers' (``language``, ``task``, ``is_multilingual``, ``return_timestamps``, ``prompt_ids``,
``forced_decoder_ids``, ``max_new_tokens`` / ``max_length``, ``num_beams``, ``do_sample`` / ``temperature``, ...),
read against a ``WhisperGenerationConfig``. The prefix is openai-whisper's sequence, built by ``decoder_prefix`` (for
``generate`` and for long-form transcription alike): an optional prompt (``<|startofprev|>`` and its tokens),
``<|startoftranscript|>``, the language and task tokens of a multilingual model, and ``<|notimestamps|>`` unless
timestamps are asked for. A language left open on a multilingual model is detected per item before decoding
(``needs_language_detection``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from whisper_multi.configuration import WhisperGenerationConfig
from whisper_multi.decoding.rules import LogitRules
from whisper_multi.errors import InputError
from whisper_multi.text.special_tokens import (
    SpecialTokens,
    normalize_language,
    resolve_language_and_task,
    special_tokens_for_vocab,
)


@dataclass(frozen=True)
class DecodingPlan:
    """Everything fixed for one decoding run; hashable, so a compiled search is reused while it stays the same.

    ``max_length`` is the length of the token buffer (prefix plus the most tokens to generate); ``sot_index`` is
    where ``<|startoftranscript|>`` sits in the prefix (after a prompt), the position whose next-token distribution
    gives the no-speech probability. ``temperature`` > 0 samples; otherwise the search is greedy (one beam) or a beam
    search. ``length_penalty``: None ranks finished beams by log-probability per token, a number ``a`` by
    log-probability / ((5 + length) / 6) ** a (openai-whisper's ranking; faster-whisper's default is the former).
    """

    rules: LogitRules
    prefix_length: int
    max_length: int
    sot_index: int
    eot: int
    pad: int
    no_speech: int
    num_beams: int = 1
    temperature: float = 0.0
    length_penalty: float | None = None
    output_scores: bool = False

    @property
    def sampling(self) -> bool:
        return self.temperature > 0.0

    @property
    def max_new_tokens(self) -> int:
        return self.max_length - self.prefix_length


@dataclass(frozen=True)
class GenerationRequest:
    """The resolved arguments of one ``generate`` call, before languages are detected."""

    special: SpecialTokens
    batch_size: int
    languages: tuple[int | None, ...]  # a language token per item; None: detect it (multilingual models only)
    task: int | None  # the task token, or None for an English-only model
    timestamps: bool
    prompt: tuple[int, ...]  # <|startofprev|> and the prompt tokens, or empty
    max_new_tokens: int
    num_beams: int
    temperature: float
    length_penalty: float | None
    output_scores: bool
    suppress_tokens: tuple[int, ...]
    begin_suppress_tokens: tuple[int, ...]
    max_initial_timestamp_index: int | None
    pad: int

    @property
    def needs_language_detection(self) -> bool:
        return any(token is None for token in self.languages)

    @property
    def prefix_length(self) -> int:
        # Every row has the same length: a language still to detect takes the place of any language token.
        placeholder = self.special.sot + 1
        return len(decoder_prefix(self.special, placeholder, self.task, timestamps=self.timestamps, prompt=self.prompt))

    def prefix(self, detected: Sequence[int] | None = None) -> np.ndarray:
        """The forced prefix (batch, prefix_length) int32; ``detected`` fills the languages left open."""
        rows = [
            decoder_prefix(
                self.special, self._language(index, detected), self.task, timestamps=self.timestamps, prompt=self.prompt
            )
            for index in range(len(self.languages))
        ]
        return np.asarray(rows, dtype=np.int32)

    def _language(self, index: int, detected: Sequence[int] | None) -> int:
        language = self.languages[index]
        if language is not None:
            return language
        if detected is None:
            raise InputError(f"item {index} has no language: detect it first (detect_language)")
        return int(detected[index])

    def plan(self) -> DecodingPlan:
        prefix_length = self.prefix_length
        rules = LogitRules(
            vocab_size=self.special.vocab_size,
            sample_begin=prefix_length,
            eot=self.special.eot,
            suppress_tokens=self.suppress_tokens,
            begin_suppress_tokens=self.begin_suppress_tokens,
            timestamp_begin=self.special.timestamp_begin if self.timestamps else None,
            no_timestamps=self.special.no_timestamps,
            max_initial_timestamp_index=self.max_initial_timestamp_index if self.timestamps else None,
        )
        return DecodingPlan(
            rules=rules,
            prefix_length=prefix_length,
            max_length=prefix_length + self.max_new_tokens,
            sot_index=len(self.prompt),
            eot=self.special.eot,
            pad=self.pad,
            no_speech=self.special.no_speech,
            num_beams=self.num_beams,
            temperature=self.temperature,
            length_penalty=self.length_penalty,
            output_scores=self.output_scores,
        )


def decoder_prefix(
    special: SpecialTokens,
    language: int | None = None,
    task: int | None = None,
    *,
    timestamps: bool = True,
    prompt: Sequence[int] = (),
) -> list[int]:
    """The forced decoder prefix, openai-whisper's sequence: ``prompt`` (``<|startofprev|>`` and its tokens, see
    ``prompt_tokens``; empty for none), ``<|startoftranscript|>``, the ``language`` and ``task`` tokens of a
    multilingual request (``task`` None: an English-only one, which has neither), then ``<|notimestamps|>`` unless
    ``timestamps``. The one place that spells the prefix: ``generate`` and ``transcribe`` both build theirs here."""
    prefix = [*prompt, special.sot]
    if task is not None:
        if language is None:
            raise InputError("a multilingual prefix needs its language token: detect the language first")
        prefix += [language, task]
    if not timestamps:
        prefix.append(special.no_timestamps)
    return prefix


def prompt_tokens(special: SpecialTokens, tokens: Sequence[int]) -> tuple[int, ...]:
    """The prompt part of a prefix: ``<|startofprev|>`` then ``tokens``, unless they start with it already (as
    ``tokenizer.get_prompt_ids`` makes them)."""
    if tokens and tokens[0] == special.sot_prev:
        return tuple(tokens)
    return (special.sot_prev, *tokens)


def _token_list(value: Any) -> list[int]:
    """Token ids from a list, numpy array or framework tensor (1-D, or 2-D with one row)."""
    array = np.asarray(value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else value)
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1:
        raise InputError(f"prompt_ids must be one sequence of token ids, got shape {array.shape}")
    return [int(token) for token in array]


def _language_token(language: str, special: SpecialTokens, generation_config: WhisperGenerationConfig) -> int:
    code = normalize_language(language)
    name = f"<|{code}|>"
    lang_to_id = getattr(generation_config, "lang_to_id", None) or {}
    if lang_to_id and name not in lang_to_id:
        raise InputError(f"language {language!r} ({name}) is not in this model's generation_config.lang_to_id")
    return int(lang_to_id.get(name, special.language_token(code)))


def _from_forced_decoder_ids(
    forced_decoder_ids: Sequence[Sequence[Any]], special: SpecialTokens
) -> tuple[str | None, str | None, bool | None]:
    """(language token text, task, no-timestamps) read from old-style ``forced_decoder_ids``; a language forced as
    None is left open (detected)."""
    language = task = None
    no_timestamps: bool | None = None
    by_id = {token: name for name, token in special.lang_to_id.items()}
    for position, (index, token) in enumerate(sorted((int(i), t) for i, t in forced_decoder_ids)):
        if index != position + 1:
            raise InputError(f"forced_decoder_ids must force positions 1, 2, ... in order, got {forced_decoder_ids}")
        if token is None:
            continue
        if int(token) in by_id:
            language = by_id[int(token)]
        elif int(token) == special.transcribe:
            task = "transcribe"
        elif int(token) == special.translate:
            task = "translate"
        elif int(token) == special.no_timestamps:
            no_timestamps = True
        else:
            raise InputError(
                f"forced_decoder_ids forces token {token}, which is not a language, task or timestamp flag"
            )
    return language, task, no_timestamps


def resolve_request(
    generation_config: WhisperGenerationConfig,
    vocab_size: int,
    max_target_positions: int,
    batch_size: int,
    *,
    language: str | Sequence[str | None] | None = None,
    task: str | None = None,
    is_multilingual: bool | None = None,
    return_timestamps: bool | None = None,
    prompt_ids: Any = None,
    prompt_condition_type: str | None = None,
    forced_decoder_ids: Sequence[Sequence[Any]] | None = None,
    max_new_tokens: int | None = None,
    max_length: int | None = None,
    num_beams: int | None = None,
    do_sample: bool | None = None,
    temperature: float | None = None,
    length_penalty: float | None = None,
    output_scores: bool = False,
    suppress_tokens: Sequence[int] | None = None,
    begin_suppress_tokens: Sequence[int] | None = None,
    max_initial_timestamp_index: int | None = None,
) -> GenerationRequest:
    """Check and resolve ``generate``'s arguments (Transformers' names and precedence) into a request."""
    special = special_tokens_for_vocab(vocab_size)
    config = generation_config
    multilingual = _multilingual(config, special, is_multilingual)
    if prompt_condition_type not in (None, "first-segment", "all-segments"):
        raise InputError(f"prompt_condition_type {prompt_condition_type!r}; expected 'first-segment' or 'all-segments'")
    language, task, timestamps = _language_task_and_timestamps(
        config, special, language, task, return_timestamps, forced_decoder_ids
    )
    languages = _resolve_languages(language, batch_size, multilingual, special, config)
    _, task_name = resolve_language_and_task(None, task, special, multilingual)
    prompt = () if prompt_ids is None else prompt_tokens(special, _token_list(prompt_ids))
    sampling = _temperature(do_sample, temperature)
    request = GenerationRequest(
        special=special,
        batch_size=batch_size,
        languages=languages,
        task=special.task_to_id[task_name] if multilingual else None,
        timestamps=timestamps,
        prompt=prompt,
        max_new_tokens=0,
        num_beams=_beams(num_beams, sampling),
        temperature=sampling,
        length_penalty=length_penalty,
        output_scores=output_scores,
        suppress_tokens=_tokens(suppress_tokens, config.suppress_tokens),
        begin_suppress_tokens=_tokens(begin_suppress_tokens, config.begin_suppress_tokens),
        max_initial_timestamp_index=_given_or(max_initial_timestamp_index, config, "max_initial_timestamp_index"),
        pad=int(config.pad_token_id if config.pad_token_id is not None else special.eot),
    )
    budget = _new_token_budget(request.prefix_length, max_new_tokens, max_length, config, max_target_positions)
    return replace(request, max_new_tokens=budget)


def _multilingual(config: WhisperGenerationConfig, special: SpecialTokens, is_multilingual: bool | None) -> bool:
    """Whether the prefix has language and task tokens: ``is_multilingual``, else the config's, else the vocabulary's."""
    multilingual = bool(getattr(config, "is_multilingual", special.is_multilingual))
    if is_multilingual is not None:
        multilingual = is_multilingual
    if multilingual and not special.is_multilingual:
        raise InputError(f"is_multilingual=True, but the vocabulary of {special.vocab_size} tokens is English-only")
    return multilingual


def _language_task_and_timestamps(
    config: WhisperGenerationConfig,
    special: SpecialTokens,
    language: str | Sequence[str | None] | None,
    task: str | None,
    return_timestamps: bool | None,
    forced_decoder_ids: Sequence[Sequence[Any]] | None,
) -> tuple[str | Sequence[str | None] | None, str | None, bool]:
    """The language, task and timestamps asked for; ``forced_decoder_ids`` (the old way to choose language and task,
    given or the config's) count only when neither language nor task is given."""
    forced = forced_decoder_ids if forced_decoder_ids is not None else getattr(config, "forced_decoder_ids", None)
    forced_no_timestamps = None
    if forced and language is None and task is None:
        language, task, forced_no_timestamps = _from_forced_decoder_ids(forced, special)
    timestamps = bool(getattr(config, "return_timestamps", False)) if return_timestamps is None else return_timestamps
    if return_timestamps is None and forced_no_timestamps:
        timestamps = False
    return language, task, timestamps


def _beams(num_beams: int | None, temperature: float) -> int:
    beams = 1 if num_beams is None else int(num_beams)
    if beams < 1:
        raise InputError(f"num_beams must be at least 1, got {num_beams}")
    if temperature > 0.0 and beams > 1:
        raise InputError("sampling (temperature > 0) decodes one beam; pass num_beams=1 or temperature=0")
    return beams


def _given_or(value: int | None, config: WhisperGenerationConfig, name: str) -> int | None:
    """``value``, else the config's attribute ``name`` (None where it has none)."""
    return value if value is not None else getattr(config, name, None)


def _tokens(given: Sequence[int] | None, default: Sequence[int] | None) -> tuple[int, ...]:
    """``given`` token ids, else the config's ``default`` (None: none)."""
    return tuple(int(token) for token in (given if given is not None else default or ()))


def _resolve_languages(
    language: str | Sequence[str | None] | None,
    batch_size: int,
    multilingual: bool,
    special: SpecialTokens,
    config: WhisperGenerationConfig,
) -> tuple[int | None, ...]:
    items: list[Any] = list(language) if isinstance(language, (list, tuple)) else [language] * batch_size
    if len(items) != batch_size:
        raise InputError(f"language has {len(items)} entries for a batch of {batch_size}; pass one or one per item")
    for item in items:
        resolve_language_and_task(item, None, special, multilingual)
    if not multilingual:
        return tuple(0 for _ in items)  # unused: an English-only prefix has no language token
    return tuple(None if item is None else _language_token(item, special, config) for item in items)


def _temperature(do_sample: bool | None, temperature: float | None) -> float:
    """Whisper's rule (Transformers' Whisper and openai-whisper): a temperature above 0 samples, whatever
    ``do_sample`` says; ``do_sample=True`` without a temperature samples at 1; otherwise decoding is greedy (or a
    beam search)."""
    if temperature is not None:
        if temperature < 0:
            raise InputError(f"temperature must be >= 0, got {temperature}")
        return float(temperature)
    return 1.0 if do_sample else 0.0


def _new_token_budget(
    prefix_length: int,
    max_new_tokens: int | None,
    max_length: int | None,
    config: WhisperGenerationConfig,
    max_target_positions: int,
) -> int:
    if max_new_tokens is not None:
        budget = int(max_new_tokens)
    else:
        total = int(max_length if max_length is not None else getattr(config, "max_length", max_target_positions))
        budget = min(total, max_target_positions) - prefix_length
    if budget < 1:
        raise InputError(f"nothing to generate: the prefix has {prefix_length} tokens and the budget is {budget}")
    if prefix_length + budget > max_target_positions:
        raise InputError(
            f"the prefix ({prefix_length} tokens) plus max_new_tokens ({budget}) is {prefix_length + budget}, more "
            f"than the decoder's max_target_positions ({max_target_positions})"
        )
    return budget
