"""The speech and transcripts ``evaluate`` measures, from the three places people keep them.

- a folder in Hugging Face's ``audiofolder`` layout: audio files and a ``metadata.csv`` (or ``metadata.jsonl``)
  beside them, one row per file with its ``file_name`` (relative to the folder) and its transcript;
- a folder written by ``Dataset.save_to_disk`` (``state.json``, ``dataset_info.json`` and Arrow files);
- a ``datasets.Dataset`` object.

The transcript is the first of the columns ``TEXT_COLUMNS`` present, unless one is named; the audio is the column
of ``datasets.Audio`` type (else the one named ``audio``), unless one is named. Audio values are read undecoded
(``Audio(decode=False)``) and decoded by ``whisper_multi.audio``, the decoder and resampler of every other input,
so a dataset needs no torchcodec. Every layout and file is checked before any audio is decoded; ``datasets`` is
imported only for the last two sources.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from whisper_multi.audio import DATASET_TEXT_COLUMNS, audio_value_waveform, load_audio
from whisper_multi.errors import BackendError, InputError

TEXT_COLUMNS = DATASET_TEXT_COLUMNS
METADATA_FILES = ("metadata.csv", "metadata.jsonl")
SAVED_DATASET_FILES = ("state.json", "dataset_info.json")
SAVED_DATASET_DICT_FILE = "dataset_dict.json"


@dataclass(frozen=True)
class EvaluationItem:
    """One recording to transcribe: its name in reports, its reference transcript and where its audio is (a file
    path, or a ``datasets`` Audio value)."""

    name: str
    reference: str
    audio: Any

    def waveform(self) -> np.ndarray:
        """The audio as a 16 kHz mono float32 waveform."""
        if isinstance(self.audio, (str, os.PathLike)):
            return load_audio(self.audio)
        return audio_value_waveform(self.audio)


class EvaluationData:
    """The items of one source, in order (each iteration reads them again), with their count known before any
    audio is read."""

    def __init__(self, source: str, count: int, items: Callable[[], Iterator[EvaluationItem]]):
        self.source, self._count, self._items = source, count, items

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[EvaluationItem]:
        return self._items()


def evaluation_data(data: Any, audio_column: str | None = None, text_column: str | None = None) -> EvaluationData:
    """The items of ``data``: an audiofolder or ``save_to_disk`` folder (a path), or a ``datasets.Dataset`` (an
    ``EvaluationData`` is returned as it is)."""
    if isinstance(data, EvaluationData):
        return data
    if isinstance(data, (str, os.PathLike)):
        folder = Path(data)
        if not folder.is_dir():
            raise InputError(
                f"no dataset folder at {folder}: expected an audiofolder (audio files and metadata.csv) or a folder "
                "written by Dataset.save_to_disk"
            )
        if any((folder / name).is_file() for name in METADATA_FILES):
            return audiofolder_data(folder, text_column)
        return _dataset_data(_load_from_disk(folder), str(folder), audio_column, text_column)
    if hasattr(data, "column_names") and hasattr(data, "features") and hasattr(data, "__len__"):
        return _dataset_data(data, type(data).__name__, audio_column, text_column)
    if isinstance(data, dict) and data and all(hasattr(split, "column_names") for split in data.values()):
        raise InputError(
            f"a DatasetDict with splits {', '.join(data)}; pass one split, e.g. dataset[{next(iter(data))!r}]"
        )
    raise InputError(
        f"cannot evaluate on a {type(data).__name__}; expected a datasets.Dataset, an audiofolder or a folder "
        "written by Dataset.save_to_disk"
    )


# --- audiofolder ----------------------------------------------------------------------------------------------------
def audiofolder_data(folder: Path, text_column: str | None = None) -> EvaluationData:
    """The rows of ``folder``'s metadata file, every audio file it names checked to exist."""
    metadata, rows = _metadata_rows(folder)
    if not rows:
        raise InputError(f"{metadata} lists no files; expected a header and one row per audio file")
    column = _text_column(list(rows[0]), text_column, str(metadata))
    if "file_name" not in rows[0]:
        raise InputError(f"{metadata} has no file_name column (columns: {', '.join(rows[0])}); expected file_name")
    items = []
    for row in rows:
        file = folder / str(row["file_name"])
        if not file.is_file():
            raise InputError(f"{metadata} names {row['file_name']}, which is not a file in {folder}")
        items.append(EvaluationItem(str(row["file_name"]), str(row[column] or ""), file))
    return EvaluationData(str(folder), len(items), lambda: iter(items))


def _metadata_rows(folder: Path) -> tuple[Path, list[dict[str, Any]]]:
    """metadata.csv's rows (read as CSV with a header, as ``datasets`` does), else metadata.jsonl's."""
    csv_file = folder / METADATA_FILES[0]
    if csv_file.is_file():
        with open(csv_file, newline="", encoding="utf-8") as stream:
            return csv_file, list(csv.DictReader(stream))
    jsonl_file = folder / METADATA_FILES[1]
    rows = []
    for number, line in enumerate(jsonl_file.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise InputError(f"{jsonl_file} line {number} is not JSON: {error.msg}; expected one object") from None
    return jsonl_file, rows


def _text_column(columns: list[str], text_column: str | None, where: str) -> str:
    if text_column is not None:
        if text_column not in columns:
            raise InputError(f"{where} has no column {text_column!r} (columns: {', '.join(columns)})")
        return text_column
    for name in TEXT_COLUMNS:
        if name in columns:
            return name
    raise InputError(
        f"{where} has none of the transcript columns {', '.join(TEXT_COLUMNS)} (columns: {', '.join(columns)}); "
        "name the one to use (text_column=, --text-column)"
    )


# --- datasets -------------------------------------------------------------------------------------------------------
def _datasets() -> Any:
    try:
        import datasets
    except ImportError as error:
        raise BackendError(
            "reading a dataset saved with save_to_disk needs datasets, which is not installed; "
            "pip install 'whisper-multi[evaluate]'"
        ) from error
    return datasets


def _load_from_disk(folder: Path) -> Any:
    if (folder / SAVED_DATASET_DICT_FILE).is_file():
        splits = json.loads((folder / SAVED_DATASET_DICT_FILE).read_text(encoding="utf-8")).get("splits", [])
        raise InputError(
            f"{folder} holds a DatasetDict with splits {', '.join(splits)}; pass one split's folder, e.g. "
            f"{folder / (splits[0] if splits else 'test')}"
        )
    if not all((folder / name).is_file() for name in SAVED_DATASET_FILES):
        raise InputError(
            f"{folder} is neither an audiofolder ({' or '.join(METADATA_FILES)}) nor a folder written by "
            f"Dataset.save_to_disk ({', '.join(SAVED_DATASET_FILES)})"
        )
    return _datasets().load_from_disk(str(folder))


def _dataset_data(dataset: Any, source: str, audio_column: str | None, text_column: str | None) -> EvaluationData:
    columns = list(dataset.column_names)
    text = _text_column(columns, text_column, source)
    audio = _audio_column(dataset, audio_column, source)
    feature = dataset.features[audio]
    if type(feature).__name__ == "Audio" and feature.decode:
        # Undecoded {"path", "bytes"}: whisper_multi.audio decodes and resamples, as for files, without torchcodec.
        dataset = dataset.cast_column(audio, _datasets().Audio(decode=False))
    return EvaluationData(source, len(dataset), lambda: _dataset_items(dataset, audio, text))


def _audio_column(dataset: Any, audio_column: str | None, source: str) -> str:
    columns = list(dataset.column_names)
    if audio_column is not None:
        if audio_column not in columns:
            raise InputError(f"{source} has no column {audio_column!r} (columns: {', '.join(columns)})")
        return audio_column
    typed = [name for name in columns if type(dataset.features[name]).__name__ == "Audio"]
    if typed:
        return typed[0]
    if "audio" in columns:
        return "audio"
    raise InputError(
        f"{source} has no Audio column and none named 'audio' (columns: {', '.join(columns)}); name the one to use "
        "(audio_column=, --audio-column)"
    )


def _dataset_items(dataset: Any, audio: str, text: str) -> Iterator[EvaluationItem]:
    for index, row in enumerate(dataset):
        value = row[audio]
        path = value.get("path") if isinstance(value, dict) else None
        name = os.path.basename(path) if path else f"#{index}"
        yield EvaluationItem(name, str(row[text] or ""), value)
