"""The transcript writers: each format parsed back and checked against the result it was written from."""

from __future__ import annotations

import json
import re

import pytest

from whisper_multi.errors import InputError
from whisper_multi.longform.timing import Word
from whisper_multi.longform.transcribe import Segment, TranscriptionResult
from whisper_multi.longform.writers import (
    FORMATS,
    format_timestamp,
    to_json,
    to_srt,
    to_tsv,
    to_txt,
    to_vtt,
    write_result,
)


def _result(with_words: bool = False) -> TranscriptionResult:
    def segment(index: int, start: float, end: float, text: str) -> Segment:
        words = [Word(" " + w, start, end, 0.9) for w in text.split()] if with_words else None
        return Segment(index, 0, start, end, text, [1, 2], -0.2, 1.3, 0.01, 0.0, words)

    segments = [
        segment(0, 0.0, 1.0, " Hello there."),
        segment(1, 1.5, 62.25, " A long\tsecond  line."),
        segment(2, 3601.0015, 3602.5, " After an hour."),
    ]
    return TranscriptionResult("".join(s.text for s in segments), segments, "en", 3603.0)


@pytest.mark.parametrize(
    ("seconds", "marker", "expected"),
    [(0.0, ",", "00:00:00,000"), (1.0, ",", "00:00:01,000"), (62.25, ".", "00:01:02.250"),
     (3601.0015, ".", "01:00:01.002"), (59.9996, ",", "00:01:00,000")],
)  # fmt: skip
def test_format_timestamp(seconds: float, marker: str, expected: str) -> None:
    assert format_timestamp(seconds, marker) == expected


def test_format_timestamp_refuses_negative_times() -> None:
    with pytest.raises(InputError, match="-1"):
        format_timestamp(-1.0)


SRT_CUE = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+)\n")


def _seconds(stamp: str) -> float:
    hours, minutes, rest = stamp.replace(",", ".").split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


def parse_srt(text: str) -> list[tuple[int, float, float, str]]:
    blocks = text.strip("\n").split("\n\n")
    cues = []
    for block in blocks:
        match = SRT_CUE.fullmatch(block + "\n")
        assert match, f"not an SRT cue: {block!r}"
        cues.append((int(match[1]), _seconds(match[2]), _seconds(match[3]), match[4]))
    return cues


def parse_vtt(text: str) -> list[tuple[float, float, str]]:
    assert text.startswith("WEBVTT\n\n")
    cues = []
    for block in text[len("WEBVTT\n\n") :].strip("\n").split("\n\n"):
        times, line = block.split("\n")
        match = re.fullmatch(r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})", times)
        assert match, f"not a VTT cue: {block!r}"
        cues.append((_seconds(match[1]), _seconds(match[2]), line))
    return cues


def test_srt_is_numbered_from_one_with_comma_times() -> None:
    cues = parse_srt(to_srt(_result()))
    assert [c[0] for c in cues] == [1, 2, 3]
    assert cues[1] == (2, 1.5, 62.25, "A long second line.")
    assert cues[2][1] == pytest.approx(3601.002)


def test_vtt_has_header_and_dot_times() -> None:
    cues = parse_vtt(to_vtt(_result()))
    assert cues[0] == (0.0, 1.0, "Hello there.")
    assert len(cues) == 3


def test_txt_and_tsv() -> None:
    assert to_txt(_result()) == "Hello there.\nA long second line.\nAfter an hour.\n"
    lines = to_tsv(_result()).splitlines()
    assert lines[0] == "start\tend\ttext"
    assert lines[2] == "1500\t62250\tA long second line."


@pytest.mark.parametrize("with_words", [False, True])
def test_json_round_trip(with_words: bool) -> None:
    data = json.loads(to_json(_result(with_words)))
    assert data["language"] == "en" and data["text"].startswith(" Hello")
    first = data["segments"][0]
    assert (first["start"], first["end"], first["text"]) == (0.0, 1.0, " Hello there.")
    assert ("words" in first) is with_words
    if with_words:
        assert first["words"][0] == {"word": " Hello", "start": 0.0, "end": 1.0, "probability": 0.9}


def test_write_result_names_files_after_the_audio(tmp_path) -> None:
    for fmt in FORMATS:
        path = write_result(_result(), "/some/where/talk.final.mp3", tmp_path / "out", fmt)
        assert path == tmp_path / "out" / f"talk.final.{fmt}"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"talk.final.{f}" for f in FORMATS)
    with pytest.raises(InputError, match="docx"):
        write_result(_result(), "a.wav", tmp_path, "docx")
