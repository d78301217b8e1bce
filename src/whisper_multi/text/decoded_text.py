"""What decode() does to text beyond the BPE: timestamp tokens rendered as "<|1.08|>", the text cut into timed
offsets, and Transformers' clean-up of spaces.

All follow Transformers' WhisperTokenizer. Ids from ``timestamp_begin`` on are timestamps, one every
``time_precision`` seconds from the start of a 30 s window; a sequence may hold several windows one after another,
and the times keep growing across them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# Tokens rendered as text by decode() and removed again unless timestamps are asked for (as Transformers does).
TIMESTAMP_TEXT = re.compile(r"<\|(\d+\.\d+)\|>")

SEGMENT_SIZE = 1500  # timestamp steps in one window


def clean_up_tokenization(text: str) -> str:
    """Transformers' clean-up of spaces before punctuation and English contractions."""
    for before, after in (
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
        (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
    ):  # fmt: skip
        text = text.replace(before, after)
    return text


def _ends_on_single_timestamp(is_time: Callable[[int], bool], index: int) -> bool:
    """A window whose text ends at ``index`` closed on one timestamp (not a pair), so it lasted the full segment."""
    return index >= 2 and not (is_time(index - 1) and is_time(index - 2))


def decode_with_timestamps(
    token_ids: list[int],
    timestamp_begin: int,
    decode: Callable[[list[int]], str],
    time_precision: float,
    segment_size: int,
) -> str:
    """Text with each timestamp written "<|1.08|>"; ``decode`` turns each run of other ids into text."""
    outputs: list[Any] = [[]]
    current_max, penultimate, previous_segments = 0.0, 0.0, 0.0
    for i, token in enumerate(token_ids):
        if token < timestamp_begin:
            outputs[-1].append(token)
            continue
        timestamp = float((token - timestamp_begin) * time_precision)
        if timestamp < current_max:  # a new window started: carry the time over
            # A window that ended on a single timestamp lasted the full segment; one that ended on a pair
            # ended at its last timestamp, whose duplicate text must go.
            if _ends_on_single_timestamp(lambda j: token_ids[j] >= timestamp_begin, i):
                previous_segments += time_precision * segment_size
            else:
                current_max = penultimate
                previous_segments += penultimate
                outputs = outputs[:-2]
        penultimate, current_max = current_max, timestamp
        outputs.append(f"<|{timestamp + previous_segments:.2f}|>")
        outputs.append([])
    return "".join(part if isinstance(part, str) else decode(part) for part in outputs)


def _slice_ends(is_time: list[bool], positions: list[int]) -> list[int]:
    """Slices end after each pair of consecutive timestamps, and after the last timestamp."""
    ends = [i + 1 for i in range(len(is_time) - 1) if is_time[i] and is_time[i + 1]]
    if positions[-1] + 1 not in ends:
        ends.append(positions[-1] + 1)
    return ends


def compute_offsets(
    ids: list[int],
    timestamp_begin: int,
    decode_text: Callable[[list[int]], str],
    time_precision: float,
    segment_size: int,
) -> list[dict]:
    """[{"text", "timestamp": (start, end)}] for each run of text between a pair of timestamp tokens."""
    is_time = [token >= timestamp_begin for token in ids]
    positions = [i for i, flag in enumerate(is_time) if flag]
    if len(positions) <= 1:  # no pair of timestamps encloses any text
        return []
    offsets = []
    start_index, current_max, previous_segments = positions[0], 0, 0
    for end_index in _slice_ends(is_time, positions):
        sliced = ids[start_index:end_index]
        if len(sliced) > 1:
            start_position, end_position = sliced[0] - timestamp_begin, sliced[-1] - timestamp_begin
            if start_position < current_max:  # a new window started
                single_ending = _ends_on_single_timestamp(is_time.__getitem__, start_index)
                previous_segments += segment_size if single_ending else current_max
            current_max = end_position
            text = TIMESTAMP_TEXT.sub("", decode_text(sliced))
            start = start_position * time_precision + previous_segments * time_precision
            end = end_position * time_precision + previous_segments * time_precision
            offsets.append({"text": text, "timestamp": (start, end)})
        start_index = end_index
    return offsets
