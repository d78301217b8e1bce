"""Cross-framework conformance: the same weights give the same numbers in PyTorch, TensorFlow and Flax.

``python -m conformance`` runs the matrix (configs x weight sources x stages x framework pairs, see ``matrix``),
checks that the three model files keep one skeleton (``structure``) and writes ``report.json`` and ``REPORT.md``
(``report``). The comparisons themselves are ``whisper_multi.tools.check``'s, which ``whisper-multi check`` runs on a
user's checkpoint. The suite exits non-zero when anything did not pass: 1 on a failure, 3 when the only rows
that did not pass are stages not available yet (e.g. ``generate``).
"""

from __future__ import annotations

from .matrix import CONFIGS, SOURCES, random_config, random_features, random_tensors, random_token_ids
from .runner import main, run_suite
from .structure import check_structure

__all__ = [
    "CONFIGS",
    "SOURCES",
    "check_structure",
    "main",
    "random_config",
    "random_features",
    "random_tensors",
    "random_token_ids",
    "run_suite",
]
