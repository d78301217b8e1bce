"""The files of a Transformers Whisper tokenizer: reading them into a TokenizerData, writing them back, and what
they imply (the special-token layout, the added tokens a file may lack, the first BPE merge some files lost).

vocab.json + merges.txt (the slow tokenizer's files) and tokenizer.json (the fast one's) hold the same BPE; the
companion files (added_tokens.json, special_tokens_map.json, tokenizer_config.json, normalizer.json) are optional.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from whisper_multi.errors import TokenizerError
from whisper_multi.jsonfile import atomic_write_text
from whisper_multi.text.special_tokens import (
    LANGUAGES,
    NUM_TIMESTAMP_TOKENS,
    SpecialTokens,
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

# Configuration keys read from tokenizer_config.json and written back by save_pretrained.
_CONFIG_KEYS = ("language", "task", "predict_timestamps", "add_prefix_space", "clean_up_tokenization_spaces", "errors")


# ---------------------------------------------------------------------------------------------------------------
# Reading and writing
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


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise TokenizerError(f"cannot read tokenizer file {path}: {error.strerror or error}") from error


def read_json_file(path: Path) -> Any:
    text = _read_text(path)
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
    text = _read_text(path)
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
            write_json(json_file, data.tokenizer_json)
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
# Special tokens the files imply
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


def token_text(value: Any) -> str | None:
    # special_tokens_map.json stores either "<|endoftext|>" or {"content": "<|endoftext|>", ...}.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None
