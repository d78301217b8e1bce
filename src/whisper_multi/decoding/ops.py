"""The few array operations the decoding rules need, behind one small interface.

The rules in ``rules.py`` are written once against ``ArrayOps``; each backend supplies an adapter for its tensors
(``whisper_multi.pt``, ``.tf`` and ``.flax`` each define one), so the same code runs eagerly in numpy and PyTorch
and inside ``tf.function`` / ``jax.jit``. Python's ``&``, ``|``, ``~``, comparisons and arithmetic work on the
tensors of every framework and need no adapter. ``NumpyOps`` is the reference adapter, used by the tests.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class ArrayOps(Protocol):
    """What a backend implements for the decoding rules; ``x`` is that framework's tensor type."""

    def asarray(self, value: Any, dtype: str) -> Any:
        """A constant tensor from a Python or numpy value; ``dtype`` is "int32", "float32" or "bool"."""

    def arange(self, n: int) -> Any: ...

    def where(self, condition: Any, x: Any, y: Any) -> Any: ...

    def max(self, x: Any, axis: int) -> Any: ...

    def logsumexp(self, x: Any, axis: int) -> Any: ...

    def log_softmax(self, x: Any, axis: int) -> Any: ...

    def take_column(self, x: Any, index: Any) -> Any:
        """``x[:, index]`` for a 2-D tensor and a scalar index that may be a traced tensor."""

    def expand_last(self, x: Any) -> Any:
        """``x[..., None]``."""


class NumpyOps:
    """The reference adapter."""

    def asarray(self, value: Any, dtype: str) -> np.ndarray:
        return np.asarray(value, dtype=dtype)

    def arange(self, n: int) -> np.ndarray:
        return np.arange(n, dtype=np.int32)

    def where(self, condition: Any, x: Any, y: Any) -> np.ndarray:
        return np.where(condition, x, y)

    def max(self, x: np.ndarray, axis: int) -> np.ndarray:
        return np.max(x, axis=axis)

    def logsumexp(self, x: np.ndarray, axis: int) -> np.ndarray:
        peak = np.max(x, axis=axis, keepdims=True)
        peak = np.where(np.isfinite(peak), peak, 0.0)
        with np.errstate(divide="ignore"):
            return np.squeeze(peak, axis) + np.log(np.sum(np.exp(x - peak), axis=axis))

    def log_softmax(self, x: np.ndarray, axis: int) -> np.ndarray:
        return x - np.expand_dims(self.logsumexp(x, axis), axis)

    def take_column(self, x: np.ndarray, index: Any) -> np.ndarray:
        return x[:, int(index)]

    def expand_last(self, x: np.ndarray) -> np.ndarray:
        return x[..., None]
