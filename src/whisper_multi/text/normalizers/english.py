"""English text normalization for word error rates, with the results of openai-whisper's ``EnglishTextNormalizer``.

The pipeline: lowercase, drop bracketed words and hesitations, expand contractions and titles, strip symbols and
diacritics except the ones numbers need, turn spelled-out numbers into digits, map British spellings to American,
then drop the number symbols left without a number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from fractions import Fraction
from functools import lru_cache
from importlib import resources

from whisper_multi.text.normalizers.basic import remove_symbols_and_diacritics

SPELLING_MAP_FILE = "english.json"

# ---------------------------------------------------------------------------------------------------------------
# Number vocabulary
# ---------------------------------------------------------------------------------------------------------------

ZEROS = frozenset({"o", "oh", "zero"})
ONES = {
    name: value
    for value, name in enumerate(
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
        "eighteen nineteen".split(),
        start=1,
    )
}
TENS = {
    name: value
    for value, name in zip(range(20, 100, 10), "twenty thirty forty fifty sixty seventy eighty ninety".split())
}
MULTIPLIERS = {
    name: 10**exponent
    for exponent, name in zip(
        (2, *range(3, 34, 3)),
        "hundred thousand million billion trillion quadrillion quintillion sextillion septillion octillion nonillion "
        "decillion".split(),
    )
}


def _ordinal_of_one(name: str) -> str:
    # The regular rule only: "nine" gives "nineth", so the usual "ninth" stays a word, as in the reference.
    return name + ("h" if name.endswith("t") else "th")


IRREGULAR_ORDINALS = {
    "zeroth": (0, "th"), "first": (1, "st"), "second": (2, "nd"), "third": (3, "rd"), "fifth": (5, "th"),
    "twelfth": (12, "th"),
}  # fmt: skip
IRREGULAR_ORDINAL_VALUES = frozenset(value for value, _ in IRREGULAR_ORDINALS.values())

# Suffixed words map to (value, suffix): "sixes" -> (6, "s"), "thirtieth" -> (30, "th").
ONES_SUFFIXED = {
    **{("sixes" if name == "six" else name + "s"): (value, "s") for name, value in ONES.items()},
    **IRREGULAR_ORDINALS,
    **{_ordinal_of_one(name): (value, "th") for name, value in ONES.items() if value not in IRREGULAR_ORDINAL_VALUES},
}
TENS_SUFFIXED = {
    **{name[:-1] + "ies": (value, "s") for name, value in TENS.items()},
    **{name[:-1] + "ieth": (value, "th") for name, value in TENS.items()},
}
MULTIPLIERS_SUFFIXED = {
    **{name + "s": (value, "s") for name, value in MULTIPLIERS.items()},
    **{name + "th": (value, "th") for name, value in MULTIPLIERS.items()},
}

# Signs are written before the number they precede; currencies are spoken after the number but written before it.
SIGN_WORDS = {"minus": "-", "negative": "-", "plus": "+", "positive": "+"}
CURRENCY_WORDS = {
    "pound": "£", "pounds": "£", "euro": "€", "euros": "€", "dollar": "$", "dollars": "$", "cent": "¢", "cents": "¢",
}  # fmt: skip
PREFIX_SYMBOLS = frozenset({*SIGN_WORDS.values(), *CURRENCY_WORDS.values()})
PERCENT_WORDS = frozenset({"per", "percent"})  # "per" only counts when "cent" follows
CONNECTIVES = frozenset({"and", "double", "triple", "point"})
DECIMAL_DIGIT_WORDS = frozenset({*ONES, *TENS, *ZEROS})

NUMBER_WORDS = frozenset().union(
    ZEROS, ONES, ONES_SUFFIXED, TENS, TENS_SUFFIXED, MULTIPLIERS, MULTIPLIERS_SUFFIXED, SIGN_WORDS, CURRENCY_WORDS,
    PERCENT_WORDS, CONNECTIVES,
)  # fmt: skip

ARABIC_NUMBER = re.compile(r"\d+(?:\.\d+)?")  # matched whole: digits with an optional decimal part
AND_A_HALF = re.compile(r"\band\s+a\s+half\b")
LETTER_THEN_DIGIT = re.compile(r"([a-z])([0-9])")
DIGIT_THEN_LETTER = re.compile(r"([0-9])([a-z])")
SPACED_NUMBER_SUFFIX = re.compile(r"([0-9])\s+(st|nd|rd|th|s)\b")
CURRENCY_AND_CENTS = re.compile(r"([€£$])([0-9]+) (?:and )?¢([0-9]{1,2})\b")
# Any single character may separate the zero from the cents, as in the reference; in practice it is the point.
ZERO_CURRENCY_AND_CENTS = re.compile(r"[€£$]0.([0-9]{1,2})\b")
DIGIT_ONE = re.compile(r"\b1(s?)\b")


def _is_arabic_number(word: str | None) -> bool:
    return word is not None and ARABIC_NUMBER.fullmatch(word) is not None


def _as_fraction(value: int | str) -> Fraction | None:
    try:
        return Fraction(value)
    except ValueError:
        return None


def _integer_product(value: int | str, multiplier: int) -> int | None:
    """``value * multiplier`` when it is a whole number ("2.5" million), else None ("1.2.3" or "0.0000001" million)."""
    fraction = _as_fraction(value)
    if fraction is None:
        return None
    product = fraction * multiplier
    return product.numerator if product.denominator == 1 else None


def _add_ones(value: int | str, ones: int, previous: str | None) -> int | str:
    """Combine the number read so far with a word from one to nineteen."""
    if isinstance(value, str) or previous in ONES:
        # A digit string (or digits read one by one, "nine one one"): append, replacing the zero left by a tens word.
        if previous in TENS and ones < 10:
            return str(value)[:-1] + str(ones)  # a tens word always left a string ending in "0"
        return str(value) + str(ones)
    place = 10 if ones < 10 else 100
    # "twenty" + "one" is 21 and "three hundred" + "twelve" is 312, but "five" + "twenty four" reads as digits.
    return value + ones if value % place == 0 else str(value) + str(ones)


def _add_tens(value: int | str, tens: int) -> int | str:
    if isinstance(value, str):
        return value + str(tens)
    return value + tens if value % 100 == 0 else str(value) + str(tens)


def _multiply(value: int, multiplier: int) -> int:
    # Only the last group of three digits is multiplied: "two thousand three hundred" is 2000 + 3 * 100.
    return value // 1000 * 1000 + value % 1000 * multiplier


class _NumberReader:
    """Reads one list of words left to right, accumulating the number being spoken and yielding output words.

    ``value`` is the number read so far: an int while it is arithmetic, a digit string once it is read digit by digit
    or has a decimal point. ``prefix`` is a sign or currency symbol to write before the next output word.
    """

    def __init__(self) -> None:
        self.value: int | str | None = None
        self.prefix: str | None = None
        self.skip_next = False

    def emit(self, word: int | str) -> str:
        """The output word, with any pending prefix; the number being read is finished."""
        text = str(word) if self.prefix is None else self.prefix + str(word)
        self.value = None
        self.prefix = None
        return text

    def flush(self) -> Iterator[str]:
        if self.value is not None:
            yield self.emit(self.value)

    def read(self, words: list[str]) -> Iterator[str]:
        for index, word in enumerate(words):
            if self.skip_next:
                self.skip_next = False
                continue
            previous = words[index - 1] if index > 0 else None
            following = words[index + 1] if index + 1 < len(words) else None
            yield from self.read_word(previous, word, following)
        yield from self.flush()

    def read_word(self, previous: str | None, word: str, following: str | None) -> Iterator[str]:
        has_symbol = word[0] in PREFIX_SYMBOLS
        bare = word[1:] if has_symbol else word
        if _is_arabic_number(bare):
            yield from self.read_arabic(word, bare, has_symbol)
        elif word not in NUMBER_WORDS:
            yield from self.flush()
            yield self.emit(word)
        elif word in ZEROS:
            self.value = str(self.value or "") + "0"
        elif word in ONES:
            self.value = ONES[word] if self.value is None else _add_ones(self.value, ONES[word], previous)
        elif word in ONES_SUFFIXED:
            ones, suffix = ONES_SUFFIXED[word]
            number = ones if self.value is None else _add_ones(self.value, ones, previous)
            yield self.emit(f"{number}{suffix}")
        elif word in TENS:
            self.value = TENS[word] if self.value is None else _add_tens(self.value, TENS[word])
        elif word in TENS_SUFFIXED:
            tens, suffix = TENS_SUFFIXED[word]
            number = tens if self.value is None else _add_tens(self.value, tens)
            yield self.emit(f"{number}{suffix}")
        elif word in MULTIPLIERS:
            yield from self.read_multiplier(MULTIPLIERS[word])
        elif word in MULTIPLIERS_SUFFIXED:
            yield from self.read_suffixed_multiplier(*MULTIPLIERS_SUFFIXED[word])
        elif word in SIGN_WORDS:
            yield from self.read_sign(word, following)
        elif word in CURRENCY_WORDS:
            yield from self.read_currency(word)
        elif word in PERCENT_WORDS:
            yield from self.read_percent(word, following)
        else:
            yield from self.read_connective(previous, word, following)

    def read_arabic(self, word: str, bare: str, has_symbol: bool) -> Iterator[str]:
        if self.value is not None:
            if isinstance(self.value, str) and self.value.endswith("."):
                # After "point": decimals, or the next part of a version or IP address.
                self.value += word
                return
            yield self.emit(self.value)
        if has_symbol:
            self.prefix = word[0]
        fraction = Fraction(bare)
        # Whole numbers become ints so that spoken multipliers can follow ("$20 million"); "3.0" is read as 3.
        self.value = fraction.numerator if fraction.denominator == 1 else bare

    def read_multiplier(self, multiplier: int) -> Iterator[str]:
        if self.value is None:
            self.value = multiplier
        elif isinstance(self.value, str) or self.value == 0:
            product = _integer_product(self.value, multiplier)
            if product is None:
                yield self.emit(self.value)
                self.value = multiplier
            else:
                self.value = product
        else:
            self.value = _multiply(self.value, multiplier)

    def read_suffixed_multiplier(self, multiplier: int, suffix: str) -> Iterator[str]:
        if self.value is None:
            yield self.emit(f"{multiplier}{suffix}")
        elif isinstance(self.value, str):
            product = _integer_product(self.value, multiplier)
            if product is None:
                yield self.emit(self.value)
                yield self.emit(f"{multiplier}{suffix}")
            else:
                yield self.emit(f"{product}{suffix}")
        else:
            yield self.emit(f"{_multiply(self.value, multiplier)}{suffix}")

    def read_sign(self, word: str, following: str | None) -> Iterator[str]:
        yield from self.flush()
        if following in NUMBER_WORDS or _is_arabic_number(following):
            self.prefix = SIGN_WORDS[word]
        else:
            yield self.emit(word)

    def read_currency(self, word: str) -> Iterator[str]:
        if self.value is None:
            yield self.emit(word)
        else:
            # The currency replaces any sign read before the number.
            self.prefix = CURRENCY_WORDS[word]
            yield self.emit(self.value)

    def read_percent(self, word: str, following: str | None) -> Iterator[str]:
        if self.value is None:
            yield self.emit(word)
        elif word == "percent":
            yield self.emit(f"{self.value}%")
        elif following == "cent":
            yield self.emit(f"{self.value}%")
            self.skip_next = True
        else:
            yield self.emit(self.value)
            yield self.emit(word)

    def read_connective(self, previous: str | None, word: str, following: str | None) -> Iterator[str]:
        """ "and", "double", "triple" and "point" are part of a number only when a number word follows."""
        if following not in NUMBER_WORDS and not _is_arabic_number(following):
            yield from self.flush()
            yield self.emit(word)
        elif word == "and":
            # "three hundred and twelve": the "and" after a multiplier is silent.
            if previous not in MULTIPLIERS:
                yield from self.flush()
                yield self.emit(word)
        elif word in ("double", "triple"):
            if following in ONES or following in ZEROS:
                repeats = 2 if word == "double" else 3
                self.value = str(self.value or "") + str(ONES.get(following, 0)) * repeats
                self.skip_next = True
            else:
                yield from self.flush()
                yield self.emit(word)
        elif following in DECIMAL_DIGIT_WORDS or _is_arabic_number(following):
            self.value = str(self.value or "") + "."
        # Otherwise "point" is followed by another number word ("point million") and is dropped, as in the reference.


class EnglishNumberNormalizer:
    """Write spelled-out English numbers as digits.

    - commas between digits are expected to be gone already; suffixes stay: "1960s", "274th", "32nd";
    - currencies are written before the number: "$20 million" and "twenty million dollars" give "$20000000";
    - "percent" and "per cent" become "%"; "and a half" becomes ".5";
    - digits read one by one are kept as a digit string: "one oh one" gives "101";
    - "1" and "1s" are written "one" and "ones", which reads better than a digit.
    """

    def preprocess(self, text: str) -> str:
        text = self._replace_and_a_half(text)
        # Separate digits from letters ("b747" -> "b 747"), then re-attach what reads as a suffix ("10 th" -> "10th").
        text = LETTER_THEN_DIGIT.sub(r"\1 \2", text)
        text = DIGIT_THEN_LETTER.sub(r"\1 \2", text)
        return SPACED_NUMBER_SUFFIX.sub(r"\1\2", text)

    @staticmethod
    def _replace_and_a_half(text: str) -> str:
        """ "three and a half" -> "three point five"; kept as words when no number precedes it."""
        segments = AND_A_HALF.split(text)
        pieces = []
        for index, segment in enumerate(segments):
            if not segment.strip():
                continue  # an empty segment drops the "and a half" after it, as in the reference
            pieces.append(segment)
            if index < len(segments) - 1:
                last_word = segment.split()[-1]
                is_number = last_word in DECIMAL_DIGIT_WORDS or last_word in MULTIPLIERS
                pieces.append("point five" if is_number else "and a half")
        return " ".join(pieces)

    def process_words(self, words: list[str]) -> Iterator[str]:
        """Yield the output words for a list of input words."""
        return _NumberReader().read(words)

    def postprocess(self, text: str) -> str:
        text = CURRENCY_AND_CENTS.sub(lambda m: f"{m[1]}{m[2]}.{int(m[3]):02d}", text)  # "$2 and ¢7" -> "$2.07"
        text = ZERO_CURRENCY_AND_CENTS.sub(lambda m: f"¢{int(m[1])}", text)  # "$0.36" -> "¢36"
        return DIGIT_ONE.sub(r"one\1", text)

    def __call__(self, text: str) -> str:
        text = self.preprocess(text)
        text = " ".join(self.process_words(text.split()))
        return self.postprocess(text)


@lru_cache(maxsize=1)
def _packaged_spelling_mapping() -> dict[str, str]:
    data = resources.files(__package__).joinpath(SPELLING_MAP_FILE).read_text(encoding="utf-8")
    return json.loads(data)


def load_english_spelling_mapping() -> dict[str, str]:
    """The packaged British-to-American spelling map (from openai-whisper, MIT licence); a fresh copy each call."""
    return dict(_packaged_spelling_mapping())


class EnglishSpellingNormalizer:
    """Replace British spellings by American ones, word by word ("colour" -> "color").

    Args:
        english_spelling_mapping: word -> replacement; the packaged map when None.
    """

    def __init__(self, english_spelling_mapping: dict[str, str] | None = None) -> None:
        if english_spelling_mapping is None:
            english_spelling_mapping = load_english_spelling_mapping()
        self.mapping = english_spelling_mapping

    def __call__(self, text: str) -> str:
        return " ".join(self.mapping.get(word, word) for word in text.split())


# ---------------------------------------------------------------------------------------------------------------
# Whole-text rules
# ---------------------------------------------------------------------------------------------------------------

BRACKETED = re.compile(r"[<\[][^>\]]*[>\]]")
PARENTHESISED = re.compile(r"\([^)]+?\)")
HESITATIONS = re.compile(r"\b(?:hmm|mm|mhm|mmm|uh|um)\b")
SPACE_BEFORE_APOSTROPHE = re.compile(r"\s+'")

WHOLE_WORD_CONTRACTIONS = {
    "won't": "will not", "can't": "can not", "let's": "let us", "ain't": "aint", "y'all": "you all",
    "wanna": "want to", "gotta": "got to", "gonna": "going to", "i'ma": "i am going to", "imma": "i am going to",
    "woulda": "would have", "coulda": "could have", "shoulda": "should have", "ma'am": "madam",
}  # fmt: skip
# The trailing space keeps a following period from gluing to the title ("mr." -> "mister .").
TITLES = {
    "mr": "mister", "mrs": "missus", "st": "saint", "dr": "doctor", "prof": "professor", "capt": "captain",
    "gov": "governor", "ald": "alderman", "gen": "general", "sen": "senator", "rep": "representative",
    "pres": "president", "rev": "reverend", "hon": "honorable", "asst": "assistant", "assoc": "associate",
    "lt": "lieutenant", "col": "colonel", "jr": "junior", "sr": "senior", "esq": "esquire",
}  # fmt: skip
# Perfect tenses first, so that "'s been" is "has been" before the general "'s" becomes "is" ("'s done" is ambiguous).
PERFECT_TENSES = {
    "'d been": "had been", "'s been": "has been", "'d gone": "had gone", "'s gone": "has gone",
    "'d done": "had done", "'s got": "has got",
}  # fmt: skip
SUFFIX_CONTRACTIONS = {
    "n't": "not", "'re": "are", "'s": "is", "'d": "would", "'ll": "will", "'t": "not", "'ve": "have", "'m": "am",
}  # fmt: skip


def _build_replacements() -> list[tuple[re.Pattern[str], str]]:
    """Patterns applied in order; each sees the output of the ones before it."""
    replacements = [(rf"\b{re.escape(word)}\b", spoken) for word, spoken in WHOLE_WORD_CONTRACTIONS.items()]
    replacements += [(rf"\b{title}\b", f"{spoken} ") for title, spoken in TITLES.items()]
    for table in (PERFECT_TENSES, SUFFIX_CONTRACTIONS):
        replacements += [(rf"{re.escape(ending)}\b", f" {spoken}") for ending, spoken in table.items()]
    return [(re.compile(pattern), spoken) for pattern, spoken in replacements]


REPLACEMENTS = _build_replacements()
COMMA_BETWEEN_DIGITS = re.compile(r"(\d),(\d)")  # consuming: "1,2,3" -> "12,3", as in the reference
PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.([^0-9]|$)")
NUMBER_SYMBOLS = ".%$¢€£"
SYMBOL_NOT_BEFORE_DIGIT = re.compile(r"[.$¢€£]([^0-9])")
PERCENT_NOT_AFTER_DIGIT = re.compile(r"([^0-9])%")
WHITESPACE_RUN = re.compile(r"\s+")


def _apply(replacements: Iterable[tuple[re.Pattern[str], str]], text: str) -> str:
    for pattern, replacement in replacements:
        text = pattern.sub(replacement, text)
    return text


class EnglishTextNormalizer:
    """Normalize English transcripts so that word error rates ignore spelling, number and formatting differences.

    Args:
        english_spelling_mapping: British-to-American word map; the packaged map when None.
    """

    def __init__(self, english_spelling_mapping: dict[str, str] | None = None) -> None:
        self.standardize_numbers = EnglishNumberNormalizer()
        self.standardize_spellings = EnglishSpellingNormalizer(english_spelling_mapping)

    def __call__(self, text: str) -> str:
        text = text.lower()
        text = BRACKETED.sub("", text)
        text = PARENTHESISED.sub("", text)
        text = HESITATIONS.sub("", text)
        text = SPACE_BEFORE_APOSTROPHE.sub("'", text)
        text = _apply(REPLACEMENTS, text)
        text = COMMA_BETWEEN_DIGITS.sub(r"\1\2", text)
        text = PERIOD_NOT_BEFORE_DIGIT.sub(r" \1", text)
        text = remove_symbols_and_diacritics(text, keep=NUMBER_SYMBOLS)
        text = self.standardize_numbers(text)
        text = self.standardize_spellings(text)
        # Symbols kept for the number parser go when no number is beside them.
        text = SYMBOL_NOT_BEFORE_DIGIT.sub(r" \1", text)
        text = PERCENT_NOT_AFTER_DIGIT.sub(r"\1 ", text)
        return WHITESPACE_RUN.sub(" ", text)
