"""WhisperTokenizerBase: the tokenizer API that WhisperTokenizer and WhisperTokenizerFast share.

The two tokenizers differ only in how ordinary text becomes ids (pure-Python BPE or the ``tokenizers`` library)
and how runs of ordinary ids become text. Everything Whisper-specific is written once here: the special-token
layout (from ``special_tokens``), the decoder prefix, prompt ids, timestamp rendering and offsets, saving. The
behaviour follows Transformers' WhisperTokenizer, whose documentation defines the public API.

No framework is imported: ids may arrive as lists, numpy arrays or framework tensors, and are read through their
``tolist()`` method.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from whisper_multi.errors import TokenizerError
from whisper_multi.hub import FileGroup, HubOptions, optional_files, resolve
from whisper_multi.text.decoded_text import (
    SEGMENT_SIZE,
    TIMESTAMP_TEXT,
    clean_up_tokenization,
    compute_offsets,
    decode_with_timestamps,
)
from whisper_multi.text.special_tokens import NUM_TIMESTAMP_TOKENS, normalize_language, normalize_task
from whisper_multi.text.token_ids import ids_as_tensor, to_id_list
from whisper_multi.text.tokenizer_files import (
    ADDED_TOKENS_FILE,
    ENDOFTEXT,
    MERGES_FILE,
    NORMALIZER_FILE,
    SPECIAL_TOKENS_MAP_FILE,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
    VOCAB_FILE,
    TokenizerData,
    check_first_merge,
    complete_added_tokens,
    infer_special_layout,
    load_pretrained_data,
    token_text,
    write_json,
)

_Tokenizer = TypeVar("_Tokenizer", bound="WhisperTokenizerBase")


def tokenizer_file_groups(prefer_tokenizer_json: bool) -> list[FileGroup]:
    """The files a tokenizer reads, for fetching from the Hub: its own BPE files (the other tokenizer's when a
    repository has only those), then the companion files a repository may have."""
    fast, slow = (TOKENIZER_FILE,), (VOCAB_FILE, MERGES_FILE)
    preferred = (fast, slow) if prefer_tokenizer_json else (slow, fast)
    companions = (ADDED_TOKENS_FILE, SPECIAL_TOKENS_MAP_FILE, TOKENIZER_CONFIG_FILE, NORMALIZER_FILE)
    return [FileGroup(preferred, "tokenizer files"), *optional_files(*companions)]


def _special_token_id(attribute: str) -> Any:
    """A property: the id of the token named by ``attribute`` ("eos_token" ...), None while that is None."""
    return property(lambda self: self._token_id_or_none(getattr(self, attribute)))


class WhisperTokenizerBase:
    """Whisper's tokenizer API over an implementation of ordinary-text encoding and decoding.

    Settings that both tokenizers take:
        unk_token, bos_token, eos_token: all "<|endoftext|>" in Whisper.
        pad_token: None unless set here or in special_tokens_map.json (the published files use "<|endoftext|>").
        add_prefix_space: put a space before the text, so its first word is encoded as any other.
        language: name, code or token of the language put in the prefix ("spanish", "es", "<|es|>").
        task: "transcribe" or "translate", put in the prefix.
        predict_timestamps: leave <|notimestamps|> out of the prefix.
        repair_merges: restore the first merge "Ġ t" when the files lack it (a warning says so either way).
        clean_up_tokenization_spaces: remove spaces before punctuation when decoding, as Transformers' clean-up.

    Subclasses set up their BPE in ``_build`` and implement ``_encode_text`` (text, which may contain added tokens,
    to ids), ``_decode_ordinary`` (ids below the added tokens to text), ``_ordinary_token``/``_ordinary_id``
    (id <-> token string), ``vocab_size`` and ``_save_model_files``.
    """

    prefer_tokenizer_json = False
    model_input_names: ClassVar[list[str]] = ["input_ids", "attention_mask"]

    def _setup(self, data: TokenizerData, settings: Mapping[str, Any]) -> None:
        """Build the tokenizer from its files and the settings above, read by name from the constructor's
        arguments (``settings``: its ``locals()``)."""
        self.special = infer_special_layout(data)
        self.merges = check_first_merge(data, settings["repair_merges"])
        self.added_tokens_encoder: dict[str, int] = complete_added_tokens(data, self.special)
        self.added_tokens_decoder: dict[int, str] = {i: t for t, i in self.added_tokens_encoder.items()}
        self.english_spelling_normalizer = data.english_spelling_normalizer
        self.unk_token, self.bos_token = settings["unk_token"], settings["bos_token"]
        self.eos_token, self.pad_token = settings["eos_token"], settings["pad_token"]
        self.add_prefix_space = settings["add_prefix_space"]
        self.clean_up_tokenization_spaces = settings["clean_up_tokenization_spaces"]
        self.language: str | None = None
        self.task: str | None = None
        self.predict_timestamps = False
        self.set_prefix_tokens(settings["language"], settings["task"], settings["predict_timestamps"])
        self._build(data)
        self._length = max(self.added_tokens_decoder) + 1
        # Transformers' published files list <|endoftext|> and the named tokens as special; timestamps are not.
        named = self.special.named_tokens()
        self._special_ids = frozenset(named.values())
        self.all_special_ids: list[int] = sorted(named.values())
        self.all_special_tokens: list[str] = [self.added_tokens_decoder[i] for i in self.all_special_ids]
        self.additional_special_tokens: list[str] = [t for t in self.all_special_tokens if t != ENDOFTEXT]

    @classmethod
    def from_pretrained(
        cls: type[_Tokenizer],
        pretrained_model_name_or_path: str | os.PathLike[str],
        **kwargs: Any,
    ) -> _Tokenizer:
        """Load from a local directory, or a Hub repository by name ("openai/whisper-tiny.en", see
        ``whisper_multi.hub``), holding tokenizer.json or vocab.json + merges.txt, and companion files.

        Each tokenizer reads its own files when both are there (the fast one tokenizer.json, the slow one
        vocab.json + merges.txt) and the others' otherwise; from the Hub only the files it reads are fetched. Other
        keyword arguments override the settings of tokenizer_config.json and special_tokens_map.json.
        """
        options = HubOptions.take(kwargs)
        directory = resolve(pretrained_model_name_or_path, tokenizer_file_groups(cls.prefer_tokenizer_json), options)
        data = load_pretrained_data(directory, prefer_tokenizer_json=cls.prefer_tokenizer_json)
        return cls(_data=data, **cls._init_options(data, kwargs))  # type: ignore[call-arg]  # each subclass takes _data

    @staticmethod
    def _init_options(data: TokenizerData, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Constructor options: the files' settings, overridden by explicit arguments."""
        options: dict[str, Any] = {}
        for key in ("unk_token", "bos_token", "eos_token", "pad_token"):
            text = token_text(data.special_tokens_map.get(key))
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

    eos_token_id = _special_token_id("eos_token")
    bos_token_id = _special_token_id("bos_token")
    unk_token_id = _special_token_id("unk_token")
    pad_token_id = _special_token_id("pad_token")

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
            text = TIMESTAMP_TEXT.sub("", text)
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
        segment_size: int = SEGMENT_SIZE,
    ) -> str:
        """Text with each timestamp written "<|1.08|>"; times keep growing across concatenated 30 s windows."""

        def decode(ids: list[int]) -> str:
            return self.decode(ids, skip_special_tokens=skip_special_tokens)

        begin = self.special.timestamp_begin
        return decode_with_timestamps(token_ids, begin, decode, time_precision, segment_size)

    def _compute_offsets(
        self, token_ids: Any, time_precision: float = 0.02, segment_size: int = SEGMENT_SIZE
    ) -> list[dict]:
        """[{"text", "timestamp": (start, end)}] for each run of text between a pair of timestamp tokens."""

        def decode_text(ids: list[int]) -> str:
            return self._decode_text(ids, skip_special_tokens=False, clean_up=False)

        begin = self.special.timestamp_begin
        return compute_offsets(to_id_list(token_ids), begin, decode_text, time_precision, segment_size)

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
