"""Text normalizers against the outputs of openai-whisper and Transformers 4.57.

The expected strings in tests/fixtures/normalizers/ were produced by the peers themselves
(scripts/make_normalizer_fixtures.py). openai-whisper's output is the reference; a record carries a "transformers"
value only where Transformers disagrees with it.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from whisper_multi.text.normalizers import (
    BasicTextNormalizer,
    EnglishNumberNormalizer,
    EnglishSpellingNormalizer,
    EnglishTextNormalizer,
    load_english_spelling_mapping,
)
from whisper_multi.text.normalizers.basic import remove_symbols, remove_symbols_and_diacritics, split_graphemes

FIXTURES = Path(__file__).parent / "fixtures" / "normalizers"
ENGLISH = json.loads((FIXTURES / "english.json").read_text(encoding="utf-8"))
BASIC = json.loads((FIXTURES / "basic.json").read_text(encoding="utf-8"))

NUMBER = EnglishNumberNormalizer()
SPELLING = EnglishSpellingNormalizer()
TEXT = EnglishTextNormalizer()


def _records(records: list[dict[str, str]]) -> list:
    return [pytest.param(record["input"], record["expected"], id=f"{index}") for index, record in enumerate(records)]


def _basic_options(key: str) -> dict[str, bool]:
    """'remove_diacritics=True,split_letters=False' -> keyword arguments."""
    pairs = (item.split("=") for item in key.split(","))
    return {name: value == "True" for name, value in pairs}


BASIC_CASES = [
    pytest.param(key, record["input"], record["expected"], id=f"{key}-{index}")
    for key, records in BASIC.items()
    for index, record in enumerate(records)
]


# ---------------------------------------------------------------------------------------------------------------
# Every fixture case: exactly the reference string
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), _records(ENGLISH["number"]))
def test_number_normalizer_matches_reference(text: str, expected: str) -> None:
    assert NUMBER(text) == expected


@pytest.mark.parametrize(("text", "expected"), _records(ENGLISH["spelling"]))
def test_spelling_normalizer_matches_reference(text: str, expected: str) -> None:
    assert SPELLING(text) == expected


@pytest.mark.parametrize(("text", "expected"), _records(ENGLISH["text"]))
def test_text_normalizer_matches_reference(text: str, expected: str) -> None:
    assert TEXT(text) == expected


@pytest.mark.parametrize(("key", "text", "expected"), BASIC_CASES)
def test_basic_normalizer_matches_reference(key: str, text: str, expected: str) -> None:
    assert BasicTextNormalizer(**_basic_options(key))(text) == expected


def test_fixture_holds_every_reference_case() -> None:
    """openai-whisper's own test phrases are all in the fixture, for the number and the full text normalizer."""
    number_inputs = {record["input"] for record in ENGLISH["number"]}
    text_inputs = {record["input"] for record in ENGLISH["text"]}
    spelling_inputs = {record["input"] for record in ENGLISH["spelling"]}
    assert set(ENGLISH["reference_number_cases"]) <= number_inputs & text_inputs
    assert set(ENGLISH["reference_text_cases"]) <= text_inputs
    assert set(ENGLISH["reference_spelling_cases"]) <= spelling_inputs


# ---------------------------------------------------------------------------------------------------------------
# A readable sample of the rules (values from the peers, as in the fixture)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("two thousand and twenty", "2020"),
        ("two point five", "2.5"),
        ("one point five", "one.5"),  # the reference writes a lone "1" as "one", even before a decimal point
        ("$20 million", "$20000000"),
        ("twenty million dollars", "$20000000"),
        ("thirty three thousand and three hundred and thirty third", "33333rd"),
        ("seventy six per cent", "76%"),
        ("two dollars and seventy cents", "$2.70"),
        ("$0.36", "¢36"),
        ("three and a half million", "3500000"),
        ("one triple oh one", "10001"),
        ("b747", "b 747"),
    ],
)
def test_number_rules(text: str, expected: str) -> None:
    assert NUMBER(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mr. Park visited Assoc. Prof. Kim Jr.", "mister park visited associate professor kim junior"),
        ("she's been like", "she has been like"),
        ("Hmm, uh, [MUSIC] the colour (inaudible) is grey.", "the color is gray"),
        ("Café naïve", "cafe naive"),
        ("It costs $3.50!", "it costs $3.50"),
    ],
)
def test_text_rules(text: str, expected: str) -> None:
    assert TEXT(text) == expected


def test_basic_normalizer_options() -> None:
    assert BasicTextNormalizer()("Café, [noise] naïve!") == "café naïve "
    assert BasicTextNormalizer(remove_diacritics=True)("Café, [noise] naïve!") == "cafe naive "
    assert BasicTextNormalizer(split_letters=True)("각 ab") == "각 a b"


# ---------------------------------------------------------------------------------------------------------------
# Spelling map
# ---------------------------------------------------------------------------------------------------------------


def test_packaged_spelling_mapping() -> None:
    mapping = load_english_spelling_mapping()
    assert mapping["colour"] == "color"
    assert mapping["mobilisation"] == "mobilization"
    assert len(mapping) > 1000
    mapping["colour"] = "changed"  # callers get a copy: the packaged map is not altered
    assert load_english_spelling_mapping()["colour"] == "color"


def test_custom_spelling_mapping_replaces_packaged_one() -> None:
    assert EnglishSpellingNormalizer({"grey": "gray-ish"})("grey colour") == "gray-ish colour"
    assert EnglishTextNormalizer({"colour": "kolor"})("The colour, grey.") == "the kolor grey"


# ---------------------------------------------------------------------------------------------------------------
# Grapheme clusters without the `regex` module
# ---------------------------------------------------------------------------------------------------------------


def test_split_graphemes_examples() -> None:
    assert list(split_graphemes("a\r\nb")) == ["a", "\r\n", "b"]
    assert list(split_graphemes("\u1100\u1161\u11a8x")) == ["\u1100\u1161\u11a8", "x"]  # Hangul jamo L V T
    assert list(split_graphemes("\u0e17\u0e33")) == ["\u0e17\u0e33"]  # Thai sara am extends
    assert list(split_graphemes("\u0600\u0661")) == ["\u0600\u0661"]  # prepended number sign
    assert list(split_graphemes("\uff76\uff9e")) == ["\uff76\uff9e"]  # halfwidth voiced mark


def test_split_graphemes_agrees_with_regex_on_cleaned_text() -> None:
    """Compared with `regex`'s \\X on random text made of what the normalizer leaves before splitting."""
    regex = pytest.importorskip("regex")
    rng = random.Random(0)
    # Characters where a rule can apply, plus a sample of ordinary letters and digits.
    alphabet = list("\r\n\t aZ1é\u200b\u200c\u200d\u00ad\u0e33\u0eb3\uff76\uff9e\u0600\u06dd\u0d4e\u0915\u4e00")
    alphabet += ["\u1100", "\u115f", "\u1160", "\u11a7", "\u11a8", "\u11ff", "\uac00", "\uac01", "\ud7a3", "\U000e0041"]
    for _ in range(3000):
        text = "".join(rng.choices(alphabet, k=rng.randint(1, 6)))
        for clean in (remove_symbols, remove_symbols_and_diacritics):
            cleaned = clean(text)
            assert list(split_graphemes(cleaned)) == regex.findall(r"\X", cleaned), ascii(cleaned)


def test_cleaned_text_has_no_marks_symbols_or_punctuation() -> None:
    """The premise of split_graphemes: cleaning leaves no character whose grapheme rules it leaves out."""
    sample = "".join(chr(code_point) for code_point in range(0x20, 0x3000))
    for clean in (remove_symbols, remove_symbols_and_diacritics):
        assert not any(unicodedata.category(char)[0] in "MSP" for char in clean(sample))


def test_importing_normalizers_imports_no_framework() -> None:
    code = (
        "import sys, whisper_multi.text.normalizers; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'flax', 'regex') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
