"""What WhisperTokenizer and WhisperTokenizerFast share: files, special tokens, prefixes and decoding rules.

The two tokenizers differ only in how ordinary text becomes ids (pure-Python BPE or the ``tokenizers`` library)
and how runs of ordinary ids become text. Everything Whisper-specific is written once here: reading and writing
the Transformers tokenizer files, the special-token layout (from ``special_tokens``), the decoder prefix,
prompt ids, timestamp rendering and offsets. The behaviour follows Transformers' WhisperTokenizer, whose
documentation defines the public API.

No framework is imported: ids may arrive as lists, numpy arrays or framework tensors, and are read through their
``tolist()`` method.
"""

from __future__ import annotations

import json
import operator
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from whisper_multi.backends import to_tensor
from whisper_multi.errors import TokenizerError
from whisper_multi.jsonfile import atomic_write_text
from whisper_multi.text.special_tokens import (
    LANGUAGES,
    NUM_TIMESTAMP_TOKENS,
    SpecialTokens,
    normalize_language,
    normalize_task,
    special_tokens_for_vocab,
)

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_FILE = "tokenizer.json"
ADDED_TOKENS_FILE = "added_tokens.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
NORMALIZER_FILE = "normalizer.json"

ENDOFTEXT = "<|endoftext|>"
# GPT-2's first merge, shared by Whisper's English and multilingual BPEs. Some published multilingual files lost
# it, so " t" is never formed and every word starting with "t" after a space is split differently from the
# vocabulary the model was trained with.
EXPECTED_FIRST_MERGE = ("Ġ", "t")
MERGES_HEADER = "#version: 0.2"

# Tokens rendered as text by decode() and removed again unless timestamps are asked for (as Transformers does).
_TIMESTAMP_TEXT = re.compile(r"<\|(\d+\.\d+)\|>")

# Configuration keys read from tokenizer_config.json and written back by save_pretrained.
_CONFIG_KEYS = ("language", "task", "predict_timestamps", "add_prefix_space", "clean_up_tokenization_spaces", "errors")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: each byte maps to a printable character so merges never meet whitespace.

    Printable Latin-1 bytes map to themselves; the other 68 bytes take the code points from 256 on, in byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {byte: chr(byte) for byte in printable}
    shifted = (byte for byte in range(256) if byte not in mapping)
    for offset, byte in enumerate(shifted):
        mapping[byte] = chr(256 + offset)
    return dict(sorted(mapping.items()))


BYTE_ENCODER: dict[int, str] = bytes_to_unicode()
BYTE_DECODER: dict[str, int] = {char: byte for byte, char in BYTE_ENCODER.items()}


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TokenizerData:
    """Everything read from a tokenizer's files, before either implementation builds its encoder."""

    vocab: dict[str, int]
    merges: list[tuple[str, str]]
    added_tokens: dict[str, int] = field(default_factory=dict)
    special_tokens_map: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    english_spelling_normalizer: dict[str, str] | None = None
    tokenizer_json: dict[str, Any] | None = None  # the parsed tokenizer.json, when that was the source
    source: str = "<memory>"


def read_json_file(path: Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise TokenizerError(f"cannot read tokenizer file {path}: {error.strerror or error}") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise TokenizerError(
            f"tokenizer file {path} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from error


def _expect(condition: bool, path: Path | str, message: str) -> None:
    if not condition:
        raise TokenizerError(f"tokenizer file {path}: {message}")


def _read_json_object(path: Path) -> dict[str, Any]:
    data = read_json_file(path)
    _expect(isinstance(data, dict), path, f"expected a JSON object, found {type(data).__name__}")
    return data


def _check_vocab(vocab: Any, path: Path | str) -> dict[str, int]:
    _expect(
        isinstance(vocab, dict), path, f"the vocabulary must be an object of token -> id, found {type(vocab).__name__}"
    )
    bad = next(((t, i) for t, i in vocab.items() if not isinstance(i, int) or isinstance(i, bool) or i < 0), None)
    _expect(bad is None, path, f"token {bad and bad[0]!r} has id {bad and bad[1]!r}; ids must be integers >= 0")
    return vocab


def _parse_merge(merge: Any, path: Path | str, index: int) -> tuple[str, str]:
    # tokenizer.json holds "a b" strings (older files) or ["a", "b"] pairs (tokenizers >= 0.20).
    parts = merge.split(" ") if isinstance(merge, str) else merge
    ok = isinstance(parts, list | tuple) and len(parts) == 2 and all(isinstance(p, str) and p for p in parts)
    _expect(ok, path, f"merge {index} is {merge!r}; expected two tokens")
    return (parts[0], parts[1])


def read_merges_txt(path: Path) -> list[tuple[str, str]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise TokenizerError(f"cannot read tokenizer file {path}: {error.strerror or error}") from error
    # Split on "\n" only: str.splitlines() would also break on characters that may appear inside tokens.
    lines = [line.rstrip("\r") for line in text.split("\n")]
    lines = [line for line in lines if line and not line.startswith("#version")]
    return [_parse_merge(line, path, index) for index, line in enumerate(lines)]


def read_tokenizer_json(path: Path) -> TokenizerData:
    data = _read_json_object(path)
    model: Any = data.get("model")
    _expect(isinstance(model, dict), path, "has no 'model' object")
    _expect(model.get("type", "BPE") == "BPE", path, f"model type is {model.get('type')!r}; expected 'BPE'")
    vocab = _check_vocab(model.get("vocab"), path)
    raw_merges = model.get("merges")
    _expect(isinstance(raw_merges, list), path, "model.merges must be a list")
    merges = [_parse_merge(m, path, i) for i, m in enumerate(raw_merges)]
    added = data.get("added_tokens") or []
    _expect(isinstance(added, list), path, "added_tokens must be a list")
    added_tokens: dict[str, int] = {}
    for entry in added:
        ok = isinstance(entry, dict) and isinstance(entry.get("content"), str) and isinstance(entry.get("id"), int)
        _expect(ok, path, f"added token {entry!r} needs a string 'content' and an integer 'id'")
        added_tokens[entry["content"]] = entry["id"]
    return TokenizerData(vocab, merges, added_tokens, tokenizer_json=data, source=str(path))


def read_vocab_and_merges(vocab_file: Path, merges_file: Path) -> TokenizerData:
    vocab = _check_vocab(read_json_file(vocab_file), vocab_file)
    return TokenizerData(vocab, read_merges_txt(merges_file), source=str(vocab_file))


def read_optional_files(
    data: TokenizerData,
    added_tokens_file: Path | None = None,
    special_tokens_map_file: Path | None = None,
    tokenizer_config_file: Path | None = None,
    normalizer_file: Path | None = None,
) -> TokenizerData:
    """Add what the companion files say; each is optional, but one that exists must be well formed."""
    if added_tokens_file is not None:
        added = _read_json_object(added_tokens_file)
        _check_vocab(added, added_tokens_file)
        data.added_tokens.update(added)
    if special_tokens_map_file is not None:
        data.special_tokens_map = _read_json_object(special_tokens_map_file)
    if tokenizer_config_file is not None:
        config = _read_json_object(tokenizer_config_file)
        data.config = {key: config[key] for key in _CONFIG_KEYS if key in config}
        decoder = config.get("added_tokens_decoder") or {}
        _expect(isinstance(decoder, dict), tokenizer_config_file, "added_tokens_decoder must be an object")
        for token_id, entry in decoder.items():
            ok = isinstance(entry, dict) and isinstance(entry.get("content"), str) and str(token_id).isdigit()
            _expect(ok, tokenizer_config_file, f"added_tokens_decoder entry {token_id!r} is malformed")
            data.added_tokens.setdefault(entry["content"], int(token_id))
    if normalizer_file is not None:
        mapping = _read_json_object(normalizer_file)
        _expect(all(isinstance(v, str) for v in mapping.values()), normalizer_file, "values must be strings")
        data.english_spelling_normalizer = mapping
    return data


def _existing(directory: Path, name: str) -> Path | None:
    path = directory / name
    return path if path.is_file() else None


def load_pretrained_data(directory: str | os.PathLike[str], prefer_tokenizer_json: bool) -> TokenizerData:
    """Read a tokenizer directory written by Transformers (or by save_pretrained).

    Either vocab.json + merges.txt or tokenizer.json must be present; the fast tokenizer prefers tokenizer.json,
    the slow one vocab.json + merges.txt, and each falls back to the other's files.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise TokenizerError(f"tokenizer directory {folder} does not exist; expected a directory of tokenizer files")
    tokenizer_json = _existing(folder, TOKENIZER_FILE)
    vocab, merges = _existing(folder, VOCAB_FILE), _existing(folder, MERGES_FILE)
    has_pair = vocab is not None and merges is not None
    if tokenizer_json is not None and (prefer_tokenizer_json or not has_pair):
        data = read_tokenizer_json(tokenizer_json)
    elif has_pair:
        data = read_vocab_and_merges(vocab, merges)  # type: ignore[arg-type]
    else:
        missing = VOCAB_FILE if vocab is None else MERGES_FILE
        raise TokenizerError(
            f"no {TOKENIZER_FILE} and no {missing} in {folder}; expected {TOKENIZER_FILE} or {VOCAB_FILE} + {MERGES_FILE}"
        )
    return read_optional_files(
        data,
        added_tokens_file=_existing(folder, ADDED_TOKENS_FILE),
        special_tokens_map_file=_existing(folder, SPECIAL_TOKENS_MAP_FILE),
        tokenizer_config_file=_existing(folder, TOKENIZER_CONFIG_FILE),
        normalizer_file=_existing(folder, NORMALIZER_FILE),
    )


def load_data_from_paths(
    vocab_file: str | os.PathLike[str] | None,
    merges_file: str | os.PathLike[str] | None,
    tokenizer_file: str | os.PathLike[str] | None,
    normalizer_file: str | os.PathLike[str] | None,
    prefer_tokenizer_json: bool,
) -> TokenizerData:
    """Read the files a constructor was given by path (Transformers' constructor arguments)."""
    has_pair = vocab_file is not None and merges_file is not None
    if tokenizer_file is not None and (prefer_tokenizer_json or not has_pair):
        data = read_tokenizer_json(Path(tokenizer_file))
    elif has_pair:
        data = read_vocab_and_merges(Path(vocab_file), Path(merges_file))  # type: ignore[arg-type]
    else:
        raise TokenizerError("no tokenizer files given; pass vocab_file and merges_file, or tokenizer_file")
    return read_optional_files(data, normalizer_file=Path(normalizer_file) if normalizer_file is not None else None)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def merges_txt_text(merges: Iterable[tuple[str, str]]) -> str:
    return "\n".join([MERGES_HEADER, *(f"{a} {b}" for a, b in merges)]) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# The missing first merge
# ---------------------------------------------------------------------------------------------------------------


def lacks_first_merge(merges: Sequence[tuple[str, str]], vocab: dict[str, int]) -> bool:
    """True when "Ġt" is a token but the merge that forms it ("Ġ t") is absent."""
    joined = "".join(EXPECTED_FIRST_MERGE)
    return joined in vocab and tuple(EXPECTED_FIRST_MERGE) not in set(merges)


def repaired_merges(merges: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The merges with "Ġ t" restored in first place, where Whisper's BPE has it; unchanged if already there."""
    merges = [tuple(m) for m in merges]  # type: ignore[misc]
    if EXPECTED_FIRST_MERGE in merges:
        return list(merges)  # type: ignore[arg-type]
    return [EXPECTED_FIRST_MERGE, *merges]  # type: ignore[list-item]


def repair_first_merge_in_files(directory: Path) -> list[str]:
    """Restore the first merge "Ġ t" in ``directory``'s tokenizer.json and merges.txt where the vocabulary has "Ġt"
    but the merges lack it (files written for some converted checkpoints); returns the names of the files fixed.
    Each fixed file is rewritten atomically; files that cannot be read are left alone."""
    fixed = []
    json_file, merges_file = Path(directory) / "tokenizer.json", Path(directory) / "merges.txt"
    vocab: dict[str, int] = {}
    if json_file.is_file():
        data = read_tokenizer_json(json_file)
        vocab = data.vocab
        if data.tokenizer_json is not None and lacks_first_merge(data.merges, vocab):
            raw = data.tokenizer_json["model"]["merges"]
            first = " ".join(EXPECTED_FIRST_MERGE) if not raw or isinstance(raw[0], str) else list(EXPECTED_FIRST_MERGE)
            data.tokenizer_json["model"]["merges"] = [first, *raw]
            atomic_write_text(json_file, json.dumps(data.tokenizer_json, ensure_ascii=False, indent=2) + "\n")
            fixed.append(json_file.name)
    vocab_file = Path(directory) / "vocab.json"
    if not vocab and vocab_file.is_file():
        vocab = _check_vocab(read_json_file(vocab_file), vocab_file)
    if merges_file.is_file() and vocab:
        merges = read_merges_txt(merges_file)
        if lacks_first_merge(merges, vocab):
            atomic_write_text(merges_file, merges_txt_text(repaired_merges(merges)))
            fixed.append(merges_file.name)
    return fixed


def check_first_merge(data: TokenizerData, repair_merges: bool) -> list[tuple[str, str]]:
    """The merges to use: warn when the first merge is missing, and restore it unless told not to."""
    if not lacks_first_merge(data.merges, data.vocab):
        return data.merges
    action = (
        "it has been restored (pass repair_merges=False to keep the file as it is)"
        if repair_merges
        else "text is encoded as the file says, which differs from the ids Whisper was trained on "
        "(pass repair_merges=True to restore it)"
    )
    warnings.warn(
        f"the BPE merges of {data.source} lack the first merge 'Ġ t' although 'Ġt' is in the vocabulary; {action}",
        UserWarning,
        stacklevel=4,
    )
    return repaired_merges(data.merges) if repair_merges else data.merges


# ---------------------------------------------------------------------------------------------------------------
# Special tokens
# ---------------------------------------------------------------------------------------------------------------


def _timestamp_text(index: int) -> str:
    return f"<|{index * 0.02:.2f}|>"


def infer_special_layout(data: TokenizerData) -> SpecialTokens:
    """The special-token layout of the files, from the id of <|endoftext|> and the number of language tokens."""
    eot = data.added_tokens.get(ENDOFTEXT, data.vocab.get(ENDOFTEXT))
    if eot is None:
        raise TokenizerError(f"tokenizer file {data.source}: {ENDOFTEXT} is neither in the vocabulary nor added")
    known = data.added_tokens.keys() | data.vocab.keys()
    # Without added tokens in the files, nothing tells v3's 100 languages from 99; 99 is the common case.
    num_languages = 100 if "<|yue|>" in known else len(LANGUAGES) - 1
    # eot, sot, languages, translate, transcribe, startoflm, startofprev, nospeech, notimestamps, timestamps
    vocab_size = eot + 2 + num_languages + 6 + NUM_TIMESTAMP_TOKENS
    try:
        return special_tokens_for_vocab(vocab_size)
    except TokenizerError as error:
        raise TokenizerError(f"tokenizer file {data.source}: {ENDOFTEXT} has id {eot}; {error}") from None


def expected_added_tokens(layout: SpecialTokens) -> tuple[dict[str, int], dict[str, int]]:
    """(named special tokens, timestamp tokens) of a layout, text -> id."""
    timestamps = {_timestamp_text(i): layout.timestamp_begin + i for i in range(NUM_TIMESTAMP_TOKENS)}
    return layout.named_tokens(), timestamps


def complete_added_tokens(data: TokenizerData, layout: SpecialTokens) -> dict[str, int]:
    """The file's added tokens plus any special or timestamp token it lacks; a token at a wrong id is an error.

    Where the file holds another text at a special id, the file's text is kept, as Transformers would decode it.
    """
    named, timestamps = expected_added_tokens(layout)
    complete = dict(data.added_tokens)
    held = set(complete.values())
    for text, token_id in {**named, **timestamps}.items():
        found = complete.get(text, data.vocab.get(text))
        if found is not None and found != token_id:
            raise TokenizerError(
                f"tokenizer file {data.source}: {text} has id {found}; Whisper's {layout.vocab_size}-token "
                f"vocabulary puts it at {token_id}"
            )
        if found is None and token_id in held:
            continue  # the file names this id differently (older files write "<|iw|>" for Hebrew): keep its name
        complete[text] = token_id
    return dict(sorted(complete.items(), key=lambda item: item[1]))


def _token_text(value: Any) -> str | None:
    # special_tokens_map.json stores either "<|endoftext|>" or {"content": "<|endoftext|>", ...}.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def to_id_list(token_ids: Any) -> list[int]:
    """A flat list of Python ints from an int, a sequence, a numpy array or a framework tensor."""
    if hasattr(token_ids, "tolist"):  # numpy arrays and framework tensors (moved to host by their own tolist)
        token_ids = token_ids.tolist()
    if isinstance(token_ids, int):
        return [operator.index(token_ids)]
    if not isinstance(token_ids, Iterable) or isinstance(token_ids, str | bytes):
        raise TokenizerError(f"token ids must be an int or a sequence of ints, got {type(token_ids).__name__}")
    ids = []
    for value in token_ids:
        if hasattr(value, "tolist") and not isinstance(value, int):
            value = value.tolist()
        if isinstance(value, list):
            raise TokenizerError("decode() takes one sequence of token ids; use batch_decode() for a batch")
        try:
            ids.append(operator.index(value))
        except TypeError:
            raise TokenizerError(f"token id {value!r} is not an integer") from None
    return ids


def clean_up_tokenization(text: str) -> str:
    """Transformers' clean-up of spaces before punctuation and English contractions."""
    for before, after in (
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
        (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
    ):  # fmt: skip
        text = text.replace(before, after)
    return text


# ---------------------------------------------------------------------------------------------------------------
# The shared base class
# ---------------------------------------------------------------------------------------------------------------


class WhisperTokenizerBase:
    """Whisper's tokenizer API over an implementation of ordinary-text encoding and decoding.

    Subclasses set up their BPE in ``_build`` and implement ``_encode_text`` (text, which may contain added tokens,
    to ids), ``_decode_ordinary`` (ids below the added tokens to text), ``_ordinary_token``/``_ordinary_id``
    (id <-> token string), ``vocab_size`` and ``_save_model_files``.
    """

    prefer_tokenizer_json = False
    model_input_names: ClassVar[list[str]] = ["input_ids", "attention_mask"]

    def _setup(
        self,
        data: TokenizerData,
        *,
        unk_token: str = ENDOFTEXT,
        bos_token: str = ENDOFTEXT,
        eos_token: str = ENDOFTEXT,
        pad_token: str | None = None,
        add_prefix_space: bool = False,
        language: str | None = None,
        task: str | None = None,
        predict_timestamps: bool = False,
        clean_up_tokenization_spaces: bool = False,
        repair_merges: bool = True,
    ) -> None:
        self.special = infer_special_layout(data)
        self.merges = check_first_merge(data, repair_merges)
        self.added_tokens_encoder: dict[str, int] = complete_added_tokens(data, self.special)
        self.added_tokens_decoder: dict[int, str] = {i: t for t, i in self.added_tokens_encoder.items()}
        self.english_spelling_normalizer = data.english_spelling_normalizer
        self.unk_token, self.bos_token, self.eos_token, self.pad_token = unk_token, bos_token, eos_token, pad_token
        self.add_prefix_space = add_prefix_space
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.language: str | None = None
        self.task: str | None = None
        self.predict_timestamps = False
        self.set_prefix_tokens(language=language, task=task, predict_timestamps=predict_timestamps)
        self._build(data)
        self._length = max(self.added_tokens_decoder) + 1
        # Transformers' published files list <|endoftext|> and the named tokens as special; timestamps are not.
        named = self.special.named_tokens()
        self._special_ids = frozenset(named.values())
        self.all_special_ids: list[int] = sorted(named.values())
        self.all_special_tokens: list[str] = [self.added_tokens_decoder[i] for i in self.all_special_ids]
        self.additional_special_tokens: list[str] = [t for t in self.all_special_tokens if t != ENDOFTEXT]

    @staticmethod
    def _init_options(data: TokenizerData, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Constructor options: the files' settings, overridden by explicit arguments."""
        options: dict[str, Any] = {}
        for key in ("unk_token", "bos_token", "eos_token", "pad_token"):
            text = _token_text(data.special_tokens_map.get(key))
            if text is not None:
                options[key] = text
        options.update({k: v for k, v in data.config.items() if k != "errors"})
        options.update(kwargs)
        return options

    # --- implemented by each tokenizer ---------------------------------------------------------------------------

    def _build(self, data: TokenizerData) -> None:
        raise NotImplementedError

    def _encode_text(self, text: str) -> list[int]:
        raise NotImplementedError

    def _decode_ordinary(self, ids: list[int]) -> str:
        raise NotImplementedError

    def _ordinary_token(self, token_id: int) -> str:
        raise NotImplementedError

    def _ordinary_id(self, token: str) -> int | None:
        raise NotImplementedError

    def _save_model_files(self, folder: Path) -> list[Path]:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        """Size of the BPE vocabulary without added tokens (50257 English-only, 50258 multilingual)."""
        raise NotImplementedError

    # --- sizes and special tokens --------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Size of the full vocabulary, added tokens included (51864, 51865 or 51866)."""
        return self._length

    @property
    def is_multilingual(self) -> bool:
        return self.special.is_multilingual

    def _token_id_or_none(self, token: str | None) -> int | None:
        return None if token is None else self.convert_tokens_to_ids(token)

    @property
    def eos_token_id(self) -> int | None:
        return self._token_id_or_none(self.eos_token)

    @property
    def bos_token_id(self) -> int | None:
        return self._token_id_or_none(self.bos_token)

    @property
    def unk_token_id(self) -> int | None:
        return self._token_id_or_none(self.unk_token)

    @property
    def pad_token_id(self) -> int | None:
        return self._token_id_or_none(self.pad_token)

    @property
    def timestamp_begin(self) -> int:
        return self.special.timestamp_begin

    def get_vocab(self) -> dict[str, int]:
        vocab = {self._ordinary_token(i): i for i in range(self.vocab_size)}
        vocab.update(self.added_tokens_encoder)
        return vocab

    def get_added_vocab(self) -> dict[str, int]:
        return dict(self.added_tokens_encoder)

    # --- prefix tokens -------------------------------------------------------------------------------------------

    def set_prefix_tokens(
        self, language: str | None = None, task: str | None = None, predict_timestamps: bool | None = None
    ) -> None:
        """Change the tokens put before the text; arguments left as None keep their current value.

        The language may be a name, code or token ("spanish", "es", "<|es|>"). As in Transformers, an English-only
        vocabulary also accepts a language: it holds the language tokens, though its models never saw them.
        """
        if language is not None:
            self.special.language_token(normalize_language(language))  # fail now, not when the prefix is used
            self.language = language
        if task is not None:
            normalize_task(task)
            self.task = task
        if predict_timestamps is not None:
            self.predict_timestamps = predict_timestamps
        self._prefix_changed()

    def _prefix_changed(self) -> None:
        """Hook for the fast tokenizer, whose post-processor mirrors the prefix."""

    @property
    def prefix_tokens(self) -> list[int]:
        """<|startoftranscript|> [<|language|>] [<|task|>] [<|notimestamps|>]."""
        prefix = [self.special.sot]
        if self.language is not None:
            prefix.append(self.special.language_token(normalize_language(self.language)))
        if self.task is not None:
            prefix.append(self.special.task_to_id[normalize_task(self.task)])
        if not self.predict_timestamps:
            prefix.append(self.special.no_timestamps)
        return prefix

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """Prefix tokens + ids (+ the second sequence's ids) + <|endoftext|>."""
        return self.prefix_tokens + list(token_ids_0) + list(token_ids_1 or []) + [self.special.eot]

    def get_special_tokens_mask(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None, already_has_special_tokens: bool = False
    ) -> list[int]:
        """1 for a special token, 0 for a text token, for the sequence build_inputs_with_special_tokens makes."""
        if already_has_special_tokens:
            ids = list(token_ids_0) + list(token_ids_1 or [])
            return [1 if token_id in self._special_ids else 0 for token_id in ids]
        text_length = len(token_ids_0) + len(token_ids_1 or [])
        return [1] * len(self.prefix_tokens) + [0] * text_length + [1]

    def get_decoder_prompt_ids(
        self, task: str | None = None, language: str | None = None, no_timestamps: bool = True
    ) -> list[tuple[int, int]]:
        """(position, id) pairs forcing the prefix after <|startoftranscript|>; sets the prefix, as Transformers."""
        self.set_prefix_tokens(task=task, language=language, predict_timestamps=not no_timestamps)
        return [(position, token_id) for position, token_id in enumerate(self.prefix_tokens[1:], start=1)]

    # --- tokens <-> ids ------------------------------------------------------------------------------------------

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> Any:
        """Id of a token string (or a list of them); an unknown token gives the unknown token's id."""
        if isinstance(tokens, str):
            return self._convert_token_to_id(tokens)
        return [self._convert_token_to_id(token) for token in tokens]

    def _convert_token_to_id(self, token: str) -> int | None:
        if token in self.added_tokens_encoder:
            return self.added_tokens_encoder[token]
        found = self._ordinary_id(token)
        if found is not None:
            return found
        return None if self.unk_token is None else self._convert_token_to_id(self.unk_token)

    def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False) -> Any:
        """Token string of an id (or a list of them)."""
        if isinstance(ids, int) or (hasattr(ids, "ndim") and ids.ndim == 0):
            (token_id,) = self.check_ids(to_id_list(ids))
            return self._id_to_token(token_id)
        checked = self.check_ids(to_id_list(ids))
        return [self._id_to_token(i) for i in checked if not (skip_special_tokens and i in self._special_ids)]

    def _id_to_token(self, token_id: int) -> str:
        if token_id in self.added_tokens_decoder:
            return self.added_tokens_decoder[token_id]
        return self._ordinary_token(token_id)

    def check_ids(self, ids: list[int]) -> list[int]:
        """The ids, if each is within the vocabulary; otherwise a TokenizerError naming the first that is not."""
        size = len(self)
        bad = next((token_id for token_id in ids if not 0 <= token_id < size), None)
        if bad is not None:
            raise TokenizerError(
                f"token id {bad} is outside the vocabulary of {size} tokens (valid ids: 0 ... {size - 1})"
            )
        return ids

    # --- encoding ------------------------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """Token strings of the text, without prefix or <|endoftext|>."""
        return self.convert_ids_to_tokens(self.encode(text, add_special_tokens=False))

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Ids of the text; with add_special_tokens, wrapped in the prefix tokens and <|endoftext|>.

        Special-token text inside ``text`` (such as "<|en|>") becomes that token, as in Transformers.
        """
        if not isinstance(text, str):
            raise TokenizerError(f"text to encode must be a str, got {type(text).__name__}")
        if self.add_prefix_space:
            text = " " + text
        ids = self._encode_text(text)
        return self.build_inputs_with_special_tokens(ids) if add_special_tokens else ids

    def __call__(
        self,
        text: str | list[str],
        add_special_tokens: bool = True,
        padding: bool = False,
        return_tensors: str | None = None,
        return_attention_mask: bool = True,
    ) -> dict[str, Any]:
        """{"input_ids", "attention_mask"} for a text or a batch of texts.

        padding=True pads a batch to its longest sequence with the pad token (<|endoftext|> if none is set);
        return_tensors="np" gives numpy arrays, "pt" / "tf" / "jax" that framework's tensors.
        """
        single = isinstance(text, str)
        texts: list[str] = [text] if isinstance(text, str) else list(text)
        ids = [self.encode(t, add_special_tokens=add_special_tokens) for t in texts]
        masks = [[1] * len(row) for row in ids]
        if padding and ids:
            pad_id = self.pad_token_id if self.pad_token_id is not None else self.special.eot
            longest = max(len(row) for row in ids)
            masks = [mask + [0] * (longest - len(mask)) for mask in masks]
            ids = [row + [pad_id] * (longest - len(row)) for row in ids]
        result: dict[str, Any] = {"input_ids": ids[0] if single else ids}
        if return_attention_mask:
            result["attention_mask"] = masks[0] if single else masks
        if return_tensors is not None:
            # A single text still becomes a batch of one, as Transformers returns.
            result = {key: ids_as_tensor([value] if single else value, return_tensors) for key, value in result.items()}
        return result

    def get_prompt_ids(self, text: str, return_tensors: str | None = "np") -> Any:
        """<|startofprev|> + ids of " " + text.strip(), to pass to generate(prompt_ids=...)."""
        text_ids = self._encode_text(" " + text.strip())
        special = next((i for i in text_ids if i >= self.special.eot), None)
        if special is not None:
            raise TokenizerError(
                f"prompt {text!r} contains the special token {self._id_to_token(special)}; a prompt must be plain text"
            )
        ids = [self.special.sot_prev, *text_ids]
        return ids if return_tensors is None else ids_as_tensor(ids, return_tensors)

    # --- decoding ------------------------------------------------------------------------------------------------

    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        output_offsets: bool = False,
        time_precision: float = 0.02,
        decode_with_timestamps: bool = False,
        normalize: bool = False,
        basic_normalize: bool = False,
        remove_diacritics: bool = False,
    ) -> Any:
        """Text of the ids, as Transformers' WhisperTokenizer.decode.

        Timestamp tokens are dropped from the text unless decode_with_timestamps, which renders them as
        "<|1.08|>" (continuing the time across 30 s segments). skip_special_tokens also drops a prompt
        (<|startofprev|> ... up to <|startoftranscript|>). output_offsets returns {"text", "offsets"} where each
        offset is {"text", "timestamp": (start, end)} for a pair of timestamps. Any id in the vocabulary decodes;
        incomplete UTF-8 becomes U+FFFD.
        """
        ids = self.check_ids(to_id_list(token_ids))
        filtered = self._strip_prompt(ids) if skip_special_tokens else ids
        if decode_with_timestamps:
            text = self._decode_with_timestamps(
                filtered, skip_special_tokens=skip_special_tokens, time_precision=time_precision
            )
        else:
            text = self._decode_text(filtered, skip_special_tokens, clean_up_tokenization_spaces)
            text = _TIMESTAMP_TEXT.sub("", text)
            if normalize:
                text = self.normalize(text)
            elif basic_normalize:
                text = self.basic_normalize(text, remove_diacritics=remove_diacritics)
        if output_offsets:
            return {"text": text, "offsets": self._compute_offsets(ids, time_precision=time_precision)}
        return text

    def batch_decode(self, sequences: Any, **kwargs: Any) -> list[Any]:
        """decode() of each sequence of a batch (a list of lists, a 2-D array or tensor)."""
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(sequence, **kwargs) for sequence in sequences]

    def _decode_text(self, ids: list[int], skip_special_tokens: bool, clean_up: bool | None = None) -> str:
        """Ordinary ids decoded a run at a time (bytes may span tokens); added tokens as their text."""
        pieces: list[str] = []
        run: list[int] = []
        for token_id in ids:
            if token_id not in self.added_tokens_decoder:
                run.append(token_id)
                continue
            if run:
                pieces.append(self._decode_ordinary(run))
                run = []
            if not (skip_special_tokens and token_id in self._special_ids):
                pieces.append(self.added_tokens_decoder[token_id])
        if run:
            pieces.append(self._decode_ordinary(run))
        text = "".join(pieces)
        clean_up = self.clean_up_tokenization_spaces if clean_up is None else clean_up
        return clean_up_tokenization(text) if clean_up else text

    def _strip_prompt(self, ids: list[int]) -> list[int]:
        """Drop a leading prompt: everything before <|startoftranscript|>, or all of it if there is none."""
        if not ids or ids[0] != self.special.sot_prev:
            return ids
        if self.special.sot in ids:
            return ids[ids.index(self.special.sot) :]
        return []

    def _decode_with_timestamps(
        self,
        token_ids: list[int],
        skip_special_tokens: bool = False,
        time_precision: float = 0.02,
        segment_size: int = 1500,
    ) -> str:
        """Text with each timestamp written "<|1.08|>"; times keep growing across concatenated 30 s windows."""
        begin = self.special.timestamp_begin
        outputs: list[Any] = [[]]
        current_max, penultimate, previous_segments = 0.0, 0.0, 0.0
        for i, token in enumerate(token_ids):
            if token < begin:
                outputs[-1].append(token)
                continue
            timestamp = float((token - begin) * time_precision)
            if timestamp < current_max:  # a new window started: carry the time over
                # A window that ended on a single timestamp lasted the full segment; one that ended on a pair
                # ended at its last timestamp, whose duplicate text must go.
                single_ending = i >= 2 and not (token_ids[i - 1] >= begin and token_ids[i - 2] >= begin)
                if single_ending:
                    previous_segments += time_precision * segment_size
                else:
                    current_max = penultimate
                    previous_segments += penultimate
                    outputs = outputs[:-2]
            penultimate, current_max = current_max, timestamp
            outputs.append(f"<|{timestamp + previous_segments:.2f}|>")
            outputs.append([])
        return "".join(
            part if isinstance(part, str) else self.decode(part, skip_special_tokens=skip_special_tokens)
            for part in outputs
        )

    def _compute_offsets(self, token_ids: Any, time_precision: float = 0.02, segment_size: int = 1500) -> list[dict]:
        """[{"text", "timestamp": (start, end)}] for each run of text between a pair of timestamp tokens."""
        ids = to_id_list(token_ids)
        begin = self.special.timestamp_begin
        is_time = [token >= begin for token in ids]
        positions = [i for i, flag in enumerate(is_time) if flag]
        # Slices end after each pair of consecutive timestamps, and after the last timestamp.
        ends = [i + 1 for i in range(len(ids) - 1) if is_time[i] and is_time[i + 1]]
        if not ends and len(positions) <= 1:
            return []
        if positions[-1] + 1 not in ends:
            ends.append(positions[-1] + 1)
        offsets = []
        start_index, current_max, previous_segments = positions[0], 0, 0
        for end_index in ends:
            sliced = ids[start_index:end_index]
            if len(sliced) > 1:
                start_position, end_position = sliced[0] - begin, sliced[-1] - begin
                if start_position < current_max:  # a new window started
                    single_ending = start_index >= 2 and not (is_time[start_index - 2] and is_time[start_index - 1])
                    previous_segments += segment_size if single_ending else current_max
                current_max = end_position
                text = _TIMESTAMP_TEXT.sub("", self._decode_text(sliced, skip_special_tokens=False, clean_up=False))
                offsets.append(
                    {
                        "text": text,
                        "timestamp": (
                            start_position * time_precision + previous_segments * time_precision,
                            end_position * time_precision + previous_segments * time_precision,
                        ),
                    }
                )
            start_index = end_index
        return offsets

    def timestamp_ids(self, time_precision: float = 0.02) -> list[int]:
        """Ids of the timestamp tokens <|0.00|> ... for the given precision."""
        return self.convert_tokens_to_ids([f"<|{i * time_precision:.2f}|>" for i in range(NUM_TIMESTAMP_TOKENS)])

    # --- normalizers ---------------------------------------------------------------------------------------------

    def normalize(self, text: str) -> str:
        """Whisper's English text normalizer, with the spelling mapping of normalizer.json when one was loaded."""
        from whisper_multi.text.normalizers import (
            EnglishTextNormalizer,  # the normalizers are only needed when asked for
        )

        return EnglishTextNormalizer(self.english_spelling_normalizer)(text)

    @staticmethod
    def basic_normalize(text: str, remove_diacritics: bool = False) -> str:
        """Whisper's multilingual basic text normalizer."""
        from whisper_multi.text.normalizers import BasicTextNormalizer

        return BasicTextNormalizer(remove_diacritics=remove_diacritics)(text)

    # --- saving --------------------------------------------------------------------------------------------------

    def _special_tokens_map(self) -> dict[str, Any]:
        tokens: dict[str, Any] = {"bos_token": self.bos_token, "eos_token": self.eos_token, "unk_token": self.unk_token}
        if self.pad_token is not None:
            tokens["pad_token"] = self.pad_token
        tokens["additional_special_tokens"] = self.additional_special_tokens
        return tokens

    def _tokenizer_config(self) -> dict[str, Any]:
        return {
            "tokenizer_class": type(self).__name__,
            "language": self.language,
            "task": self.task,
            "predict_timestamps": self.predict_timestamps,
            "add_prefix_space": self.add_prefix_space,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "model_max_length": 448,
            **self._special_tokens_map(),
        }

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> tuple[str, ...]:
        """Write the tokenizer's files (each atomically) into a directory, creating it; returns the paths."""
        folder = Path(save_directory)
        if folder.exists() and not folder.is_dir():
            raise TokenizerError(f"cannot save the tokenizer to {folder}: it is a file, expected a directory")
        folder.mkdir(parents=True, exist_ok=True)
        written = self._save_model_files(folder)
        write_json(folder / SPECIAL_TOKENS_MAP_FILE, self._special_tokens_map())
        write_json(folder / TOKENIZER_CONFIG_FILE, self._tokenizer_config())
        written += [folder / SPECIAL_TOKENS_MAP_FILE, folder / TOKENIZER_CONFIG_FILE]
        if self.english_spelling_normalizer is not None:
            write_json(folder / NORMALIZER_FILE, self.english_spelling_normalizer)
            written.append(folder / NORMALIZER_FILE)
        return tuple(str(path) for path in written)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, len={len(self)}, "
            f"multilingual={self.is_multilingual}, language={self.language!r}, task={self.task!r}, "
            f"predict_timestamps={self.predict_timestamps})"
        )


def ids_as_tensor(ids: list[Any], return_tensors: str) -> Any:
    """Ids as numpy ("np") or a framework's tensor ("pt", "tf", "jax"), importing that framework only now."""
    import numpy as np

    try:
        array = np.asarray(ids, dtype=np.int64)
    except ValueError:
        raise TokenizerError("sequences of different lengths cannot form one tensor; pass padding=True") from None
    return to_tensor(array, return_tensors, unsupported=TokenizerError)
