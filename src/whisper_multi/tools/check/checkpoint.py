"""``whisper-multi check``: the real-weight part of the conformance matrix on one checkpoint."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from whisper_multi.errors import InputError
from whisper_multi.tools.check.frameworks import FRAMEWORKS
from whisper_multi.tools.check.inputs import DEFAULT_AUDIO, audio_inputs, read_audio, read_wav
from whisper_multi.tools.check.rows import ERROR, FAIL, NOT_AVAILABLE, Row, exit_code
from whisper_multi.tools.check.stages import STAGE_GROUPS, compare
from whisper_multi.tools.check.subject import build_subject
from whisper_multi.tools.check.tolerances import REAL_TOLERANCES, Tolerances

# Every stage of the real-weight matrix but training, which measures the backends' optimizers rather than the
# checkpoint, and export, which measures the exporters and their runtimes (the conformance suite runs both).
CHECK_GROUPS = tuple(group for group in STAGE_GROUPS if group not in ("training", "export"))


@dataclass
class CheckReport:
    model: str
    backends: list[str]
    rows: list[Row]
    skipped: dict[str, str]
    wall_s: float

    @property
    def failures(self) -> list[Row]:
        return [row for row in self.rows if row.status in (FAIL, ERROR)]

    @property
    def not_available(self) -> list[Row]:
        return [row for row in self.rows if row.status == NOT_AVAILABLE]

    @property
    def exit_code(self) -> int:
        """``exit_code`` of the rows, and 4 (nothing compared) when fewer than two backends ran."""
        code = exit_code(self.rows)
        ran = [name for name in self.backends if name not in self.skipped]
        return 4 if code == 0 and len(ran) < 2 else code


def check_tolerances(tolerance: float | None) -> Tolerances:
    """The real-weight bounds, with ``--tolerance`` (when given) as the fixed bound of logits, attention weights
    and loss; hidden states keep at least their own bound."""
    if tolerance is None:
        return REAL_TOLERANCES
    hidden_states = max(tolerance, REAL_TOLERANCES.hidden_states)
    return dataclasses.replace(REAL_TOLERANCES, absolute=tolerance, relative=0.0, hidden_states=hidden_states)


def run_check(
    model: str | None = None,
    backends: Sequence[str] = FRAMEWORKS,
    audio: str | os.PathLike[str] | None = None,
    tolerance: float | None = None,
    groups: Iterable[str] = CHECK_GROUPS,
    on_row: Callable[[Row], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> CheckReport:
    """The real-weight part of the conformance matrix on one checkpoint: every backend loads it with its own
    ``from_pretrained``; each stage is compared across the backends on the same clip."""
    from whisper_multi.weights.convert import read_checkpoint
    from whisper_multi.weights.packages import model_directory

    unknown = [name for name in backends if name not in FRAMEWORKS]
    if unknown:
        raise InputError(f"unknown backend(s) {', '.join(unknown)}; expected some of {', '.join(FRAMEWORKS)}")
    started = time.perf_counter()
    tolerances = check_tolerances(tolerance)
    with model_directory(model) as (directory, label):
        checkpoint = read_checkpoint(directory)
        tensors = {name: np.asarray(array, dtype=np.float32) for name, array in checkpoint.tensors.items()}
        subject = build_subject(
            label, checkpoint.format, checkpoint.config, tensors, backends, loader=lambda b: b.load(directory)
        )
        clip = read_audio(audio) if audio is not None else read_wav(DEFAULT_AUDIO)
        inputs = audio_inputs(clip, checkpoint.config, subject)
        rows = compare(subject, inputs, tolerances, groups, on_row=on_row, on_stage=on_stage)
    return CheckReport(label, list(backends), rows, dict(subject.skipped), time.perf_counter() - started)
