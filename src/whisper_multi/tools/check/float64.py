"""The ``float64`` stage group: every framework's model in float64 on the same inputs.

The frameworks must agree to ``FLOAT64_TOLERANCE`` on every output of the encoder, decoder and end-to-end stages
(they implement the same math), and each framework's float32 outputs are measured against its own float64 ones
(``float32_error_*`` rows, judged against the stage's tolerance): the float32 pair bounds of the later stages are
derived from those measurements (``Float64Reference``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from whisper_multi.errors import InputError
from whisper_multi.tools.check.rows import ERROR
from whisper_multi.tools.check.run import Outputs, Run, numpy_outputs
from whisper_multi.tools.check.stage_names import FLOAT64_STAGES


def float64(run: Run) -> None:
    run.decode_all()
    float64: dict[str, Outputs] = {"forward": {}, "decode": {}}
    for name in run.frameworks:
        found = run.guarded("float64", name, functools.partial(_run_float64, run, name))
        if found is not None:
            float64["forward"][name], float64["decode"][name] = found
    for stage, (step, key) in FLOAT64_STAGES.items():
        run.compare_outputs(f"float64_{stage}", key, float64[step], ("float64",), "every framework in float64")
    float32 = {"forward": run.outputs, "decode": run.decoded}
    for stage, (step, key) in FLOAT64_STAGES.items():
        for name in run.wanted():
            _float32_error(run, stage, name, float32[step], float64[step], key)


def _run_float64(run: Run, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the full forward, the decoder) of ``name``'s float64 model, on its float32 model's inputs: the mel
    features, and for the decoder the reference framework's float32 encoder states (exact in float64)."""
    adapter, inputs = run.adapter(name), run.inputs
    if run.reference is None:
        raise InputError("no framework produced float32 encoder states to feed the float64 decoders")
    states = run.reference_states().astype(np.float64)
    with adapter.float64_scope():
        model = adapter.build_float64(run.subject.config, run.subject.tensors)
        forward = numpy_outputs(adapter.run(
            model, input_features=inputs.features.astype(np.float64), decoder_input_ids=inputs.decoder_input_ids,
            labels=inputs.labels, output_attentions=True, output_hidden_states=True,
        ))  # fmt: skip
        decoded = numpy_outputs(adapter.run(
            model, encoder_states=states, decoder_input_ids=inputs.decoder_input_ids, output_attentions=True,
            output_hidden_states=True,
        ))  # fmt: skip
    return forward, decoded


def _float32_error(run: Run, stage: str, name: str, float32: Outputs, float64: Outputs, key: str) -> None:
    """``name``'s float32 output against its own float64 one; recorded for the derived pair bounds."""
    error_stage = f"float32_error_{stage}"
    blocked = run.blocked([name], "forward", "decode", "float64")
    if blocked:
        run.unavailable(error_stage, name, *blocked)
        return
    first, second = float32[name].get(key), float64[name].get(key)
    if first is None or second is None:
        run.unavailable(error_stage, name, ERROR, f"no {key} in the outputs")
        return
    bounds = run.fixed_bounds(error_stage, key, float64[name])
    row = run.difference_row(error_stage, name, first, second, bounds, "float32 vs its own float64 run")
    per_layer = [layer[0] for layer in row.layers] if row.layers is not None else [row.max_abs or 0.0]
    run.reference64.errors[(name, stage)] = per_layer
