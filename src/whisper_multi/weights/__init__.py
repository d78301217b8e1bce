"""The weight layer: one table of canonical parameter names, per-framework layout rules, and file formats.

Importing this package imports numpy only, never a framework.
"""

from __future__ import annotations

from whisper_multi.weights.ct2 import CT2Model, ct2_links, read_ct2, write_ct2
from whisper_multi.weights.packages import (
    EMBEDDED_MODELS,
    assemble_split_model,
    embedded_model_files,
    embedded_model_path,
    read_embedded_model,
)
from whisper_multi.weights.table import (
    HEADS,
    KINDS,
    LAYOUT_RULES,
    TIED_PARAMETERS,
    LayoutRule,
    ParamSpec,
    canonical_parameters,
    check_state_dict,
    framework_shape,
    from_framework_layout,
    tied_parameters,
    to_framework_layout,
)

__all__ = [
    "EMBEDDED_MODELS",
    "HEADS",
    "KINDS",
    "LAYOUT_RULES",
    "TIED_PARAMETERS",
    "CT2Model",
    "LayoutRule",
    "ParamSpec",
    "assemble_split_model",
    "canonical_parameters",
    "check_state_dict",
    "ct2_links",
    "embedded_model_files",
    "embedded_model_path",
    "framework_shape",
    "from_framework_layout",
    "read_ct2",
    "read_embedded_model",
    "tied_parameters",
    "to_framework_layout",
    "write_ct2",
]
