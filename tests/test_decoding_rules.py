"""The logit rules against openai-whisper's filters (reference masks made by scripts/make_decoding_fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from whisper_multi.decoding import LogitRules, NumpyOps
from whisper_multi.text.special_tokens import special_tokens_for_vocab

FIXTURE = Path(__file__).parent / "fixtures" / "decoding" / "logit_rules.npz"


def case_logits(seed: int, batch: int, vocab: int, timestamp_begin: int, boost: float) -> np.ndarray:
    """The same seeded logits as scripts/make_decoding_fixtures.py (numpy's PCG64 is identical everywhere)."""
    logits = np.random.default_rng(seed).standard_normal((batch, vocab)).astype(np.float32) * 3.0
    logits[1::2, timestamp_begin:] += np.float32(boost)
    return logits


DATA = np.load(FIXTURE)
CASES = json.loads(str(DATA["cases"]))


def _rules(case: dict) -> LogitRules:
    special = special_tokens_for_vocab(case["vocab"])
    return LogitRules(
        vocab_size=case["vocab"],
        sample_begin=len(case["prefix"]),
        eot=special.eot,
        suppress_tokens=case["suppress_tokens"],
        begin_suppress_tokens=case["begin_suppress_tokens"],
        timestamp_begin=special.timestamp_begin if case["timestamps"] else None,
        no_timestamps=special.no_timestamps,
        max_initial_timestamp_index=case["max_initial_timestamp_index"],
    )


@pytest.mark.parametrize("index", range(len(CASES)))
def test_rules_match_openai_whisper(index: int) -> None:
    case = CASES[index]
    special = special_tokens_for_vocab(case["vocab"])
    logits = case_logits(case["seed"], 4, case["vocab"], special.timestamp_begin, case["boost"])
    filled = case["prefix"] + case["sampled"]
    tokens = np.zeros((4, len(filled) + 5), dtype=np.int32)  # a buffer longer than what is filled
    tokens[:, : len(filled)] = filled
    out = _rules(case).apply(NumpyOps(), logits, tokens, len(filled))
    expected_mask = np.unpackbits(DATA[f"case_{index}"], axis=-1, count=case["vocab"]).astype(bool)
    np.testing.assert_array_equal(np.isneginf(out), expected_mask)
    np.testing.assert_array_equal(out[~expected_mask], logits[~expected_mask])


def test_fixture_exercises_every_rule() -> None:
    """The reference cases cover each branch: pairs both ways, monotonic, probability rule, first timestamp."""
    suppressed_text = suppressed_timestamps = 0
    for index, case in enumerate(CASES):
        mask = np.unpackbits(DATA[f"case_{index}"], axis=-1, count=case["vocab"]).astype(bool)
        begin = special_tokens_for_vocab(case["vocab"]).timestamp_begin
        suppressed_text += int(mask[:, 1000 : begin - 2000].all(axis=1).sum())
        suppressed_timestamps += int(mask[:, begin:].all(axis=1).sum())
    assert suppressed_text > 20 and suppressed_timestamps > 20


def test_begin_suppression_applies_only_at_the_first_sampled_position() -> None:
    rules = LogitRules(vocab_size=10, sample_begin=1, eot=3, suppress_tokens=[5, 99], begin_suppress_tokens=[2])
    out = rules.apply(NumpyOps(), np.zeros((1, 10), np.float32), np.zeros((1, 4), np.int32), 1)
    assert np.isneginf(out[0]).nonzero()[0].tolist() == [2, 5]
    out = rules.apply(NumpyOps(), np.zeros((1, 10), np.float32), np.zeros((1, 4), np.int32), 2)
    assert np.isneginf(out[0]).nonzero()[0].tolist() == [5]
