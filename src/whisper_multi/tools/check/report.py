"""Rows as text: the markdown table ``whisper-multi check`` prints row by row and the conformance report holds, the
tolerance column and its legend, the one-line summary."""

from __future__ import annotations

from collections.abc import Sequence

from whisper_multi.tools.check.rows import PASS, STATUS_ORDER, Row, format_value
from whisper_multi.tools.check.tolerances import DERIVED_MARGIN


def format_tolerance(row: Row) -> str:
    text = "exact" if row.tolerance == 0 else f"{row.tolerance:.3g}" + (" rel" if row.measure == "relative" else "")
    if row.layer_tolerances is not None:
        text = f"per {'state' if 'hidden' in row.stage else 'layer'}, up to " + text
    if row.derived:
        text = "derived, " + text
    return text + (f" (target {row.target:g})" if row.target is not None else "")


TOLERANCE_LEGEND = (
    "tolerance column: 'exact' must be identical; a number is the largest max abs difference allowed; 'derived' "
    "bounds a float32 pair by the sum of its two backends' float32 errors (their float32_error rows, each measured "
    f"against the same backend's float64 run) plus {DERIVED_MARGIN:g}; 'per state' / 'per layer' judges each hidden "
    "state or layer against its own bound and shows the largest; on real weights a fixed bound is 1e-4 plus 1e-5 "
    "of the output's largest magnitude (hidden states: plus 2e-5 of the largest magnitude the stream has reached); "
    "'rel' is relative to the largest gradient; '(target 1e-05)' is the bound aimed for."
)


def markdown_header(with_config: bool = True, with_source: bool = True) -> str:
    """The header and rule lines of ``markdown_table``."""
    header = (["config"] if with_config else []) + (["source"] if with_source else [])
    header += ["stage", "pair", "max abs", "mean abs", "tolerance", "result", "note"]
    return "| " + " | ".join(header) + " |\n|" + "|".join("---" for _ in header) + "|"


def markdown_row(row: Row, with_config: bool = True, with_source: bool = True) -> str:
    """One line of ``markdown_table``."""
    suffix = {"relative": " (rel)", "tokens": " (ids)"}
    cells = ([row.config] if with_config else []) + ([row.source] if with_source else [])
    cells += [
        row.stage + suffix.get(row.measure, ""),
        row.pair,
        format_value(row.max_abs, row.measure),
        format_value(row.mean_abs, row.measure),
        format_tolerance(row),
        "PASS" if row.passed else row.status.upper(),
        row.note.replace("|", "/"),
    ]
    return "| " + " | ".join(cells) + " |"


def markdown_table(rows: Sequence[Row], with_config: bool = True, with_source: bool = True) -> str:
    """``| config | source | stage | pair | max abs | mean abs | tolerance | result | note |``."""
    lines = [markdown_header(with_config, with_source)]
    lines += [markdown_row(row, with_config, with_source) for row in rows]
    return "\n".join(lines)


def summary_line(rows: Sequence[Row]) -> str:
    counts = {status: sum(row.status == status for row in rows) for status in STATUS_ORDER}
    return ", ".join(f"{count} {status}" for status, count in counts.items() if count or status == PASS)
