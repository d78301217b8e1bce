"""Checkpoints of a fine-tuning run under ``OUT/checkpoints``, each written so a kill never leaves one unusable.

A checkpoint is a directory ``step-NNNNNNN`` holding the model (``save_pretrained``: config and canonical
``model.safetensors``, so every backend, ``evaluate``, ``convert`` and ``transcribe`` load it), the processor's
files, the backend's optimizer state and ``training_state.json``. It is written under a hidden ``.partial`` name
and renamed when complete; only then does ``latest.json`` (itself replaced atomically) point to it. A kill at any
moment leaves ``latest.json`` naming a complete checkpoint; leftover partial directories are removed on resume.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from whisper_multi.errors import CheckpointError
from whisper_multi.jsonfile import atomic_write_text, read_json

CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest.json"
STATE_FILE = "training_state.json"
PARTIAL_MARK = ".partial-"


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def write_checkpoint(out: Path, step: int, write: Callable[[Path], None], kept: int) -> Path:
    """Write the checkpoint after ``step`` optimizer steps through ``write(directory)``; keep the newest ``kept``."""
    root = Path(out) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    partial = root / f".{final.name}{PARTIAL_MARK}{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    write(partial)
    _sync_tree(partial)
    if final.exists():  # the same step written again after a resume
        shutil.rmtree(final)
    os.replace(partial, final)
    atomic_write_text(root / LATEST_FILE, json.dumps({"step": step, "directory": final.name}) + "\n")
    _prune(root, kept, final)
    return final


def latest_checkpoint(out: Path) -> Path | None:
    """The directory ``latest.json`` names (None when the run wrote no checkpoint yet)."""
    root = Path(out) / CHECKPOINTS_DIR
    pointer = root / LATEST_FILE
    if not pointer.is_file():
        return None
    directory = root / str(read_json(pointer)["directory"])
    if not (directory / STATE_FILE).is_file():
        raise CheckpointError(
            f"{pointer} names {directory.name}, which has no {STATE_FILE}: the checkpoint was removed or damaged; "
            f"delete {root} to start the run again"
        )
    return directory


def remove_partial_checkpoints(out: Path) -> list[Path]:
    """Delete what a killed run left half-written; returns the removed directories."""
    root = Path(out) / CHECKPOINTS_DIR
    partials = [path for path in root.glob(f".*{PARTIAL_MARK}*") if path.is_dir()] if root.is_dir() else []
    for path in partials:
        shutil.rmtree(path, ignore_errors=True)
    return partials


def read_state(directory: Path) -> dict[str, Any]:
    return read_json(Path(directory) / STATE_FILE)


def write_state(directory: Path, state: dict[str, Any]) -> None:
    atomic_write_text(Path(directory) / STATE_FILE, json.dumps(state, indent=1) + "\n")


def _prune(root: Path, kept: int, newest: Path) -> None:
    steps = sorted(path for path in root.glob("step-*") if path.is_dir() and path != newest)
    for path in steps[: max(0, len(steps) - (kept - 1))]:
        shutil.rmtree(path, ignore_errors=True)


def _sync_tree(directory: Path) -> None:
    """Flush every file to disk before the rename publishes them (a power cut must not publish empty files)."""
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
