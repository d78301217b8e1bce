"""WhisperTokenizerFast: Whisper's tokenizer over the ``tokenizers`` library.

The library does the byte-level BPE; the Whisper rules (prefix tokens, prompts, timestamps, offsets) are the shared
ones of ``tokenizer_base``, so both tokenizers give the same ids and the same text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

from whisper_multi.errors import TokenizerError
from whisper_multi.jsonfile import atomic_write_text
from whisper_multi.text.tokenizer_base import WhisperTokenizerBase
from whisper_multi.text.tokenizer_files import ENDOFTEXT, TOKENIZER_FILE, TokenizerData, load_data_from_paths

__all__ = ["WhisperTokenizerFast"]


def _tokenizer_from_json(data: TokenizerData, merges: list[tuple[str, str]]) -> Tokenizer:
    """The library's tokenizer from a parsed tokenizer.json, with the merges in use (perhaps repaired)."""
    content = dict(data.tokenizer_json or {})
    if merges != data.merges:
        model = dict(content["model"])
        strings = bool(model["merges"]) and isinstance(model["merges"][0], str)
        model["merges"] = [f"{a} {b}" for a, b in merges] if strings else [[a, b] for a, b in merges]
        content["model"] = model
    try:
        return Tokenizer.from_str(json.dumps(content))
    except Exception as error:  # the library raises plain Exceptions for every kind of bad file
        raise TokenizerError(
            f"tokenizer file {data.source} cannot be loaded by the tokenizers library: {error}"
        ) from error


def _tokenizer_from_vocab(data: TokenizerData, merges: list[tuple[str, str]]) -> Tokenizer:
    """A byte-level BPE tokenizer, as Transformers builds it from vocab.json + merges.txt."""
    try:
        tokenizer = Tokenizer(models.BPE(vocab=data.vocab, merges=merges, fuse_unk=False))
    except Exception as error:
        raise TokenizerError(f"tokenizer files of {data.source} do not form a BPE model: {error}") from error
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _runs(tokens: list[tuple[str, int]], special_ids: set[int]) -> list[tuple[bool, list[str]]]:
    """Consecutive tokens grouped by whether they are special, so each group is added in one call."""
    runs: list[tuple[bool, list[str]]] = []
    for text, token_id in tokens:
        is_special = token_id in special_ids
        if runs and runs[-1][0] == is_special:
            runs[-1][1].append(text)
        else:
            runs.append((is_special, [text]))
    return runs


class WhisperTokenizerFast(WhisperTokenizerBase):
    """Whisper's tokenizer backed by the ``tokenizers`` library (Transformers' WhisperTokenizerFast).

    Args:
        vocab_file, merges_file: vocab.json and merges.txt, used when no tokenizer_file is given.
        normalizer_file: normalizer.json, the English spelling mapping used by ``normalize``.
        tokenizer_file: tokenizer.json.
        The other arguments are the settings both tokenizers take (see ``WhisperTokenizerBase``).
    """

    prefer_tokenizer_json = True

    def __init__(
        self,
        vocab_file: str | os.PathLike[str] | None = None,
        merges_file: str | os.PathLike[str] | None = None,
        normalizer_file: str | os.PathLike[str] | None = None,
        tokenizer_file: str | os.PathLike[str] | None = None,
        unk_token: str = ENDOFTEXT,
        bos_token: str = ENDOFTEXT,
        eos_token: str = ENDOFTEXT,
        pad_token: str | None = None,
        add_prefix_space: bool = False,
        language: str | None = None,
        task: str | None = None,
        predict_timestamps: bool = False,
        repair_merges: bool = True,
        clean_up_tokenization_spaces: bool = False,
        _data: TokenizerData | None = None,
    ) -> None:
        if _data is None:
            _data = load_data_from_paths(vocab_file, merges_file, tokenizer_file, normalizer_file, True)
        self._setup(_data, locals())

    @property
    def backend_tokenizer(self) -> Tokenizer:
        """The ``tokenizers.Tokenizer`` doing the work."""
        return self._tokenizer

    # --- the BPE -------------------------------------------------------------------------------------------------

    def _build(self, data: TokenizerData) -> None:
        if data.tokenizer_json is not None:
            tokenizer = _tokenizer_from_json(data, self.merges)
        else:
            tokenizer = _tokenizer_from_vocab(data, self.merges)
        # Our encode adds the prefix itself and never truncates or pads behind the caller's back.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._add_missing_tokens(data.source)
        self._prefix_changed()

    def _add_missing_tokens(self, source: str) -> None:
        """Register every added token with the library at the id of the Whisper layout (timestamps are often absent)."""
        special_ids = set(self.special.named_tokens().values())
        present = {i: token.content for i, token in self._tokenizer.get_added_tokens_decoder().items()}
        missing = [(text, i) for text, i in self.added_tokens_encoder.items() if present.get(i) != text]
        # The library numbers new tokens after the largest id, so adding in id order gives the layout's ids.
        for is_special, group in _runs(sorted(missing, key=lambda item: item[1]), special_ids):
            tokens = [
                AddedToken(text, lstrip=False, rstrip=False, normalized=False, special=is_special) for text in group
            ]
            if is_special:
                self._tokenizer.add_special_tokens(tokens)
            else:
                self._tokenizer.add_tokens(tokens)
        for text, expected in self.added_tokens_encoder.items():
            found = self._tokenizer.token_to_id(text)
            if found != expected:
                raise TokenizerError(f"tokenizer file {source}: {text} has id {found}; expected {expected}")

    def _prefix_changed(self) -> None:
        # Keep the library's post-processor in step, so tokenizer.json users get the same prefix.
        if not hasattr(self, "_tokenizer"):
            return
        prefix = [(self._id_to_token(i), i) for i in self.prefix_tokens]
        eos = (ENDOFTEXT, self.special.eot)
        template = " ".join(text for text, _ in prefix)
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{template} $A:0 {ENDOFTEXT}:0",
            pair=f"{template} $A:0 $B:1 {ENDOFTEXT}:1",
            special_tokens=list(dict([*prefix, eos]).items()),
        )

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def _encode_text(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def _decode_ordinary(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=False)

    def _ordinary_token(self, token_id: int) -> str:
        return self._tokenizer.id_to_token(token_id) or ""

    def _ordinary_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    # --- saving --------------------------------------------------------------------------------------------------

    def _save_model_files(self, folder: Path) -> list[Path]:
        atomic_write_text(folder / TOKENIZER_FILE, self._tokenizer.to_str(pretty=True))
        return [folder / TOKENIZER_FILE]
