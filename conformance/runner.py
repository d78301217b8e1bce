"""The command line of the suite: `python -m conformance [--quick] [--configs ...] [--stages ...] [--out DIR]`."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from whisper_multi.errors import InputError
from whisper_multi.tools import check

from .matrix import CONFIGS, QUICK_CONFIGS, SOURCES, MatrixResult, Selection, run_matrix
from .report import MARKDOWN_NAME, write_report
from .structure import check_structure

DEFAULT_OUT = Path(__file__).resolve().parent / "report"


def _names(text: str | None, allowed: Sequence[str], what: str) -> list[str] | None:
    if text is None:
        return None
    try:
        return check.parse_names(text, allowed, what)
    except InputError as error:
        raise SystemExit(f"python -m conformance: {error}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description="Compare the PyTorch, TensorFlow and Flax models stage by stage on the same weights and inputs; "
        "write report.json and REPORT.md. Exit 0 when everything passed, 1 on a failure, 3 when only stages not "
        "available yet (generate) did not pass.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report directory (default: {DEFAULT_OUT})")
    parser.add_argument(
        "--quick", action="store_true",
        help=f"CI: configs {','.join(QUICK_CONFIGS)}; real weights through direct, canonical and ct2 sources only",
    )  # fmt: skip
    parser.add_argument("--configs", help=f"comma-separated, of: {', '.join(CONFIGS)}")
    parser.add_argument("--sources", help=f"comma-separated, of: {', '.join(SOURCES)}")
    parser.add_argument("--stages", help=f"comma-separated stage groups, of: {', '.join(check.STAGE_GROUPS)}")
    parser.add_argument("--backends", help=f"comma-separated, of: {', '.join(check.FRAMEWORKS)} (default: all)")
    parser.add_argument("--no-structure", action="store_true", help="skip the model-file structure check")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def run_suite(
    selection: Selection, out: Path, structure: bool = True, command: str = "python -m conformance", quiet: bool = True
) -> dict[str, Any]:
    """Run the selected matrix (and the structure check), write the report into ``out``; return the JSON data."""
    started = time.perf_counter()
    problems = check_structure() if structure else []

    def progress(line: str) -> None:
        if not quiet:
            print(f"[{time.perf_counter() - started:6.1f} s] {line}", file=sys.stderr, flush=True)

    audio = check.read_wav(check.DEFAULT_AUDIO)
    result: MatrixResult = run_matrix(selection, audio, progress)
    chosen = {
        "configs": list(selection.configs), "sources": list(selection.sources), "stages": list(selection.groups),
        "backends": list(selection.frameworks), "quick": selection.quick, "structure": structure,
    }  # fmt: skip
    return write_report(result, problems, out, command, time.perf_counter() - started, chosen)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    selection = Selection(quick=args.quick)
    if args.quick:
        selection.configs = QUICK_CONFIGS
    selection.configs = _names(args.configs, list(CONFIGS), "config") or selection.configs
    selection.sources = _names(args.sources, SOURCES, "source") or selection.sources
    selection.groups = _names(args.stages, check.STAGE_GROUPS, "stage group") or selection.groups
    selection.frameworks = _names(args.backends, check.FRAMEWORKS, "backend") or selection.frameworks
    command = "python -m conformance" + "".join(f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))
    data = run_suite(selection, args.out, not args.no_structure, command, args.quiet)
    counts = data["summary"]["counts"]
    print(
        f"conformance: {', '.join(f'{n} {s}' for s, n in counts.items() if n or s == check.PASS)} "
        f"in {data['wall_s']:.0f} s; report: {args.out / MARKDOWN_NAME}",
        file=sys.stderr,
    )
    for item in data["first_divergence"][:20]:
        print(
            f"  first difference: {item['config']} / {item['source']} / {item['pair']}: {item['stage']} — {item['note']}",
            file=sys.stderr,
        )
    return int(data["summary"]["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
