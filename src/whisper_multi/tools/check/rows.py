"""One comparison's result (``Row``), how it is judged, the differences it holds, and the exit code of a set of rows.

Differences are max and mean absolute values, never signed sums (errors of opposite signs cancel).
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from whisper_multi.errors import InputError

# Row statuses. Only "pass" passes; "not available" and "skipped" are listed apart and never counted as passed.
PASS, FAIL, ERROR, NOT_AVAILABLE, SKIPPED = "pass", "fail", "error", "not available", "skipped"
STATUS_ORDER = (PASS, FAIL, ERROR, NOT_AVAILABLE, SKIPPED)


@dataclass
class Row:
    """One comparison: a stage of one set of weights, between two frameworks (or within one)."""

    config: str
    source: str  # "direct" (weights handed over in memory) or the on-disk format the models were loaded from
    stage: str
    pair: str  # "pt-tf", ...; a single framework for comparisons within it; "np-pt", ... for the mel features
    max_abs: float | None
    mean_abs: float | None
    tolerance: float
    status: str
    measure: str = "abs"  # "abs", "relative" (gradients) or "tokens" (differing token positions)
    target: float | None = None
    note: str = ""
    layers: list[list[float]] | None = None  # per layer (or per hidden state): [max abs, mean abs]
    layer_tolerances: list[float] | None = None  # per hidden state when the bounds differ; ``tolerance`` is the largest
    derived: bool = False  # the bound is the sum of the two frameworks' float32 errors (``Float64Reference``)

    @property
    def passed(self) -> bool:
        return self.status == PASS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judged(row: Row) -> Row:
    """Set ``status`` from the measured difference (a row already marked error / not available / skipped stays)."""
    if row.status in (ERROR, NOT_AVAILABLE, SKIPPED):
        return row
    finite = row.max_abs is not None and np.isfinite(row.max_abs)
    passed = finite and row.max_abs <= row.tolerance  # type: ignore[operator]
    if row.layers is not None and row.layer_tolerances is not None:
        passed = finite and all(layer[0] <= bound for layer, bound in zip(row.layers, row.layer_tolerances))
    row.status = PASS if passed else FAIL
    return row


def exit_code(rows: Sequence[Row]) -> int:
    """0 every row passed (skipped rows aside); 1 a row failed; 3 none failed but a stage is not available; 4
    nothing was compared."""
    if any(row.status in (FAIL, ERROR) for row in rows):
        return 1
    if any(row.status == NOT_AVAILABLE for row in rows):
        return 3
    return 0 if any(row.passed for row in rows) else 4


def differences(a: Any, b: Any) -> tuple[float, float]:
    """(max abs, mean abs) of ``a - b`` computed in float64; NaN anywhere gives NaN (which fails)."""
    first, second = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if first.shape != second.shape:
        raise InputError(f"cannot compare arrays of shapes {first.shape} and {second.shape}")
    if first.size == 0:
        return 0.0, 0.0
    delta = np.abs(first - second)
    return float(delta.max()), float(delta.mean())


def token_differences(a: Any, b: Any) -> tuple[float, float]:
    """(differing positions, their fraction) of two token id arrays; a length difference counts every extra id."""
    first, second = np.atleast_2d(np.asarray(a)), np.atleast_2d(np.asarray(b))
    if first.shape[0] != second.shape[0]:
        raise InputError(f"cannot compare {first.shape[0]} sequences with {second.shape[0]}")
    length = max(first.shape[1], second.shape[1])
    padded = [
        np.pad(x.astype(np.int64), ((0, 0), (0, length - x.shape[1])), constant_values=-1) for x in (first, second)
    ]
    differing = int((padded[0] != padded[1]).sum())
    return float(differing), differing / max(padded[0].size, 1)


def worst(per_layer: list[list[float]]) -> tuple[float, float]:
    """(max over layers, mean over layers); NaN when any layer has one."""
    if not per_layer:
        return 0.0, 0.0
    maxima = [pair[0] for pair in per_layer]
    largest = float("nan") if not all(np.isfinite(maxima)) else max(maxima)
    return largest, float(np.mean([pair[1] for pair in per_layer]))


def layer_note(per_layer: list[list[float]], stage: str, bounds: Sequence[float]) -> str:
    """Where a layered output is worst and the first layer above its bound: where the frameworks part."""
    unit = "state" if "hidden" in stage else "layer"
    maxima = [pair[0] if np.isfinite(pair[0]) else np.inf for pair in per_layer]
    note = f"worst {unit} {int(np.argmax(maxima))} of {len(per_layer)}" if per_layer else ""
    first = next((i for i, (largest, bound) in enumerate(zip(maxima, bounds)) if not largest <= bound), None)
    return note + (f"; first above tolerance: {unit} {first}" if first is not None else "")


def describe_error(error: BaseException) -> str:
    """One line for a row's note: the error's type, first line and where it was raised."""
    where = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    place = f" ({Path(where.filename).name}:{where.lineno})" if where else ""
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}{place}"[:400]


def format_value(value: float | None, measure: str = "abs") -> str:
    if value is None:
        return "—"
    if measure == "tokens":
        return f"{value:g}" if value >= 1 or value == 0 else f"{value:.2%}"
    if value == 0:
        return "0"
    return f"{value:.2e}" if np.isfinite(value) else str(value)
