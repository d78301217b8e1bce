"""The decoding an exported artifact runs: the core's plan and prefix for the export's options, greedy."""

from __future__ import annotations

from typing import Any

import numpy as np

from whisper_multi.decoding.generate import generation_config_of
from whisper_multi.decoding.options import DecodingPlan, resolve_request
from whisper_multi.errors import InputError
from whisper_multi.export.options import ExportOptions


def export_plan(model: Any, options: ExportOptions) -> tuple[DecodingPlan, np.ndarray]:
    """(the greedy plan, the prefix (batch_size, prefix_length) int32) that ``generate`` would use for ``model`` with
    the options' language, task, timestamps and max_new_tokens; the prefix is fixed in the artifact."""
    config = model.config
    request = resolve_request(
        generation_config_of(model),
        config.vocab_size,
        config.max_target_positions,
        options.batch_size,
        language=options.language,
        task=options.task,
        return_timestamps=options.timestamps,
        max_new_tokens=options.max_new_tokens,
        num_beams=1,
        do_sample=False,
    )
    if request.needs_language_detection:
        raise InputError(
            "a multilingual model's export needs its language: the prefix is fixed in the artifact; pass "
            "--language (language='fr' in Python)"
        )
    return request.plan(), request.prefix()
