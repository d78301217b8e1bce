"""Decoding logic written once for every backend: logit rules and the array operations they need."""

from whisper_multi.decoding.ops import ArrayOps, NumpyOps
from whisper_multi.decoding.rules import LogitRules

__all__ = ["ArrayOps", "LogitRules", "NumpyOps"]
