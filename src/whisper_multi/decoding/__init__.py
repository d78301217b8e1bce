"""Decoding logic written once for every backend: logit rules and the array operations they need."""

from .ops import ArrayOps, NumpyOps
from .rules import LogitRules

__all__ = ["ArrayOps", "LogitRules", "NumpyOps"]
