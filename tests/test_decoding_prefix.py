"""The forced decoder prefix, built in one place (``decoding.options.decoder_prefix``) for ``generate`` and
``transcribe``: exact token ids of English-only and multilingual vocabularies, and the steps of ``resolve_request``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from whisper_multi.configuration import WhisperGenerationConfig
from whisper_multi.decoding.options import decoder_prefix, prompt_tokens, resolve_request
from whisper_multi.errors import InputError
from whisper_multi.longform.options import TranscribeOptions
from whisper_multi.longform.windows import WindowDecoder
from whisper_multi.text.special_tokens import special_tokens_for_vocab

ENGLISH = special_tokens_for_vocab(51864)  # tiny.en ... medium.en
MULTILINGUAL = special_tokens_for_vocab(51865)  # tiny ... large-v2
MULTILINGUAL_CONFIG = WhisperGenerationConfig(
    is_multilingual=True, lang_to_id=MULTILINGUAL.lang_to_id, pad_token_id=50257, suppress_tokens=[],
    begin_suppress_tokens=[220, 50257], max_length=448,
)  # fmt: skip


def test_english_only_prefix_is_start_of_transcript_and_the_timestamp_flag() -> None:
    assert decoder_prefix(ENGLISH) == [50257]
    assert decoder_prefix(ENGLISH, timestamps=False) == [50257, 50362]
    assert decoder_prefix(ENGLISH, prompt=prompt_tokens(ENGLISH, [400, 401])) == [50360, 400, 401, 50257]


def test_multilingual_prefix_has_language_and_task() -> None:
    english, french = MULTILINGUAL.language_token("en"), MULTILINGUAL.language_token("fr")
    assert (english, french) == (50259, 50265)
    assert decoder_prefix(MULTILINGUAL, english, MULTILINGUAL.transcribe) == [50258, 50259, 50359]
    assert decoder_prefix(MULTILINGUAL, french, MULTILINGUAL.translate, timestamps=False) == [
        50258, 50265, 50358, 50363,
    ]  # fmt: skip
    with_prompt = decoder_prefix(
        MULTILINGUAL, english, MULTILINGUAL.transcribe, prompt=prompt_tokens(MULTILINGUAL, [7])
    )
    assert with_prompt == [50361, 7, 50258, 50259, 50359]
    with pytest.raises(InputError, match="language token"):
        decoder_prefix(MULTILINGUAL, None, MULTILINGUAL.transcribe)


def test_prompt_tokens_start_with_start_of_previous_once() -> None:
    assert prompt_tokens(ENGLISH, [1, 2]) == (50360, 1, 2)
    assert prompt_tokens(ENGLISH, [50360, 1, 2]) == (50360, 1, 2)  # as tokenizer.get_prompt_ids makes them
    assert prompt_tokens(ENGLISH, []) == (50360,)


def test_generate_and_transcribe_build_the_same_prefix() -> None:
    request = resolve_request(
        MULTILINGUAL_CONFIG,
        51865,
        448,
        1,
        language="fr",
        task="translate",
        prompt_ids=[400, 401],
        return_timestamps=True,
    )
    model = SimpleNamespace(config=SimpleNamespace(vocab_size=51865, max_target_positions=448))
    decoder = WindowDecoder(model, None, TranscribeOptions(language="fr", task="translate"), (0.0,))
    assert request.prefix().tolist() == [decoder.prefix([400, 401])]
    assert request.prefix_length == len(decoder.prefix([400, 401]))
    assert decoder.prefix(timestamps=False) == [50258, 50265, 50358, 50363]


def test_a_language_to_detect_keeps_its_place_in_the_prefix() -> None:
    request = resolve_request(MULTILINGUAL_CONFIG, 51865, 448, 2, language=[None, "en"], return_timestamps=False)
    assert request.prefix_length == 4
    assert request.prefix([50265, 0]).tolist() == [[50258, 50265, 50359, 50363], [50258, 50259, 50359, 50363]]
    with pytest.raises(InputError, match="item 0 has no language"):
        request.prefix()


def test_resolve_request_steps_refuse_what_they_cannot_do() -> None:
    with pytest.raises(InputError, match="English-only"):
        resolve_request(WhisperGenerationConfig(), 51864, 448, 1, is_multilingual=True)
    with pytest.raises(InputError, match="prompt_condition_type"):
        resolve_request(MULTILINGUAL_CONFIG, 51865, 448, 1, language="en", prompt_condition_type="every-other")
    with pytest.raises(InputError, match="num_beams must be at least 1"):
        resolve_request(MULTILINGUAL_CONFIG, 51865, 448, 1, language="en", num_beams=0)


def test_forced_no_timestamps_and_config_defaults() -> None:
    forced = [[1, MULTILINGUAL.language_token("de")], [2, MULTILINGUAL.transcribe], [3, MULTILINGUAL.no_timestamps]]
    config = WhisperGenerationConfig(
        is_multilingual=True, lang_to_id=MULTILINGUAL.lang_to_id, forced_decoder_ids=forced, return_timestamps=True,
        suppress_tokens=[1, 2], begin_suppress_tokens=[220], max_initial_timestamp_index=50, max_length=448,
    )  # fmt: skip
    request = resolve_request(config, 51865, 448, 1)
    assert request.prefix().tolist() == [[50258, 50261, 50359, 50363]]  # <|notimestamps|> forced: no timestamps
    assert (request.suppress_tokens, request.begin_suppress_tokens) == ((1, 2), (220,))
    assert request.max_initial_timestamp_index == 50
    given = resolve_request(
        config, 51865, 448, 1, return_timestamps=True, suppress_tokens=[], max_initial_timestamp_index=3
    )
    assert given.timestamps and given.suppress_tokens == () and given.max_initial_timestamp_index == 3
