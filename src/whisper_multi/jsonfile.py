"""Reading and writing the small JSON files of a model directory (config, generation config, preprocessor).

Written once for every class that keeps its settings in one JSON file: reads name the file and the line of a JSON
error, writes go through a temporary file so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

from whisper_multi.errors import ConfigError
from whisper_multi.hub import HubOptions, required_file, resolve


def read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{path} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


def resolve_file(path: str | os.PathLike[str], name: str) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise ConfigError(f"no {name} at {path}; pass a directory holding {name} or the file itself")
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write through a temporary file in the same directory so a crash never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class JsonFileMixin:
    """``from_pretrained`` / ``save_pretrained`` / ``to_json_file`` for a class with ``to_dict`` and ``from_dict``,
    stored as ``_file_name`` in a directory."""

    _file_name: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> Any:
        raise NotImplementedError

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(Path(path), self.to_json_string())

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> Any:
        return cls.from_dict(read_json(Path(path)))

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        **overrides: Any,
    ) -> Any:
        """Read the class's file from a directory, the file given, or a Hub repository by name
        ("openai/whisper-tiny.en", with Transformers' Hub arguments); ``overrides`` replace values read."""
        options = HubOptions.take(overrides)
        file = resolve_file(resolve(name_or_path, [required_file(cls._file_name)], options), cls._file_name)
        data = read_json(file)
        try:
            return cls.from_dict(data, **overrides)
        except ConfigError as error:
            raise ConfigError(f"{file}: {error}") from error

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write the class's file into ``directory`` (created if needed), atomically."""
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise ConfigError(f"cannot save into {directory}: it is a file, not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        file = directory / self._file_name
        self.to_json_file(file)
        return file
