"""Text normalizers for word error rates, giving the same strings as openai-whisper's and Transformers'.

``EnglishTextNormalizer`` for English transcripts; ``BasicTextNormalizer`` for every other language.
"""

from whisper_multi.text.normalizers.basic import BasicTextNormalizer
from whisper_multi.text.normalizers.english import (
    EnglishNumberNormalizer,
    EnglishSpellingNormalizer,
    EnglishTextNormalizer,
    load_english_spelling_mapping,
)

__all__ = [
    "BasicTextNormalizer",
    "EnglishNumberNormalizer",
    "EnglishSpellingNormalizer",
    "EnglishTextNormalizer",
    "load_english_spelling_mapping",
]
