"""OUT written atomically: everything goes into a hidden folder beside it, renamed onto OUT only once complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from whisper_multi.errors import InputError


def check_destination(out: Path) -> None:
    """OUT must not exist, and a folder must be creatable beside it: said before any work is done. (Tried, not read
    from the permission bits, which root ignores and read-only file systems do not show.)"""
    if out.exists():
        raise InputError(f"{out} exists; export writes a new folder: choose another OUT or remove it")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise InputError(f"{parent} is not a folder; create it first, or choose OUT inside an existing folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".probe", dir=parent))
    except OSError as error:
        raise InputError(
            f"cannot write in {parent} ({error.strerror}); choose OUT in a folder you can write to"
        ) from None


@contextlib.contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out``, renamed to ``out`` when the block succeeds, removed when it fails."""
    check_destination(out)
    parent = out.absolute().parent
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".exporting", dir=parent))
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp's folder is private; the artifact is an ordinary folder
        os.rename(staging, out)  # fails, rather than replacing, if OUT appeared meanwhile
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
