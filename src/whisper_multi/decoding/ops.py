"""The few array operations the decoding rules need, behind one small interface.

The rules in ``rules.py`` and the searches in ``search.py`` are written once against ``ArrayOps``; each backend
supplies an adapter for its tensors (``pt/generation.py``, ``tf/generation.py`` and ``flax/generation.py`` each
define one), so the same code runs eagerly in numpy and PyTorch and inside ``tf.function`` / ``jax.jit``. Python's ``&``, ``|``, ``~``, comparisons and arithmetic work on the
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

    # --- used by the searches (search.py) ---------------------------------------------------------------------------
    def cast(self, x: Any, dtype: str) -> Any: ...

    def full(self, shape: tuple[int, ...], value: Any, dtype: str) -> Any: ...

    def reshape(self, x: Any, shape: tuple[int, ...]) -> Any: ...

    def concat(self, xs: list[Any], axis: int) -> Any: ...

    def exp(self, x: Any) -> Any: ...

    def log(self, x: Any) -> Any: ...

    def sum(self, x: Any, axis: int) -> Any: ...

    def cumsum(self, x: Any, axis: int) -> Any: ...

    def argmax(self, x: Any, axis: int) -> Any:
        """int32 indices; the first of equal maxima."""

    def top_k(self, x: Any, k: int) -> tuple[Any, Any]:
        """The ``k`` largest values along the last axis, largest first, and their int32 indices."""

    def take_rows(self, x: Any, indices: Any) -> Any:
        """``x[indices]``: rows of the first axis."""

    def take_along_last(self, x: Any, indices: Any) -> Any:
        """``x[b, indices[b, j]]`` for a 2-D ``x`` and 2-D int32 ``indices``."""

    def any(self, x: Any) -> Any:
        """A scalar bool: is any element true."""

    def all(self, x: Any) -> Any:
        """A scalar bool: are all elements true."""


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

    def cast(self, x: Any, dtype: str) -> np.ndarray:
        return np.asarray(x).astype(dtype)

    def full(self, shape: tuple[int, ...], value: Any, dtype: str) -> np.ndarray:
        return np.full(shape, value, dtype=dtype)

    def reshape(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return np.reshape(x, shape)

    def concat(self, xs: list[Any], axis: int) -> np.ndarray:
        return np.concatenate(xs, axis=axis)

    def exp(self, x: np.ndarray) -> np.ndarray:
        return np.exp(x)

    def log(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(x)

    def sum(self, x: np.ndarray, axis: int) -> np.ndarray:
        return np.sum(x, axis=axis)

    def cumsum(self, x: np.ndarray, axis: int) -> np.ndarray:
        return np.cumsum(x, axis=axis, dtype=np.int32)

    def argmax(self, x: np.ndarray, axis: int) -> np.ndarray:
        return np.argmax(x, axis=axis).astype(np.int32)

    def top_k(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        indices = np.argsort(-x, axis=-1, kind="stable")[..., :k].astype(np.int32)
        return np.take_along_axis(x, indices, axis=-1), indices

    def take_rows(self, x: np.ndarray, indices: Any) -> np.ndarray:
        return x[np.asarray(indices)]

    def take_along_last(self, x: np.ndarray, indices: Any) -> np.ndarray:
        return np.take_along_axis(x, np.asarray(indices), axis=-1)

    def any(self, x: np.ndarray) -> Any:
        return np.any(x)

    def all(self, x: np.ndarray) -> Any:
        return np.all(x)
