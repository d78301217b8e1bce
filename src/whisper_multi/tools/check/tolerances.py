"""How far two frameworks may differ, per stage: fixed bounds (``Tolerances``) and the bounds derived from each
framework's float32 distance from its own float64 run (``Float64Reference``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from whisper_multi.tools.check.rows import format_value

HIDDEN_STATE_STAGES = ("encoder_last_hidden_state", "encoder_hidden_states", "decoder_hidden_states")
FLOAT64_TOLERANCE = 1e-9  # float64 pairs: far above float64 round-off, far below any float32 difference
# Added to the sum of two frameworks' float32 errors in a derived pair bound: it stands for the float64 pair
# difference (at most FLOAT64_TOLERANCE, checked by its own row) and the rounding of the differences themselves.
DERIVED_MARGIN = 1e-6


@dataclass(frozen=True)
class Tolerances:
    """Bounds on the max abs difference per stage kind; ``target`` is the bound aimed for, reported beside.

    Where a float64 reference was measured, these bounds apply to each framework's float32 distance from its own
    float64 outputs (``float32_error_*`` rows), and a pair's float32 bound is derived from those distances;
    without one (``--stages`` leaving out ``float64``) they bound the pair differences themselves.
    """

    absolute: float = 1e-5  # logits, attention weights, loss
    hidden_states: float = 1e-5  # encoder and decoder hidden states
    # Hidden states: the bound of each state grows by this fraction of the largest magnitude the residual stream has
    # reached up to it (in the first framework), as float32 round-off does: a stream of magnitude 500 rounds at 3e-5
    # per operation, and what it carries reaches the later states (a layer norm rescales it, it does not remove it).
    hidden_states_relative: float = 0.0
    # Logits, attention weights and loss: the bound grows by this fraction of the output's own largest magnitude, as
    # float32 round-off does (it keeps 2**-24 of a value).
    relative: float = 0.0
    gradients: float = 1e-4  # relative to the largest magnitude of the reference gradient, per parameter
    # Ten AdamW steps: each step's loss relative to the first framework's, each final parameter relative to its
    # largest magnitude.
    training: float = 1e-4
    target: float | None = None
    gradients_target: float | None = None

    def for_stage(self, stage: str) -> float:
        if stage in ("mel_features", "weights") or stage.startswith(("generate_", "export_")):
            return 0.0  # identical arrays, identical token ids
        if stage.startswith("float64_"):
            return FLOAT64_TOLERANCE
        stage = stage.removeprefix("float32_error_")
        if stage == "gradients":
            return self.gradients
        if stage in ("training_losses", "training_weights"):
            return self.training
        if stage in HIDDEN_STATE_STAGES:
            return self.hidden_states
        return self.absolute

    def for_states(self, stage: str, states: Sequence[Any]) -> list[float]:
        """The bound of each of a stack of outputs (first to last): that of its stage, plus a share of a magnitude:
        for hidden states the largest one the residual stream has reached so far, for the others their own."""
        tolerance = self.for_stage(stage)
        hidden = stage.removeprefix("float32_error_") in HIDDEN_STATE_STAGES
        share = self.hidden_states_relative if hidden else self.relative
        if not share or tolerance == 0.0 or stage.startswith("float64_"):
            return [tolerance] * len(states)
        bounds, peak = [], 0.0
        for state in states:
            array = np.asarray(state, dtype=np.float64)
            largest = float(np.abs(array).max()) if array.size else 0.0
            peak = max(peak, largest) if hidden else largest
            bounds.append(tolerance + share * peak)
        return bounds

    def target_for(self, stage: str) -> float | None:
        """The bound aimed for, where it is tighter than the stage's bound (else None: nothing to report beside)."""
        tolerance = self.for_stage(stage)
        target = self.gradients_target if stage == "gradients" else self.target
        return target if target is not None and tolerance > target else None


RANDOM_TOLERANCES = Tolerances()
# Real weights: float32 round-off grows through the layers and is amplified by the final layer norms, whose outputs
# are large; conformance/REPORT.md shows where it grows and the measured errors. The target stays 1e-5.
# With the float64 stage these bound each framework's own float32 error, and a pair may differ by the sum of its two
# frameworks' errors. Logits: 1e-4 + 1e-5 x their largest magnitude, room for the kernels of any instruction set,
# while a wrong operation moves logits by far more.
# Hidden states: a residual stream rounds in proportion to its magnitude, which grows through the encoder, so the
# bound grows with the largest magnitude the stream has reached: 1e-4 + 2e-5 x that magnitude.
# Gradients (relative to the largest of each parameter's): the relative bound is 1e-3, room for the framework that
# accumulates the most round-off; the target is 1e-4.
REAL_TOLERANCES = Tolerances(
    absolute=1e-4,
    hidden_states=1e-4,
    hidden_states_relative=2e-5,
    relative=1e-5,
    gradients=1e-3,
    target=1e-5,
    gradients_target=1e-4,
)


@dataclass
class Float64Reference:
    """Each framework's float32 distance from its own float64 run on the same inputs, per stage (max abs, one value per
    layer of a layered output): what the float32 pair bounds are derived from.

    For two frameworks a and b, elementwise |a32 - b32| <= |a32 - a64| + |a64 - b64| + |b64 - b32|, so a pair may differ
    by the two float32 errors plus the float64 difference, which its own row holds under ``FLOAT64_TOLERANCE``;
    ``margin`` covers that and the rounding of the differences. Filled by the ``float64`` stage group of the models
    built from the canonical tensors; handed to the comparisons of models loaded from files, which hold the same
    weights bit for bit (their ``weights`` row checks it).
    """

    errors: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (framework, stage) -> per layer
    margin: float = DERIVED_MARGIN

    def bounds(self, first: str, second: str, stage: str) -> list[float] | None:
        a, b = self.errors.get((first, stage)), self.errors.get((second, stage))
        if a is None or b is None or len(a) != len(b):
            return None
        return [x + y + self.margin for x, y in zip(a, b)]

    def describe(self, first: str, second: str, stage: str) -> str:
        a, b = (max(self.errors[(name, stage)], default=0.0) for name in (first, second))
        return f"bound: float32 errors {first} {format_value(a)} + {second} {format_value(b)} + {self.margin:g}"
