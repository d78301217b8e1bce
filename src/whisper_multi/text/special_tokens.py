"""Whisper's languages and the layout of its special tokens, for every published vocabulary.

Whisper appends its special tokens to a GPT-2 style byte-level BPE vocabulary in a fixed order:
``<|endoftext|>``, ``<|startoftranscript|>``, one token per language, ``<|translate|>``,
``<|transcribe|>``, ``<|startoflm|>``, ``<|startofprev|>``, ``<|nospeech|>`` (``<|nocaptions|>`` before
v3), ``<|notimestamps|>`` and the 1501 timestamps ``<|0.00|>`` ... ``<|30.00|>``. Only the size of the
base vocabulary and the number of languages differ, so every id follows from those two numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from whisper_multi.errors import TokenizerError

# Code -> English name, in the order of the language tokens. Cantonese ("yue") exists from large-v3 on.
LANGUAGES: dict[str, str] = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian", "mk": "macedonian",
    "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian", "ne": "nepali",
    "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer",
    "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan",
    "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu": "gujarati",
    "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese",
    "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese",
    "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala",
    "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}  # fmt: skip

# Other names people use for the same languages.
LANGUAGE_ALIASES: dict[str, str] = {
    "burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht", "letzeburgesch": "lb",
    "pushto": "ps", "panjabi": "pa", "moldavian": "ro", "moldovan": "ro", "sinhalese": "si",
    "castilian": "es", "mandarin": "zh",
}  # fmt: skip

TASKS = ("transcribe", "translate")

NUM_TIMESTAMP_TOKENS = 1501  # <|0.00|> ... <|30.00|> in steps of 0.02 s
TIME_PRECISION = 0.02  # seconds per timestamp token

ENGLISH_BASE_VOCAB = 50256  # GPT-2 vocabulary without <|endoftext|>
MULTILINGUAL_BASE_VOCAB = 50257  # the multilingual BPE has one more ordinary token


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of Whisper's special tokens for one vocabulary."""

    vocab_size: int
    eot: int
    sot: int
    languages: tuple[str, ...]
    translate: int
    transcribe: int
    sot_lm: int
    sot_prev: int
    no_speech: int
    no_timestamps: int
    timestamp_begin: int

    @property
    def is_multilingual(self) -> bool:
        return self.eot == MULTILINGUAL_BASE_VOCAB

    @property
    def lang_to_id(self) -> dict[str, int]:
        """``{"<|en|>": id, ...}`` as in Transformers' generation_config.json."""
        return {f"<|{code}|>": self.sot + 1 + i for i, code in enumerate(self.languages)}

    @property
    def task_to_id(self) -> dict[str, int]:
        return {"translate": self.translate, "transcribe": self.transcribe}

    def language_token(self, code: str) -> int:
        if code not in self.languages:
            raise TokenizerError(f"language {code!r} has no token in this vocabulary of {self.vocab_size} tokens")
        return self.sot + 1 + self.languages.index(code)

    def timestamp_token(self, seconds: float) -> int:
        index = round(seconds / TIME_PRECISION)
        if not 0 <= index < NUM_TIMESTAMP_TOKENS:
            raise TokenizerError(f"timestamp {seconds} s is outside 0.00 ... 30.00 s")
        return self.timestamp_begin + index

    def named_tokens(self) -> dict[str, int]:
        """Text of every special token except timestamps, mapped to its id."""
        named = {"<|endoftext|>": self.eot, "<|startoftranscript|>": self.sot}
        named.update(self.lang_to_id)
        no_speech_name = "<|nospeech|>" if len(self.languages) == 100 else "<|nocaptions|>"
        named.update(
            {
                "<|translate|>": self.translate,
                "<|transcribe|>": self.transcribe,
                "<|startoflm|>": self.sot_lm,
                "<|startofprev|>": self.sot_prev,
                no_speech_name: self.no_speech,
                "<|notimestamps|>": self.no_timestamps,
            }
        )
        return named


def special_tokens_for_vocab(vocab_size: int) -> SpecialTokens:
    """Special-token ids of a published Whisper vocabulary, chosen by its size.

    51864: English-only models (tiny.en ... medium.en); 51865: multilingual v1/v2; 51866: large-v3 (100 languages).
    """
    layouts = {
        51864: (ENGLISH_BASE_VOCAB, 99),
        51865: (MULTILINGUAL_BASE_VOCAB, 99),
        51866: (MULTILINGUAL_BASE_VOCAB, 100),
    }
    if vocab_size not in layouts:
        known = ", ".join(str(size) for size in layouts)
        raise TokenizerError(f"vocab_size {vocab_size} is not a Whisper vocabulary; expected one of {known}")
    eot, num_languages = layouts[vocab_size]
    languages = tuple(LANGUAGES)[:num_languages]
    sot = eot + 1
    translate = sot + 1 + num_languages
    return SpecialTokens(
        vocab_size=vocab_size,
        eot=eot,
        sot=sot,
        languages=languages,
        translate=translate,
        transcribe=translate + 1,
        sot_lm=translate + 2,
        sot_prev=translate + 3,
        no_speech=translate + 4,
        no_timestamps=translate + 5,
        timestamp_begin=translate + 6,
    )


def normalize_language(language: str) -> str:
    """Language code for a name, code or token ("Spanish", "es", "<|es|>" -> "es")."""
    key = language.strip().lower()
    if key.startswith("<|") and key.endswith("|>"):
        key = key[2:-2]
    if key in LANGUAGES:
        return key
    by_name = {name: code for code, name in LANGUAGES.items()}
    if key in by_name:
        return by_name[key]
    if key in LANGUAGE_ALIASES:
        return LANGUAGE_ALIASES[key]
    import difflib

    candidates = list(LANGUAGES) + list(by_name) + list(LANGUAGE_ALIASES)
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
    hint = (
        f"; did you mean {', '.join(repr(c) for c in close)}?"
        if close
        else "; see whisper_multi.text.special_tokens.LANGUAGES"
    )
    raise TokenizerError(f"unknown language {language!r}{hint}")


def normalize_task(task: str) -> str:
    key = task.strip().lower()
    if key.startswith("<|") and key.endswith("|>"):
        key = key[2:-2]
    if key not in TASKS:
        raise TokenizerError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return key


def resolve_language_and_task(
    language: str | None, task: str | None, special: SpecialTokens, multilingual: bool | None = None
) -> tuple[str | None, str]:
    """(language code or None, task) that a request asks of a model with ``special`` tokens: one rule for
    ``generate``, ``transcribe`` and the command line. Languages by name, code or token alike ("English", "en",
    "<|en|>"). An English-only model (``multilingual`` False; by default, its vocabulary says) transcribes English:
    another language, or translation, is an error."""
    code = None if language is None else normalize_language(language)
    name = "transcribe" if task is None else normalize_task(task)
    if not (special.is_multilingual if multilingual is None else multilingual):
        if code not in (None, "en"):
            raise TokenizerError(
                f"language {language!r} needs a multilingual model; this one (vocabulary of {special.vocab_size} "
                "tokens) is English-only: leave the language out, or use a multilingual checkpoint"
            )
        if name != "transcribe":
            raise TokenizerError(
                f"task {task!r} needs a multilingual model; this one (vocabulary of {special.vocab_size} tokens) is "
                "English-only and can only transcribe English"
            )
    elif code is not None and code not in special.languages:
        raise TokenizerError(
            f"language {language!r} ({code}) has no token in this vocabulary of {special.vocab_size} tokens; "
            f"it knows {len(special.languages)} languages (Cantonese, 'yue', needs large-v3)"
        )
    return code, name
