"""Language-neutral text normalization for word and character error rates.

Gives the same strings as openai-whisper's and Transformers' ``BasicTextNormalizer``, using only the standard
library: the grapheme clusters needed by ``split_letters`` are found by :func:`split_graphemes` below instead of the
third-party ``regex`` module's ``\\X``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

# Letters that carry no combining mark under NFKD, so decomposition alone would not strip them.
LETTERS_WITHOUT_DECOMPOSITION = {
    "œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "ß": "ss", "ẞ": "SS",
    "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "th", "ł": "l", "Ł": "L",
}  # fmt: skip

# Unicode general categories are two letters; these first letters mean mark, symbol and punctuation.
MARK_SYMBOL_PUNCTUATION = frozenset("MSP")
NONSPACING_MARK = "Mn"

BRACKETED = re.compile(r"[<\[][^>\]]*[>\]]")  # <...> or [...], mixed ends allowed, no nesting
PARENTHESISED = re.compile(r"\([^)]+?\)")  # (...) with at least one character inside
WHITESPACE_RUN = re.compile(r"\s+")


def remove_symbols_and_diacritics(text: str, keep: str = "") -> str:
    """Decompose (NFKD), drop combining marks, spell out a few special letters, turn other marks/symbols into spaces.

    Characters in ``keep`` are left as they are.
    """
    return "".join(_strip_diacritic(char, keep) for char in unicodedata.normalize("NFKD", text))


def _strip_diacritic(char: str, keep: str) -> str:
    if char in keep:
        return char
    if char in LETTERS_WITHOUT_DECOMPOSITION:
        return LETTERS_WITHOUT_DECOMPOSITION[char]
    category = unicodedata.category(char)
    if category == NONSPACING_MARK:
        return ""
    return " " if category[0] in MARK_SYMBOL_PUNCTUATION else char


def remove_symbols(text: str) -> str:
    """Compose compatibly (NFKC) and turn marks, symbols and punctuation into spaces; accents stay composed."""
    composed = unicodedata.normalize("NFKC", text)
    return "".join(" " if unicodedata.category(char)[0] in MARK_SYMBOL_PUNCTUATION else char for char in composed)


# ---------------------------------------------------------------------------------------------------------------
# Grapheme clusters (Unicode Standard Annex #29, extended clusters).
#
# The normalizer splits letters only after every mark, symbol and punctuation character has become a space, so the
# text holds letters, numbers, separators and "other" characters. Among those, only the rules below can join two
# characters; the emoji (GB11) and regional-indicator (GB12/13) rules need symbols, and the Indic conjunct rule (GB9c)
# needs viramas, which are all gone. Marks are still treated as extending, so that other text splits sensibly.
# ---------------------------------------------------------------------------------------------------------------

CARRIAGE_RETURN, LINE_FEED = "\r", "\n"
ZERO_WIDTH_NON_JOINER, ZERO_WIDTH_JOINER = "\u200c", "\u200d"

# Non-mark characters that extend the previous character: (first, last) code points.
EXTENDING_NON_MARKS = (
    (0x0E33, 0x0E33),  # THAI CHARACTER SARA AM (a spacing vowel, category Lo)
    (0x0EB3, 0x0EB3),  # LAO VOWEL SIGN AM
    (0x200C, 0x200D),  # zero-width non-joiner and joiner
    (0xFF9E, 0xFF9F),  # halfwidth katakana voiced sound marks (category Lm)
    (0xE0020, 0xE007F),  # tag characters
)
# Characters that attach to the character after them.
PREPENDED = (
    (0x0600, 0x0605), (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x0D4E, 0x0D4E),
    (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x111C2, 0x111C3), (0x1193F, 0x1193F), (0x11941, 0x11941),
    (0x11A84, 0x11A89), (0x11D46, 0x11D46),
)  # fmt: skip
# Unassigned code points reserved as default-ignorable: they break like control characters.
IGNORABLE_UNASSIGNED = ((0x2065, 0x2065), (0xFFF0, 0xFFF8), (0xE0000, 0xE0FFF))
CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})

# Hangul jamo classes: leading consonants, vowels, trailing consonants; precomposed syllables are LV or LVT.
HANGUL_LEADING = ((0x1100, 0x115F), (0xA960, 0xA97C))
HANGUL_VOWEL = ((0x1160, 0x11A7), (0xD7B0, 0xD7C6))
HANGUL_TRAILING = ((0x11A8, 0x11FF), (0xD7CB, 0xD7FB))
HANGUL_SYLLABLES_FIRST, HANGUL_SYLLABLES_LAST = 0xAC00, 0xD7A3
HANGUL_TRAILING_PER_VOWEL = 28  # syllable index modulo 28 is 0 exactly when there is no trailing consonant
FOLLOWS_LEADING = frozenset({"L", "V", "LV", "LVT"})
FOLLOWS_VOWEL = frozenset({"V", "T"})


def _in_ranges(code_point: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(first <= code_point <= last for first, last in ranges)


def _break_class(char: str) -> str:
    """The grapheme-break class of one character, as far as the rules implemented here need it."""
    code_point = ord(char)
    if char in (CARRIAGE_RETURN, LINE_FEED):
        return char
    if char == ZERO_WIDTH_JOINER or _in_ranges(code_point, EXTENDING_NON_MARKS):
        return "Extend"
    if _in_ranges(code_point, PREPENDED):
        return "Prepend"
    category = unicodedata.category(char)
    if category in CONTROL_CATEGORIES or (category == "Cn" and _in_ranges(code_point, IGNORABLE_UNASSIGNED)):
        return "Control"
    if category[0] == "M":
        return "Extend"
    return _hangul_class(code_point)


def _hangul_class(code_point: int) -> str:
    if _in_ranges(code_point, HANGUL_LEADING):
        return "L"
    if _in_ranges(code_point, HANGUL_VOWEL):
        return "V"
    if _in_ranges(code_point, HANGUL_TRAILING):
        return "T"
    if HANGUL_SYLLABLES_FIRST <= code_point <= HANGUL_SYLLABLES_LAST:
        has_trailing = (code_point - HANGUL_SYLLABLES_FIRST) % HANGUL_TRAILING_PER_VOWEL != 0
        return "LVT" if has_trailing else "LV"
    return "Other"


def _joins(before: str, after: str) -> bool:
    """Whether two adjacent characters of these break classes belong to the same grapheme cluster."""
    if before == CARRIAGE_RETURN:
        return after == LINE_FEED
    if "Control" in (before, after) or before == LINE_FEED or after in (CARRIAGE_RETURN, LINE_FEED):
        return False
    if after == "Extend" or before == "Prepend":
        return True
    if before == "L":
        return after in FOLLOWS_LEADING
    if before in ("LV", "V"):
        return after in FOLLOWS_VOWEL
    return before in ("LVT", "T") and after == "T"


def split_graphemes(text: str) -> Iterator[str]:
    """Yield the user-perceived characters of ``text`` (exact for text without marks, symbols or punctuation)."""
    cluster, previous = "", ""
    for char in text:
        current = _break_class(char)
        if cluster and not _joins(previous, current):
            yield cluster
            cluster = ""
        cluster += char
        previous = current
    if cluster:
        yield cluster


class BasicTextNormalizer:
    """Normalize text in any language: lowercase, drop bracketed words, replace symbols and punctuation by spaces.

    Args:
        remove_diacritics: decompose letters and drop their accents (NFKD) instead of composing them (NFKC).
        split_letters: separate every grapheme cluster by a space, for character error rates in languages written
            without spaces.
    """

    def __init__(self, remove_diacritics: bool = False, split_letters: bool = False) -> None:
        self.remove_diacritics = remove_diacritics
        self.split_letters = split_letters

    def clean(self, text: str) -> str:
        return remove_symbols_and_diacritics(text) if self.remove_diacritics else remove_symbols(text)

    def __call__(self, text: str) -> str:
        text = text.lower()
        text = BRACKETED.sub("", text)
        text = PARENTHESISED.sub("", text)
        # Lowercase again: compatibility forms (e.g. a circled capital) only become capitals here.
        text = self.clean(text).lower()
        if self.split_letters:
            text = " ".join(split_graphemes(text))
        return WHITESPACE_RUN.sub(" ", text)
