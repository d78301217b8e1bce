"""WhisperTokenizer: Whisper's byte-level BPE in pure Python.

Text is split around added tokens ("<|en|>", "<|0.00|>" ...), cut into words by GPT-2's pattern, mapped byte by byte
onto GPT-2's printable alphabet and merged pair by pair in the order of merges.txt. The result equals the
``tokenizers`` library (WhisperTokenizerFast) and openai-whisper's tiktoken encoding id for id.

Python's ``re`` has no ``\\p{L}``, so the letter and number classes are built from ``unicodedata``. Characters that
Python's Unicode database does not know yet (assigned in a later Unicode version than the interpreter's) count as
neither letters nor numbers here, while the ``tokenizers`` library may already know them.
"""

from __future__ import annotations

import os
import re
import unicodedata
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from whisper_multi.jsonfile import atomic_write_text
from whisper_multi.text.byte_level import BYTE_DECODER, BYTE_ENCODER
from whisper_multi.text.tokenizer_base import WhisperTokenizerBase
from whisper_multi.text.tokenizer_files import (
    ADDED_TOKENS_FILE,
    ENDOFTEXT,
    MERGES_FILE,
    VOCAB_FILE,
    TokenizerData,
    load_data_from_paths,
    merges_txt_text,
    write_json,
)

__all__ = ["WhisperTokenizer"]

# Whitespace as the Rust regex engines of `tokenizers` and tiktoken define \s (Unicode White_Space). Python's \s
# also matches the separators \x1c-\x1f, which those engines treat as punctuation.
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

# Words cached per tokenizer: speech transcripts repeat words, so most lookups hit.
_BPE_CACHE_SIZE = 1 << 16


def _ranges_of(predicate: Any) -> str:
    """A regex character-class body covering every code point for which predicate(category) holds."""
    parts = []
    start = None
    for code in range(0x110001):
        inside = code <= 0x10FFFF and predicate(unicodedata.category(chr(code)))
        if inside and start is None:
            start = code
        elif not inside and start is not None:
            end = code - 1
            parts.append(re.escape(chr(start)) if start == end else f"{re.escape(chr(start))}-{re.escape(chr(end))}")
            start = None
    return "".join(parts)


@cache
def pretokenizer_pattern() -> re.Pattern[str]:
    """GPT-2's word pattern with \\p{L}, \\p{N} and \\s spelled out for Python's ``re``.

    Built once per process: the letter and number classes come from a scan of every code point.
    """
    letters = _ranges_of(lambda category: category[0] == "L")
    numbers = _ranges_of(lambda category: category[0] == "N")
    space = _WHITESPACE
    return re.compile(
        rf"""'s|'t|'re|'ve|'m|'ll|'d| ?[{letters}]+| ?[{numbers}]+| ?[^{space}{letters}{numbers}]+"""
        rf"""|[{space}]+(?![^{space}])|[{space}]+"""
    )


def _added_token_pattern(tokens: list[str]) -> re.Pattern[str]:
    """Finds added tokens in text: any "<|...|>" (checked against the vocabulary after), then other added tokens.

    Whisper's tokens never contain "<", ">" or "|" inside, so a left-to-right scan for the shape finds exactly the
    occurrences the ``tokenizers`` library finds, without an alternation of 1600 literals.
    """
    shape = r"<\|[^<>|]*\|>"
    others = sorted((t for t in tokens if not re.fullmatch(shape, t)), key=len, reverse=True)
    return re.compile("|".join([shape, *map(re.escape, others)]))


class WhisperTokenizer(WhisperTokenizerBase):
    """Whisper's tokenizer in pure Python (Transformers' WhisperTokenizer).

    Args:
        vocab_file: vocab.json. With ``tokenizer_file`` instead, the vocabulary and merges are read from
            tokenizer.json.
        merges_file: merges.txt.
        normalizer_file: normalizer.json, the English spelling mapping used by ``normalize``.
        errors: how invalid UTF-8 is decoded (``bytes.decode``); "replace" as Transformers and openai-whisper.
        tokenizer_file: tokenizer.json, used when vocab_file / merges_file are not given.
        The other arguments are the settings both tokenizers take (see ``WhisperTokenizerBase``).
    """

    prefer_tokenizer_json = False

    def __init__(
        self,
        vocab_file: str | os.PathLike[str] | None = None,
        merges_file: str | os.PathLike[str] | None = None,
        normalizer_file: str | os.PathLike[str] | None = None,
        errors: str = "replace",
        unk_token: str = ENDOFTEXT,
        bos_token: str = ENDOFTEXT,
        eos_token: str = ENDOFTEXT,
        pad_token: str | None = None,
        add_prefix_space: bool = False,
        language: str | None = None,
        task: str | None = None,
        predict_timestamps: bool = False,
        tokenizer_file: str | os.PathLike[str] | None = None,
        repair_merges: bool = True,
        clean_up_tokenization_spaces: bool = False,
        _data: TokenizerData | None = None,
    ) -> None:
        if _data is None:
            _data = load_data_from_paths(vocab_file, merges_file, tokenizer_file, normalizer_file, False)
        self.errors = errors
        self._setup(_data, locals())

    @staticmethod
    def _init_options(data: TokenizerData, kwargs: dict[str, Any]) -> dict[str, Any]:
        options = WhisperTokenizerBase._init_options(data, kwargs)
        options.setdefault("errors", data.config.get("errors", "replace"))
        return options

    # --- the BPE -------------------------------------------------------------------------------------------------

    def _build(self, data: TokenizerData) -> None:
        self.encoder: dict[str, int] = dict(data.vocab)
        self.decoder: dict[int, str] = {i: t for t, i in self.encoder.items()}
        self.bpe_ranks: dict[tuple[str, str], int] = {pair: rank for rank, pair in enumerate(self.merges)}
        self._words = pretokenizer_pattern()
        self._added_pattern = _added_token_pattern(list(self.added_tokens_encoder))
        self._bpe_cached = lru_cache(maxsize=_BPE_CACHE_SIZE)(self._bpe_ids)

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def bpe(self, word: str) -> list[str]:
        """BPE pieces of one word, written in the byte-level alphabet: the best-ranked pair merges first."""
        parts = list(word)
        ranks = self.bpe_ranks
        while len(parts) > 1:
            best_rank, best_index = None, -1
            for index in range(len(parts) - 1):
                rank = ranks.get((parts[index], parts[index + 1]))
                if rank is not None and (best_rank is None or rank < best_rank):
                    best_rank, best_index = rank, index
            if best_rank is None:
                break
            parts = self._merge_pair(parts, parts[best_index], parts[best_index + 1])
        return parts

    @staticmethod
    def _merge_pair(parts: list[str], first: str, second: str) -> list[str]:
        # Every occurrence merges, left to right: a later occurrence still holds the lowest rank after the first.
        merged: list[str] = []
        index = 0
        while index < len(parts):
            if index + 1 < len(parts) and parts[index] == first and parts[index + 1] == second:
                merged.append(first + second)
                index += 2
            else:
                merged.append(parts[index])
                index += 1
        return merged

    def _bpe_ids(self, word: str) -> tuple[int, ...]:
        return tuple(self.encoder[piece] for piece in self.bpe(word))

    def _encode_ordinary_text(self, text: str) -> list[int]:
        ids: list[int] = []
        for word in self._words.findall(text):
            ids.extend(self._bpe_cached("".join(BYTE_ENCODER[b] for b in word.encode("utf-8"))))
        return ids

    def _encode_text(self, text: str) -> list[int]:
        ids: list[int] = []
        position = 0
        for match in self._added_pattern.finditer(text):
            token_id = self.added_tokens_encoder.get(match.group())
            if token_id is None:
                continue  # "<|...|>" that is no token of this vocabulary: ordinary text
            ids.extend(self._encode_ordinary_text(text[position : match.start()]))
            ids.append(token_id)
            position = match.end()
        ids.extend(self._encode_ordinary_text(text[position:]))
        return ids

    def _decode_ordinary(self, ids: list[int]) -> str:
        return self.convert_tokens_to_string([self.decoder.get(i, "") for i in ids])

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Text of byte-level token strings; invalid UTF-8 is handled as ``errors`` says."""
        text = "".join(tokens)
        try:
            data = bytes(BYTE_DECODER[char] for char in text)
        except KeyError:  # a character outside the byte alphabet stands for its own UTF-8, as in `tokenizers`
            data = b"".join(bytes([BYTE_DECODER[c]]) if c in BYTE_DECODER else c.encode() for c in text)
        return data.decode("utf-8", errors=self.errors)

    def _ordinary_token(self, token_id: int) -> str:
        return self.decoder.get(token_id, "")

    def _ordinary_id(self, token: str) -> int | None:
        return self.encoder.get(token)

    # --- saving --------------------------------------------------------------------------------------------------

    def _save_model_files(self, folder: Path) -> list[Path]:
        write_json(folder / VOCAB_FILE, self.encoder)
        atomic_write_text(folder / MERGES_FILE, merges_txt_text(self.merges))
        added = {token: i for token, i in self.added_tokens_encoder.items() if token not in self.encoder}
        write_json(folder / ADDED_TOKENS_FILE, added)
        return [folder / VOCAB_FILE, folder / MERGES_FILE, folder / ADDED_TOKENS_FILE]
