"""Cross-framework parity of one set of weights: the engine of ``whisper-multi check`` and of ``conformance/``.

The same canonical weights are loaded into the PyTorch, TensorFlow and Flax models, and every stage is fed
IDENTICAL inputs in every framework, so a difference names the stage that makes it:

- ``mel``: the numpy extractor's features returned as numpy, torch, tf and jax tensors (must be identical);
- ``weights``: every parameter as each framework holds it, against the canonical tensor put in that framework's
  layout by ``NATIVE_AXES`` below, a statement of the layouts independent of the weight layer's rules;
- ``float64``: every framework's model in float64 on the same inputs: the three must agree to 1e-9 on every output
  of the encoder, decoder and end-to-end stages (they implement the same math), and each framework's float32 outputs
  are measured against its own float64 ones (how exact its float32 arithmetic is). The float32 pair bounds of the
  stages below are then derived from that measurement (``Float64Reference``);
- ``encoder``: the same mel features -> the last encoder state, every hidden state, the attention weights;
- ``decoder``: the same encoder states (the reference framework's) and token ids -> the decoder hidden states,
  self- and cross-attention weights and logits;
- ``e2e``: mel features -> logits, and the loss with labels;
- ``cached``: step-by-step logits (dynamic and static cache) against the full forward, in each framework and across;
- ``gradients``: of the loss, per parameter, relative to the largest magnitude of the reference gradient;
- ``classification``: audio-classification logits (the encoder's weights plus a seeded head);
- ``generation``: token ids of ``generate`` (greedy, beam search, timestamps), when the models have it.

Differences are max and mean absolute values, never signed sums (errors of opposite signs cancel). A framework
that is not installed is skipped and listed, never counted as passed; a stage a model cannot run yet is "not
available", which is not a pass either. No framework is imported at module level.
"""

from __future__ import annotations

from whisper_multi.tools.check.adapters import ADAPTERS, Adapter, FlaxAdapter, TFAdapter, TorchAdapter
from whisper_multi.tools.check.checkpoint import CHECK_GROUPS, CheckReport, check_tolerances, run_check
from whisper_multi.tools.check.frameworks import (
    FRAMEWORK_MODULES,
    FRAMEWORK_NAMES,
    FRAMEWORKS,
    MEL_TENSOR_TYPES,
    NATIVE_AXES,
    canonical_layout,
    missing_framework,
    native_layout,
    pairs,
    parse_names,
    to_numpy,
)
from whisper_multi.tools.check.inputs import (
    DEFAULT_AUDIO,
    GENERATION_NEW_TOKENS,
    SAMPLE_RATE,
    Inputs,
    audio_inputs,
    greedy_ids,
    read_audio,
    read_wav,
)
from whisper_multi.tools.check.report import (
    TOLERANCE_LEGEND,
    format_tolerance,
    markdown_header,
    markdown_row,
    markdown_table,
    summary_line,
)
from whisper_multi.tools.check.rows import (
    ERROR,
    FAIL,
    NOT_AVAILABLE,
    PASS,
    SKIPPED,
    STATUS_ORDER,
    Row,
    describe_error,
    differences,
    exit_code,
    format_value,
    judged,
    layer_note,
    token_differences,
)
from whisper_multi.tools.check.stage_names import (
    CACHED_POSITIONS,
    CLASSIFICATION_LABELS,
    DECODER_STAGES,
    E2E_STAGES,
    ENCODER_STAGES,
    FLOAT64_STAGES,
    GENERATION_SETTINGS,
)
from whisper_multi.tools.check.stages import GROUPS, STAGE_GROUPS, STAGES, StageGroup, classification_weights, compare
from whisper_multi.tools.check.subject import Subject, build_subject
from whisper_multi.tools.check.tolerances import (
    DERIVED_MARGIN,
    FLOAT64_TOLERANCE,
    HIDDEN_STATE_STAGES,
    RANDOM_TOLERANCES,
    REAL_TOLERANCES,
    Float64Reference,
    Tolerances,
)

# The names these helpers had when they were private to one module (the conformance suite and tests use them).
_describe_error = describe_error
_layer_note = layer_note

__all__ = [
    "ADAPTERS",
    "CACHED_POSITIONS",
    "CHECK_GROUPS",
    "CLASSIFICATION_LABELS",
    "DECODER_STAGES",
    "DEFAULT_AUDIO",
    "DERIVED_MARGIN",
    "E2E_STAGES",
    "ENCODER_STAGES",
    "ERROR",
    "FAIL",
    "FLOAT64_STAGES",
    "FLOAT64_TOLERANCE",
    "FRAMEWORKS",
    "FRAMEWORK_MODULES",
    "FRAMEWORK_NAMES",
    "GENERATION_NEW_TOKENS",
    "GENERATION_SETTINGS",
    "GROUPS",
    "HIDDEN_STATE_STAGES",
    "MEL_TENSOR_TYPES",
    "NATIVE_AXES",
    "NOT_AVAILABLE",
    "PASS",
    "RANDOM_TOLERANCES",
    "REAL_TOLERANCES",
    "SAMPLE_RATE",
    "SKIPPED",
    "STAGES",
    "STAGE_GROUPS",
    "STATUS_ORDER",
    "TOLERANCE_LEGEND",
    "Adapter",
    "CheckReport",
    "FlaxAdapter",
    "Float64Reference",
    "Inputs",
    "Row",
    "StageGroup",
    "Subject",
    "TFAdapter",
    "Tolerances",
    "TorchAdapter",
    "_describe_error",
    "_layer_note",
    "audio_inputs",
    "build_subject",
    "canonical_layout",
    "check_tolerances",
    "classification_weights",
    "compare",
    "describe_error",
    "differences",
    "exit_code",
    "format_tolerance",
    "format_value",
    "greedy_ids",
    "judged",
    "layer_note",
    "markdown_header",
    "markdown_row",
    "markdown_table",
    "missing_framework",
    "native_layout",
    "pairs",
    "parse_names",
    "read_audio",
    "read_wav",
    "run_check",
    "summary_line",
    "to_numpy",
    "token_differences",
]
