"""Reference outputs of openai-whisper's logit filters, for tests/test_decoding_rules.py.

Run in the peers environment (`nox -s fixtures -- scripts/make_decoding_fixtures.py`). The logits are regenerated
in the test from the stored seed (numpy's PCG64 is the same everywhere); only which entries the reference set to
-inf is stored, bit-packed.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from whisper.decoding import ApplyTimestampRules, SuppressBlank, SuppressTokens

from whisper_multi.configuration import WhisperConfig
from whisper_multi.text.special_tokens import special_tokens_for_vocab

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "decoding" / "logit_rules.npz"


def case_logits(seed: int, batch: int, vocab: int, timestamp_begin: int, boost: float) -> np.ndarray:
    """The logits of one case: seeded noise, with the timestamps raised by ``boost`` in odd rows."""
    logits = np.random.default_rng(seed).standard_normal((batch, vocab)).astype(np.float32) * 3.0
    logits[1::2, timestamp_begin:] += np.float32(boost)
    return logits


def cases() -> list[dict]:
    out = []
    for vocab, prefix_kind in ((51864, "english"), (51865, "multilingual")):
        special = special_tokens_for_vocab(vocab)
        config = WhisperConfig.from_preset("tiny.en" if vocab == 51864 else "tiny")
        prefix = [special.sot] if vocab == 51864 else [special.sot, special.language_token("en"), special.transcribe]
        tb = special.timestamp_begin
        text = [440, 2068, 7586, 21831]  # ordinary BPE tokens
        sampled_variants = [
            [],
            [tb + 0],
            [tb + 0, text[0]],
            [tb + 0, text[0], text[1]],
            [tb + 0, text[0], tb + 50],
            [tb + 0, text[0], tb + 50, tb + 50],
            [tb + 10, text[0], tb + 60, tb + 60, text[1], text[2]],
            [tb + 10, text[0], tb + 60, tb + 61, text[1], tb + 90],
            [text[0], text[1]],  # no timestamps at all (as after a prompt without them)
        ]
        for index, sampled in enumerate(sampled_variants):
            for timestamps in (True, False):
                for boost in (0.0, 6.0):
                    out.append(
                        {
                            "vocab": vocab,
                            "kind": prefix_kind,
                            "seed": 1000 + len(out),
                            "prefix": prefix,
                            "sampled": sampled,
                            "timestamps": timestamps,
                            "boost": boost,
                            "max_initial_timestamp_index": 50 if index % 2 == 0 else None,
                            "suppress_tokens": config.suppress_tokens,
                            "begin_suppress_tokens": [220, special.eot],
                        }
                    )
    return out


def reference(case: dict) -> np.ndarray:
    special = special_tokens_for_vocab(case["vocab"])
    tokenizer = SimpleNamespace(
        no_timestamps=special.no_timestamps,
        timestamp_begin=special.timestamp_begin,
        eot=special.eot,
        encode=lambda text: [220] if text == " " else [],
    )
    sample_begin = len(case["prefix"])
    filters = [SuppressBlank(tokenizer, sample_begin), SuppressTokens(case["suppress_tokens"])]
    if case["timestamps"]:
        filters.append(ApplyTimestampRules(tokenizer, sample_begin, case["max_initial_timestamp_index"]))
    logits_np = case_logits(case["seed"], 4, case["vocab"], special.timestamp_begin, case["boost"])
    logits = torch.from_numpy(logits_np.copy())
    tokens = torch.tensor([case["prefix"] + case["sampled"]] * 4, dtype=torch.long)
    for logit_filter in filters:
        logit_filter.apply(logits, tokens)
    return np.isneginf(logits.numpy())


def main() -> None:
    all_cases = cases()
    masks = {f"case_{i}": np.packbits(reference(case), axis=-1) for i, case in enumerate(all_cases)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, cases=np.array(json.dumps(all_cases)), **masks)
    print(f"wrote {len(all_cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
