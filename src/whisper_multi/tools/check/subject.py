"""One set of weights loaded into each framework's model: what a comparison compares."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from whisper_multi.configuration import WhisperConfig
from whisper_multi.tools.check.adapters import ADAPTERS, Adapter
from whisper_multi.tools.check.frameworks import missing_framework
from whisper_multi.tools.check.rows import describe_error


@dataclass
class Subject:
    """One set of weights (canonical ``tensors``) loaded into each framework's speech-to-text model."""

    config_name: str
    source: str
    config: WhisperConfig
    tensors: Mapping[str, np.ndarray]  # what every model should hold
    models: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # framework -> why it did not run (not installed)
    errors: dict[str, str] = field(default_factory=dict)  # framework -> why its model could not be built or loaded
    classifiers: dict[str, Any] = field(default_factory=dict)


def build_subject(
    config_name: str,
    source: str,
    config: WhisperConfig,
    tensors: Mapping[str, np.ndarray],
    frameworks: Sequence[str],
    loader: Callable[[Adapter], Any] | None = None,
) -> Subject:
    """Every framework's model for ``tensors``: built from them (``loader`` None) or loaded by ``loader``."""
    subject = Subject(config_name, source, config, tensors)
    for name in frameworks:
        reason = missing_framework(name)
        if reason is not None:
            subject.skipped[name] = reason
            continue
        adapter = ADAPTERS[name]
        try:
            subject.models[name] = (
                loader(adapter) if loader else adapter.build(config, tensors, "conditional_generation")
            )
        except Exception as error:  # a broken conversion must be reported, not crash the run
            subject.errors[name] = describe_error(error)
    return subject
