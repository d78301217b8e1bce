"""The state of one comparison: the rows measured so far, each framework's outputs (shared by the stages that need
them) and the steps that failed.

A framework's failure in a step ("forward", "decode", "cached", ...) is recorded once and reported as an error row by
every stage that needs that step, so the first stage in pipeline order names where things went wrong.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from whisper_multi.tools.check.adapters import ADAPTERS, Adapter
from whisper_multi.tools.check.frameworks import FRAMEWORKS, pairs, to_numpy
from whisper_multi.tools.check.inputs import Inputs
from whisper_multi.tools.check.rows import ERROR, SKIPPED, Row, describe_error, differences, judged, layer_note, worst
from whisper_multi.tools.check.subject import Subject
from whisper_multi.tools.check.tolerances import Float64Reference, Tolerances

# The fields of a model output that are compared, in the order they are read.
OUTPUT_FIELDS = (
    "logits", "loss", "encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions",
    "decoder_hidden_states", "decoder_attentions", "cross_attentions",
)  # fmt: skip

Outputs = dict[str, dict[str, Any]]  # framework -> output name -> numpy array (a list of them for layers)


def numpy_outputs(out: Any) -> dict[str, Any]:
    """The comparable fields of a model output as numpy (tuples of layers as lists)."""
    found: dict[str, Any] = {}
    for key in OUTPUT_FIELDS:
        value = getattr(out, key, None)
        if value is not None:
            found[key] = [to_numpy(item) for item in value] if isinstance(value, (tuple, list)) else to_numpy(value)
    return found


class Run:
    """The stages of one subject in progress: ``rows`` so far, ``outputs`` of each framework's end-to-end forward,
    ``decoded`` of its decoder fed the reference framework's encoder states, ``step_errors`` of what failed."""

    def __init__(
        self,
        subject: Subject,
        inputs: Inputs,
        tolerances: Tolerances,
        reference64: Float64Reference | None = None,
        on_row: Callable[[Row], None] | None = None,
        details: bool = True,
    ):
        self.subject, self.inputs, self.tolerances, self.on_row = subject, inputs, tolerances, on_row
        self.reference64 = reference64 if reference64 is not None else Float64Reference()
        self.details = details  # hidden states and attentions in the forward outputs (only when compared)
        self.rows: list[Row] = []
        self.outputs: Outputs = {}
        self.decoded: Outputs = {}
        self.step_errors: dict[tuple[str, str], str] = {}  # (step, framework) -> error

    # -- rows
    def row(self, stage: str, pair: str, measured: tuple[float, float] | None, **extra: Any) -> Row:
        tolerance = extra.pop("tolerance", self.tolerances.for_stage(stage))
        row = Row(
            self.subject.config_name, self.subject.source, stage, pair,
            None if measured is None else measured[0], None if measured is None else measured[1],
            tolerance, extra.pop("status", ""), target=self.tolerances.target_for(stage), **extra,
        )  # fmt: skip
        self.add(judged(row))
        return row

    def add(self, row: Row) -> None:
        self.rows.append(row)
        if self.on_row is not None:
            self.on_row(row)

    def unavailable(self, stage: str, pair: str, status: str, note: str) -> None:
        self.row(stage, pair, None, status=status, note=note)

    # -- frameworks
    @property
    def frameworks(self) -> list[str]:
        """The frameworks whose model was built."""
        return [name for name in FRAMEWORKS if name in self.subject.models]

    def wanted(self) -> list[str]:
        """The frameworks asked for: built, skipped (not installed) or failed to build."""
        asked = {*self.subject.models, *self.subject.skipped, *self.subject.errors}
        return [name for name in FRAMEWORKS if name in asked]

    def adapter(self, name: str) -> Adapter:
        return ADAPTERS[name]

    def model(self, name: str) -> Any:
        return self.subject.models[name]

    @property
    def reference(self) -> str | None:
        """The framework whose encoder states every decoder is fed: PyTorch when it runs."""
        return next((name for name in self.frameworks if name in self.outputs), None)

    def reference_states(self) -> Any:
        """The reference framework's last encoder state, or None when no framework produced one."""
        return self.outputs[self.reference]["encoder_last_hidden_state"] if self.reference else None

    def blocked(self, names: Sequence[str], *steps: str) -> tuple[str, str] | None:
        """(status, note) when a framework of ``names`` was skipped, failed to build, or failed one of ``steps``."""
        for name in names:
            if name in self.subject.skipped:
                return SKIPPED, f"{name}: {self.subject.skipped[name]}"
            if name in self.subject.errors:
                return ERROR, f"{name} model: {self.subject.errors[name]}"
            for step in steps:
                if (step, name) in self.step_errors:
                    return ERROR, f"{name} {step}: {self.step_errors[(step, name)]}"
        return None

    def guarded(self, step: str, name: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except Exception as error:
            self.step_errors[(step, name)] = describe_error(error)
            return None

    # -- the outputs the stages share
    def forward_all(self) -> None:
        """Each framework's full forward from the mel features, with labels (and details when compared)."""
        self._fill("forward", self.outputs, self._forward)

    def decode_all(self) -> None:
        """Each framework's decoder on the reference framework's encoder states and the same token ids."""
        self.forward_all()
        if self.reference is None:
            for name in self.frameworks:
                self.step_errors.setdefault(("decode", name), "no framework produced encoder states")
            return
        self._fill("decode", self.decoded, self._decode)

    def _fill(self, step: str, store: Outputs, compute: Callable[[str], dict[str, Any]]) -> None:
        for name in self.frameworks:
            if name in store or (step, name) in self.step_errors:
                continue
            found = self.guarded(step, name, functools.partial(compute, name))
            if found is not None:
                store[name] = found

    def _forward(self, name: str) -> dict[str, Any]:
        out = self.adapter(name).run(
            self.model(name), input_features=self.inputs.features, decoder_input_ids=self.inputs.decoder_input_ids,
            labels=self.inputs.labels, output_attentions=self.details, output_hidden_states=self.details,
        )  # fmt: skip
        return numpy_outputs(out)

    def _decode(self, name: str) -> dict[str, Any]:
        out = self.adapter(name).run(
            self.model(name), encoder_states=self.reference_states(), decoder_input_ids=self.inputs.decoder_input_ids,
            output_attentions=True, output_hidden_states=True,
        )  # fmt: skip
        return numpy_outputs(out)

    # -- differences
    def compare_outputs(self, stage: str, key: str, outputs: Outputs, steps: tuple[str, ...], note: str = "") -> None:
        """One row per pair: max and mean abs of ``key``; per layer for tuples of layers. The bound is derived from
        the two frameworks' float32 errors where the float64 reference measured them, fixed otherwise."""
        for a, b in pairs(self.wanted()):
            pair = f"{a}-{b}"
            blocked = self.blocked([a, b], *steps)
            if blocked:
                self.unavailable(stage, pair, *blocked)
                continue
            first, second = outputs[a].get(key), outputs[b].get(key)
            derived = self.reference64.bounds(a, b, stage)
            if first is None or second is None:
                self.unavailable(stage, pair, ERROR, f"no {key} in the outputs")
            elif isinstance(first, list) and len(first) != len(second):
                self.unavailable(stage, pair, ERROR, f"{len(first)} vs {len(second)} {key}")
            else:
                row_note = "; ".join(n for n in (note, derived and self.reference64.describe(a, b, stage)) if n)
                bounds = derived or self.fixed_bounds(stage, key, outputs[a])
                self.difference_row(stage, pair, first, second, bounds, row_note, derived=derived is not None)

    def fixed_bounds(self, stage: str, key: str, outputs: dict[str, Any]) -> list[float]:
        """The stage's tolerance for each layer (a single output: the last of the stack of states up to it)."""
        value = outputs[key]
        if isinstance(value, list):
            return self.tolerances.for_states(stage, value)
        stack = outputs.get(key.replace("last_hidden_state", "hidden_states"))  # the states up to it
        stack = stack if isinstance(stack, list) and stack else [value]
        return [self.tolerances.for_states(stage, stack)[-1]]

    def difference_row(
        self, stage: str, pair: str, first: Any, second: Any, bounds: list[float], note: str, derived: bool = False
    ) -> Row:
        """A row of the max and mean abs difference; per layer, each against its own bound, for a list of layers."""
        if not isinstance(first, list):
            return self.row(stage, pair, differences(first, second), tolerance=bounds[-1], note=note, derived=derived)
        per_layer = [list(differences(x, y)) for x, y in zip(first, second)]
        notes = (note, layer_note(per_layer, stage, bounds))
        return self.row(
            stage, pair, worst(per_layer), layers=per_layer, note="; ".join(n for n in notes if n),
            tolerance=max(bounds, default=self.tolerances.for_stage(stage)),
            layer_tolerances=bounds if len(set(bounds)) > 1 else None, derived=derived,
        )  # fmt: skip
