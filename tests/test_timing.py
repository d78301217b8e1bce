"""Word timing: the numerics against brute-force references, word grouping with the real tokenizer, and the word
times of tiny.en against the known times of the concatenated-words clip (scripts/make_longform_fixtures.py)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import installed_backend
from whisper_multi.longform.timing import (
    Word,
    alignment_heads_for,
    dtw,
    median_filter,
    merge_punctuation,
    snap_to_speech,
    split_tokens_on_spaces,
)
from whisper_multi.weights.packages import embedded_model_path

LONGFORM = Path(__file__).parent / "fixtures" / "longform"


def _brute_force_dtw_cost(cost: np.ndarray) -> float:
    """The least total cost over every monotonic path (moves down, right or diagonal), by exhaustive recursion."""
    rows, columns = cost.shape
    best = np.full((rows, columns), np.inf)
    for i, j in itertools.product(range(rows), range(columns)):
        before = [
            best[i - 1, j - 1] if i and j else np.inf,
            best[i - 1, j] if i else np.inf,
            best[i, j - 1] if j else np.inf,
        ]
        best[i, j] = cost[i, j] + (0.0 if i == j == 0 else min(before))
    return float(best[-1, -1])


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (6, 6), (9, 4)])
def test_dtw_finds_the_cheapest_monotonic_path(shape: tuple[int, int]) -> None:
    cost = np.random.default_rng(sum(shape)).random(shape)
    rows, columns = dtw(cost)
    assert (rows[0], columns[0]) == (0, 0) and (rows[-1], columns[-1]) == (shape[0] - 1, shape[1] - 1)
    steps = np.stack([np.diff(rows), np.diff(columns)], axis=1)
    assert all(tuple(step) in {(1, 0), (0, 1), (1, 1)} for step in steps)
    assert cost[rows, columns].sum() == pytest.approx(_brute_force_dtw_cost(cost))


def test_dtw_follows_a_clear_diagonal() -> None:
    cost = np.ones((4, 8))
    for row, column in enumerate([0, 2, 4, 6]):
        cost[row, column : column + 2] = 0.0
    rows, columns = dtw(cost)
    first_column = [int(columns[np.argmax(rows == r)]) for r in range(4)]
    assert first_column == [0, 2, 4, 6]


def test_median_filter_matches_a_direct_median_with_reflection() -> None:
    x = np.random.default_rng(0).random((2, 3, 20)).astype(np.float32)
    out = median_filter(x, 7)
    padded = np.pad(x, [(0, 0), (0, 0), (3, 3)], mode="reflect")
    expected = np.stack([np.median(padded[..., i : i + 7], axis=-1) for i in range(20)], axis=-1)
    np.testing.assert_array_equal(out, expected)
    assert median_filter(x, 1) is x


@pytest.fixture(scope="module")
def tokenizer():
    from whisper_multi.text.tokenization_fast import WhisperTokenizerFast

    return WhisperTokenizerFast.from_pretrained(embedded_model_path())


def test_words_from_tokens_and_punctuation_merged(tokenizer) -> None:
    tokens = tokenizer.encode(' He said, "Stop" then (quietly) left.', add_special_tokens=False)
    eot = tokenizer.eos_token_id
    words, groups = split_tokens_on_spaces([*tokens, eot], tokenizer.decode, eot)
    assert "".join(words[:-1]) == ' He said, "Stop" then (quietly) left.'
    assert sum(len(g) for g in groups) == len(tokens) + 1
    items = [
        Word(text, float(i), float(i) + 0.5, 1.0, group) for i, (text, group) in enumerate(zip(words[:-1], groups))
    ]
    merge_punctuation(items, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
    kept = [w for w in items if w.word]
    assert [w.word for w in kept] == [" He", " said,", ' "Stop"', " then", " (quietly)", " left."]
    assert kept[1].start == 1.0  # "said," keeps the time of "said"
    assert sum(len(w.tokens) for w in items) == len(tokens)


def test_snap_to_speech_moves_bounds_in_to_loud_frames() -> None:
    levels = np.zeros(300)
    levels[50:80] = 1.0  # speech 0.5-0.8 s
    levels[150:160] = 1.0  # speech 1.5-1.6 s
    words = [Word(" a", 0.2, 1.2, 1.0), Word(" b", 1.2, 2.5, 1.0), Word(" c", 2.5, 2.9, 1.0)]
    snap_to_speech(words, levels)
    assert [(w.start, w.end) for w in words] == [(0.5, 0.8), (1.5, 1.6), (2.5, 2.9)]  # c: no speech, unchanged


def test_a_burst_of_the_next_word_after_a_pause_goes_back_to_it() -> None:
    """Dynamic time warping put the shared boundary 5 frames into the next word (and, below, 5 frames early): after
    a 0.3 s pause those frames are the neighbour's speech, so the words end and start where their speech does."""
    levels = np.zeros(300)
    levels[50:100] = 1.0  # word a: 0.5-1.0 s
    levels[130:180] = 1.0  # word b: 1.3-1.8 s
    late = [Word(" a", 0.5, 1.35, 1.0), Word(" b", 1.35, 1.8, 1.0)]
    snap_to_speech(late, levels)
    assert [(w.start, w.end) for w in late] == [(0.5, 1.0), (1.3, 1.8)]
    early = [Word(" a", 0.5, 0.95, 1.0), Word(" b", 0.95, 1.8, 1.0)]
    snap_to_speech(early, levels)
    assert [(w.start, w.end) for w in early] == [(0.5, 1.0), (1.3, 1.8)]
    # A closure shorter than the pause (a stop consonant inside one word) is not a boundary: the burst stays.
    levels[100:110], levels[110:115] = 0.0, 1.0  # 0.1 s of silence, then a 0.05 s burst, inside word a
    closure = [Word(" a", 0.5, 1.15, 1.0), Word(" b", 1.15, 1.8, 1.0)]
    snap_to_speech(closure, levels)
    assert [(w.start, w.end) for w in closure] == [(0.5, 1.15), (1.3, 1.8)]


def test_alignment_heads(tmp_path) -> None:
    class Config:
        decoder_layers, decoder_attention_heads = 4, 2

    class Model:
        config, generation_config = Config(), None

    assert alignment_heads_for(Model()) == [(2, 0), (2, 1), (3, 0), (3, 1)]
    (tmp_path / "config.json").write_text(json.dumps({"alignment_heads": [[1, 0], [3, 1]]}))
    assert alignment_heads_for(Model(), tmp_path) == [(1, 0), (3, 1)]
    assert alignment_heads_for(Model(), embedded_model_path())[:3] == [(1, 0), (2, 0), (2, 5)]


@pytest.mark.slow
def test_word_times_of_the_concatenated_clip(tokenizer) -> None:
    """tiny.en's word starts and ends within 0.2 s of the truth for at least 90 % of the words."""
    from whisper_multi.longform.transcribe import transcribe

    model = installed_backend("pt").model_class().from_pretrained(embedded_model_path())
    truth = json.loads((LONGFORM / "word_timing.json").read_text())["words"]
    result = transcribe(model, LONGFORM / "word_timing.wav", tokenizer, word_timestamps=True,
                        model_dir=embedded_model_path())  # fmt: skip
    words = [word for segment in result.segments for word in segment.words]
    assert len(words) == len(truth)
    starts = np.mean([abs(w.start - t["start"]) <= 0.2 for w, t in zip(words, truth)])
    ends = np.mean([abs(w.end - t["end"]) <= 0.2 for w, t in zip(words, truth)])
    assert starts >= 0.9, f"{starts:.0%} of word starts within 0.2 s"
    assert ends >= 0.9, f"{ends:.0%} of word ends within 0.2 s"
    matched = np.mean([w.word.strip(" .,").lower() == t["word"] for w, t in zip(words, truth)])
    assert matched >= 0.9
