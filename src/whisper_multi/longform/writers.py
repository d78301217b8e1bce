"""Transcripts written as txt, srt, vtt, json and tsv, the formats people load into players and editors.

- txt: one segment per line.
- srt: numbered cues from 1, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a blank line after each cue.
- vtt: the ``WEBVTT`` header, then cues with ``HH:MM:SS.mmm`` times.
- json: ``text``, ``language``, ``duration`` and ``segments`` (id, start, end, text, tokens, statistics, and
  ``words`` with start, end and probability when word timestamps were asked for).
- tsv: ``start``, ``end`` (integer milliseconds) and ``text`` columns with a header, tabs in the text replaced.

Each writer takes the ``TranscriptionResult`` (or its ``to_dict()``) and returns the text; ``write_result`` puts
``<audio name>.<ext>`` in a directory, atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from whisper_multi.errors import InputError

FORMATS = ("txt", "srt", "vtt", "json", "tsv")


def _as_dict(result: Any) -> dict[str, Any]:
    return result.to_dict() if hasattr(result, "to_dict") else dict(result)


def format_timestamp(seconds: float, decimal_marker: str = ".", always_include_hours: bool = True) -> str:
    """``HH:MM:SS.mmm`` (or with ``,``) for a time in seconds, rounded to the millisecond."""
    if seconds < 0:
        raise InputError(f"a timestamp must be >= 0 seconds, got {seconds}")
    milliseconds = round(seconds * 1000.0)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    whole_seconds, milliseconds = divmod(milliseconds, 1000)
    hours_part = f"{hours:02d}:" if always_include_hours or hours else ""
    return f"{hours_part}{minutes:02d}:{whole_seconds:02d}{decimal_marker}{milliseconds:03d}"


def _cues(result: dict[str, Any]) -> list[tuple[float, float, str]]:
    cues = []
    for segment in result["segments"]:
        text = " ".join(segment["text"].split())  # one line per cue, no stray whitespace
        if text:
            cues.append((float(segment["start"]), max(float(segment["end"]), float(segment["start"])), text))
    return cues


def to_txt(result: Any) -> str:
    return "".join(f"{text}\n" for _, _, text in _cues(_as_dict(result)))


def to_srt(result: Any) -> str:
    blocks = []
    for number, (start, end, text) in enumerate(_cues(_as_dict(result)), start=1):
        times = f"{format_timestamp(start, ',')} --> {format_timestamp(end, ',')}"
        blocks.append(f"{number}\n{times}\n{text}\n")
    return "\n".join(blocks)


def to_vtt(result: Any) -> str:
    blocks = ["WEBVTT\n"]
    for start, end, text in _cues(_as_dict(result)):
        blocks.append(f"{format_timestamp(start)} --> {format_timestamp(end)}\n{text.replace('-->', '->')}\n")
    return "\n".join(blocks)


def to_tsv(result: Any) -> str:
    lines = ["start\tend\ttext"]
    for start, end, text in _cues(_as_dict(result)):
        lines.append(f"{round(start * 1000)}\t{round(end * 1000)}\t{text.replace(chr(9), ' ')}")
    return "\n".join(lines) + "\n"


def to_json(result: Any) -> str:
    return json.dumps(_as_dict(result), ensure_ascii=False, indent=2) + "\n"


WRITERS: dict[str, Callable[[Any], str]] = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt, "json": to_json, "tsv": to_tsv}


def write_result(result: Any, audio_path: str | os.PathLike[str], output_dir: str | os.PathLike[str], fmt: str) -> Path:
    """Write ``<audio name>.<fmt>`` into ``output_dir`` (created if needed), atomically; returns its path."""
    if fmt not in WRITERS:
        raise InputError(f"output format {fmt!r} is not one of {', '.join(FORMATS)}")
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{Path(audio_path).stem}.{fmt}"
    text = WRITERS[fmt](result)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
