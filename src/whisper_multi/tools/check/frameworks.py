"""The frameworks a check compares, read from the backend registry, and the framework-neutral helpers around them:
pairs, names on the command line, arrays back to numpy, each framework's layout of a canonical tensor."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import numpy as np

from whisper_multi.backends import BACKENDS
from whisper_multi.errors import InputError

FRAMEWORKS: tuple[str, ...] = tuple(BACKENDS)
FRAMEWORK_NAMES: dict[str, str] = {key: spec.framework for key, spec in BACKENDS.items()}
FRAMEWORK_MODULES: dict[str, tuple[str, ...]] = {key: spec.framework_modules for key, spec in BACKENDS.items()}
# The mel features as each framework's tensor type (``return_tensors``), compared with the numpy array.
MEL_TENSOR_TYPES: dict[str, str] = {key: spec.return_tensors for key, spec in BACKENDS.items()}

# Each framework's layout of a canonical (PyTorch-layout) tensor: the axis order per kind of parameter, identity
# where absent. Stated here independently of ``weights.table.LAYOUT_RULES`` so a wrong rule there shows up.
NATIVE_AXES: dict[str, dict[str, tuple[int, ...]]] = {
    "pt": {},
    "tf": {"linear_weight": (1, 0), "conv_weight": (2, 1, 0)},
    "flax": {"linear_weight": (1, 0), "conv_weight": (2, 1, 0)},
}


def parse_names(text: str, allowed: Sequence[str], what: str) -> list[str]:
    """The comma-separated names of ``text`` (``--backends``, ``--stages``, ...); an unknown or missing one is an
    error naming it and what is allowed."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        found = f"unknown {', '.join(unknown)}" if unknown else "no name"
        raise InputError(f"{what} {text!r}: {found}; expected some of {', '.join(allowed)}")
    return names


def pairs(frameworks: Sequence[str]) -> list[tuple[str, str]]:
    """The framework pairs, in FRAMEWORKS order: pt-tf, pt-flax, tf-flax (those of ``frameworks`` only)."""
    ordered = [name for name in FRAMEWORKS if name in frameworks]
    return [(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :]]


def missing_framework(name: str) -> str | None:
    """Why ``name``'s backend cannot run here (a module not installed), or None."""
    absent = [module for module in FRAMEWORK_MODULES[name] if importlib.util.find_spec(module) is None]
    return f"{', '.join(absent)} not installed" if absent else None


def to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # tf
        return np.asarray(value.numpy())
    return np.asarray(value)  # numpy, jax


def native_layout(array: np.ndarray, kind: str, framework: str) -> np.ndarray:
    axes = NATIVE_AXES[framework].get(kind)
    return np.asarray(array) if axes is None else np.transpose(array, axes)


def canonical_layout(array: np.ndarray, kind: str, framework: str) -> np.ndarray:
    axes = NATIVE_AXES[framework].get(kind)
    return np.asarray(array) if axes is None else np.transpose(array, np.argsort(axes))
