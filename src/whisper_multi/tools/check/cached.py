"""The ``cached`` stage group: logits decoded step by step with the dynamic and the static cache, against the full
forward, within each framework and across."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from whisper_multi.tools.check.adapters import Adapter
from whisper_multi.tools.check.frameworks import to_numpy
from whisper_multi.tools.check.rows import differences
from whisper_multi.tools.check.run import Outputs, Run
from whisper_multi.tools.check.stage_names import CACHED_POSITIONS, CACHED_STAGES

CACHE_KINDS = (("cached_logits", "dynamic"), ("static_cache_logits", "static"))  # (stage, cache)


def cached(run: Run) -> None:
    run.decode_all()
    stepped: Outputs = {}
    ids, states = run.inputs.decoder_input_ids, run.reference_states()
    for name in run.wanted():
        blocked = run.blocked([name], "forward", "decode")
        if blocked is None:
            decode = functools.partial(stepwise_logits, run.adapter(name), run.model(name), states, ids)
            found = run.guarded("cached", name, decode)
            blocked = run.blocked([name], "cached")
        for stage, kind in CACHE_KINDS:
            if blocked:
                run.unavailable(stage, name, *blocked)
                continue
            stepped.setdefault(name, {})[stage] = found[kind]
            full = run.decoded[name]["logits"][:, : found[kind].shape[1]]
            run.row(stage, name, differences(found[kind], full), note=f"{kind} cache, step by step, vs full")
    for stage in CACHED_STAGES:
        run.compare_outputs(stage, stage, stepped, ("forward", "decode", "cached"))


def stepwise_logits(adapter: Adapter, model: Any, states: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Logits of the first ``CACHED_POSITIONS`` positions decoded two tokens then one at a time, with the dynamic
    cache and with a static one."""
    results = {}
    length = min(ids.shape[1], CACHED_POSITIONS)
    for kind in ("dynamic", "static"):
        cache = adapter.init_cache(model, ids.shape[0], length) if kind == "static" else None
        start, steps = 0, []
        for stop in [min(2, length), *range(min(2, length) + 1, length + 1)]:
            inputs: dict[str, Any] = {"encoder_states": states, "decoder_input_ids": ids[:, start:stop]}
            if cache is not None:
                inputs["past_key_values"] = cache
            if kind == "static":
                inputs["cache_position"] = adapter.tensor(np.arange(start, stop))
            out = adapter.run(model, use_cache=True, **inputs)
            steps.append(to_numpy(out.logits))
            cache, start = out.past_key_values, stop
        results[kind] = np.concatenate(steps, axis=1)
    return results
