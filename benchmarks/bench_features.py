"""Log-mel feature extraction speed: whisper_multi's numpy extractor against openai-whisper's torch
``log_mel_spectrogram`` and Transformers 4.57's ``WhisperFeatureExtractor``, for 1 x 30 s and 16 x 30 s.

Transformers is timed twice: ``transformers-np`` is its numpy implementation, ``transformers-pt`` the torch.stft one
it switches to whenever torch is installed (its default in the peers' environment).

Each case is timed after one warm-up call, as the median of ``--runs`` calls. The peers live in another
environment (their pins clash with ours), so their timings come from a subprocess run with ``$PEERS_PYTHON``
(default: .venv-peers/bin/python at the repository root); a missing peer is skipped with a message. All three see
the same input: white noise from the same seed, already in memory (a torch tensor for openai-whisper).

    python benchmarks/bench_features.py            # full run
    python benchmarks/bench_features.py --smoke    # tiny input, one call, to check that everything runs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from whisper_multi.features import SAMPLE_RATE, WhisperFeatureExtractor

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
PEERS = ("openai-whisper", "transformers-np", "transformers-pt")

# Runs in the peers' environment; argv: peer name, JSON list of [batch, seconds], runs, warm-up calls.
PEER_SNIPPET = """
import json, statistics, sys, time
import numpy as np

peer, cases, runs, warmups = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if peer == "openai-whisper":
    import torch
    from whisper.audio import log_mel_spectrogram

    def prepare(audio):
        return torch.from_numpy(audio if audio.shape[0] > 1 else audio[0])

    def extract(prepared):
        return log_mel_spectrogram(prepared)
else:
    from transformers import WhisperFeatureExtractor
    from transformers.models.whisper import feature_extraction_whisper

    if peer == "transformers-np":  # Transformers uses torch.stft whenever torch is importable
        feature_extraction_whisper.is_torch_available = lambda: False
    extractor = WhisperFeatureExtractor()

    def prepare(audio):
        return list(audio) if audio.shape[0] > 1 else audio[0]

    def extract(prepared):
        return extractor(prepared, sampling_rate=16000, return_tensors="np")

medians = []
for batch, seconds in cases:
    audio = (np.random.default_rng(SEED).standard_normal((batch, seconds * 16000)) * 0.1).astype(np.float32)
    prepared = prepare(audio)
    for _ in range(warmups):
        extract(prepared)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        extract(prepared)
        times.append(time.perf_counter() - start)
    medians.append(statistics.median(times))
print(json.dumps(medians))
"""


def make_audio(batch: int, seconds: int) -> np.ndarray:
    """(batch, samples) float32 white noise; the peers' snippet builds the same array."""
    rng = np.random.default_rng(SEED)
    return (rng.standard_normal((batch, seconds * SAMPLE_RATE)) * 0.1).astype(np.float32)


def median_seconds(call: Callable[[], object], runs: int, warmups: int) -> float:
    for _ in range(warmups):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_ours(cases: list[tuple[int, int]], runs: int, warmups: int) -> list[float]:
    extractor = WhisperFeatureExtractor()
    medians = []
    for batch, seconds in cases:
        audio = make_audio(batch, seconds)
        prepared = list(audio) if batch > 1 else audio[0]  # a ragged-capable list, as Transformers is called
        medians.append(median_seconds(lambda p=prepared: extractor(p, sampling_rate=SAMPLE_RATE), runs, warmups))
    return medians


def time_peer(peer: str, python: Path, cases: list[tuple[int, int]], runs: int, warmups: int) -> list[float] | None:
    """The peer's medians, or None (with a message on stderr) when it cannot be run."""
    if not python.exists():
        print(f"skipping {peer}: no peers' Python at {python} (set PEERS_PYTHON)", file=sys.stderr)
        return None
    snippet = PEER_SNIPPET.replace("SEED", str(SEED))
    command = [str(python), "-c", snippet, peer, json.dumps(cases), str(runs), str(warmups)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"skipping {peer}: its timing run failed: {last_line}", file=sys.stderr)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def format_table(cases: list[tuple[int, int]], ours: list[float], peers: dict[str, list[float] | None]) -> str:
    header = f"{'input':<12}{'ours ms':>9}"
    for peer in peers:
        header += f"{peer + ' ms':>20}{'ours/' + peer:>24}"
    lines = [header, "-" * len(header)]
    for i, (batch, seconds) in enumerate(cases):
        line = f"{f'{batch} x {seconds} s':<12}{ours[i] * 1e3:>9.1f}"
        for timings in peers.values():
            if timings is None:
                line += f"{'skipped':>20}{'-':>24}"
            else:
                line += f"{timings[i] * 1e3:>20.1f}{ours[i] / timings[i]:>24.2f}"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny input and a single call: checks that it runs")
    parser.add_argument(
        "--runs", type=int, default=9, help="timed calls per case (median reported, at least 5); default 9"
    )
    args = parser.parse_args(argv)

    if args.smoke:
        cases, runs, warmups = [(1, 1), (2, 1)], 1, 0
    else:
        cases, runs, warmups = [(1, 30), (16, 30)], max(args.runs, 5), 1
    python = Path(os.environ.get("PEERS_PYTHON", ROOT / ".venv-peers" / "bin" / "python"))

    ours = time_ours(cases, runs, warmups)
    peers = {peer: time_peer(peer, python, cases, runs, warmups) for peer in PEERS}
    print(format_table(cases, ours, peers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
