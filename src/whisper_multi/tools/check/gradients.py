"""The ``gradients`` stage group: the gradient of the loss per parameter, relative to the largest magnitude of the
first framework's gradient of that parameter."""

from __future__ import annotations

from typing import Any

import numpy as np

from whisper_multi.tools.check.frameworks import canonical_layout, pairs
from whisper_multi.tools.check.rows import Row, differences, judged
from whisper_multi.tools.check.run import Run


def gradients(run: Run) -> None:
    from whisper_multi.weights.table import canonical_parameters

    specs = canonical_parameters(run.subject.config)
    found: dict[str, dict[str, np.ndarray]] = {}
    inputs = run.inputs
    for name in run.frameworks:
        adapter, model = run.adapter(name), run.model(name)

        def measure(adapter: Any = adapter, model: Any = model) -> Any:
            return adapter.loss_and_gradients(model, inputs.features, inputs.decoder_input_ids, inputs.labels)

        result = run.guarded("gradients", name, measure)
        if result is not None:
            found[name] = {n: canonical_layout(g, specs[n].kind, name) for n, g in result[1].items()}
    for a, b in pairs(run.wanted()):
        blocked = run.blocked([a, b], "gradients")
        if blocked:
            run.unavailable("gradients", f"{a}-{b}", *blocked)
        else:
            run.add(judged(gradient_row(run, f"{a}-{b}", found[a], found[b])))


def gradient_row(run: Run, pair: str, first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> Row:
    """The worst relative difference over the parameters: max abs / the largest magnitude of the first."""
    names = [name for name in first if name in second]
    worst_name, worst, relative_means = "", 0.0, []
    for name in names:
        largest, mean = differences(first[name], second[name])
        scale = max(float(np.abs(first[name]).max()), 1e-12)
        if not largest / scale <= worst:  # a NaN stays the worst
            worst_name, worst = name, largest / scale
        relative_means.append(mean / scale)
    note = f"{len(names)} parameters; worst {worst_name}"
    only = sorted(set(first) ^ set(second))
    if only:
        note += f"; without a gradient in one of them: {', '.join(only)}"
    mean = float(np.mean(relative_means)) if relative_means else 0.0
    tolerances = run.tolerances
    return Row(
        run.subject.config_name, run.subject.source, "gradients", pair, worst, mean, tolerances.for_stage("gradients"),
        "", measure="relative", target=tolerances.target_for("gradients"), note=note,
    )  # fmt: skip
