"""Checkpoints by Hugging Face Hub name ("openai/whisper-tiny.en"): the one resolution every ``from_pretrained`` uses.

``resolve(name_or_path, groups, options)`` returns a local directory. A path that exists is returned as it is (so
local directories keep working unchanged); any other name that is a valid repository id is a Hub repository, whose
wanted files are fetched one by one with ``huggingface_hub.hf_hub_download`` into huggingface_hub's own cache, the
cache Transformers shares, and the snapshot directory they lie in is returned.

What a class wants is a list of ``FileGroup``: alternatives in the order of preference (``model.safetensors`` before
``pytorch_model.bin`` ...); the first alternative the repository has wins, and a sharded checkpoint's index brings
the shards it names. Everything about the cache is huggingface_hub's: ``HF_HOME``, ``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE`` are read by that library, a file already cached is not downloaded again, and downloads go to
``.incomplete`` files renamed when whole, so an interrupted download leaves nothing half-written. A name that cannot
be had is one ``CheckpointError`` line naming the repository, the revision and what to do.

huggingface_hub is imported only when a name is not a local path: ``import whisper_multi`` stays light.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from whisper_multi.errors import CheckpointError, ModelNotAvailableError

INDEX_SUFFIX = ".index.json"  # a sharded checkpoint's index ("model.safetensors.index.json"), naming its shards
_COMMIT_HASH_LENGTH = 40


# Transformers' Hub arguments, taken by every from_pretrained (see HubOptions).
HUB_ARGUMENTS = ("revision", "cache_dir", "local_files_only", "token", "subfolder")


@dataclass(frozen=True)
class HubOptions:
    """The Hub arguments of every ``from_pretrained``, as Transformers names them.

    revision: branch, tag or commit hash (None: the repository's default branch, "main").
    cache_dir: the Hub cache to use (None: huggingface_hub's, from ``HF_HUB_CACHE`` or ``HF_HOME``).
    local_files_only: never download; use the cache only (as ``HF_HUB_OFFLINE=1`` does for every call).
    token: a Hub access token for private or gated repositories (None: huggingface_hub's stored login).
    subfolder: the folder inside the repository (or inside a local directory) that holds the files.
    """

    revision: str | None = None
    cache_dir: str | os.PathLike[str] | None = None
    local_files_only: bool = False
    token: str | bool | None = None
    subfolder: str = ""

    @classmethod
    def take(cls, arguments: dict[str, Any]) -> HubOptions:
        """The Hub arguments among a ``from_pretrained``'s keyword ``arguments``, removed from them (the rest are the
        class's own)."""
        return cls(**{name: arguments.pop(name) for name in HUB_ARGUMENTS if name in arguments})


def refuse_unknown_arguments(arguments: dict[str, Any], where: str) -> None:
    """What is left of ``arguments`` once the Hub arguments are taken is a mistake: say so as Python would."""
    if arguments:
        names = ", ".join(sorted(arguments))
        raise TypeError(
            f"{where}() got unexpected keyword arguments {names}; the Hub arguments are {', '.join(HUB_ARGUMENTS)}"
        )


@dataclass(frozen=True)
class FileGroup:
    """Files a class needs: ``alternatives`` in the order of preference, each a tuple of files that must all be
    there; the first alternative the repository has is fetched. An optional group that no alternative satisfies is
    skipped; ``only_with`` fetches the group only when that file was fetched (a CTranslate2 model's vocabulary)."""

    alternatives: tuple[tuple[str, ...], ...]
    what: str
    required: bool = True
    only_with: str | None = None

    def names(self) -> str:
        return ", ".join(" + ".join(alternative) for alternative in self.alternatives)


def required_file(name: str) -> FileGroup:
    return FileGroup(((name,),), name)


def optional_files(*names: str, only_with: str | None = None) -> list[FileGroup]:
    """Each of ``names`` when the repository has it."""
    return [FileGroup(((name,),), name, required=False, only_with=only_with) for name in names]


def resolve(
    name_or_path: str | os.PathLike[str], groups: Sequence[FileGroup], options: HubOptions | None = None
) -> Path:
    """The local directory holding what ``groups`` want: ``name_or_path`` itself when it exists (or is no valid Hub
    repository id, so the reader's own "no such file" error names it), else the Hub snapshot after fetching."""
    options = options or HubOptions()
    local = Path(name_or_path)
    if local.exists() or not is_repo_id(str(name_or_path)):
        return local / options.subfolder if options.subfolder else local
    return _HubFetch(str(name_or_path), options).fetch(groups)


def is_repo_id(name: str) -> bool:
    """Whether ``name`` has the form of a Hub repository id ("openai/whisper-tiny.en", or a bare "gpt2")."""
    if not name or name.count("/") > 1 or name.startswith(("/", ".", "~")) or "\\" in name:
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def hub_cache(options: HubOptions | None = None) -> Path:
    """The Hub cache in use: ``cache_dir``, else huggingface_hub's (``HF_HUB_CACHE``, else ``HF_HOME``/hub)."""
    if options is not None and options.cache_dir is not None:
        return Path(options.cache_dir).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """Whether huggingface_hub runs offline (``HF_HUB_OFFLINE=1``, read by that library when it is imported)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_blobs_folder(directory: Path) -> Path | None:
    """The blobs folder of the Hub cache repository whose snapshot holds ``directory`` (``models--org--name/
    snapshots/<commit>/...``), where the snapshot's files link to; None outside a Hub cache."""
    parts = directory.absolute().parts
    for index in range(len(parts) - 2, 0, -1):
        if parts[index] == "snapshots" and parts[index - 1].startswith("models--"):
            return Path(*parts[:index]).resolve() / "blobs"
    return None


class _HubFetch:
    """Fetching the files of one repository at one revision; after the first file, the revision is pinned to the
    commit it resolved to, so every file comes from the same snapshot."""

    def __init__(self, repo_id: str, options: HubOptions) -> None:
        self.repo_id = repo_id
        self.options = options
        self.requested = options.revision or "main"
        self.revision = self.requested
        self.snapshot: Path | None = None
        self.fetched: dict[str, Path | None] = {}
        self.cache_miss: Exception | None = None  # why a file could only be looked for in the cache

    def fetch(self, groups: Sequence[FileGroup]) -> Path:
        for group in groups:
            if group.only_with is not None and self.fetched.get(group.only_with) is None:
                continue
            if not any(self._fetch_all(alternative) for alternative in group.alternatives) and group.required:
                raise ModelNotAvailableError(self._missing_message(group))
        if self.snapshot is None:  # only optional groups were asked for, and the repository has none of them
            every = tuple(alternative for group in groups for alternative in group.alternatives)
            raise ModelNotAvailableError(self._missing_message(FileGroup(every, "file wanted")))
        return self.snapshot / self.options.subfolder if self.options.subfolder else self.snapshot

    def _fetch_all(self, alternative: tuple[str, ...]) -> bool:
        for name in alternative:
            path = self._fetch_file(name)
            if path is None:
                return False
            if name.endswith(INDEX_SUFFIX):
                self._fetch_shards(path)
        return True

    def _fetch_shards(self, index: Path) -> None:
        """Every shard a sharded checkpoint's index names; a missing one is an error, not a fallback."""
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted({str(shard) for shard in weight_map.values()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise CheckpointError(f"{self._where()}: {index.name} is no checkpoint index ({error})") from error
        for shard in shards:
            if self._fetch_file(shard) is None:
                raise ModelNotAvailableError(
                    self._missing_message(FileGroup(((shard,),), f"shard named by {index.name}"))
                )

    def _fetch_file(self, name: str) -> Path | None:
        """The local path of one repository file, or None when the repository (or, offline, the cache) lacks it."""
        if name in self.fetched:
            return self.fetched[name]
        import huggingface_hub
        from huggingface_hub import errors

        repo_file = str(PurePosixPath(self.options.subfolder, name)) if self.options.subfolder else name
        try:
            path: Path | None = Path(
                huggingface_hub.hf_hub_download(
                    self.repo_id,
                    repo_file,
                    revision=self.revision,
                    cache_dir=None if self.options.cache_dir is None else str(self.options.cache_dir),
                    local_files_only=self.options.local_files_only,
                    token=self.options.token,
                )
            )
        except errors.LocalEntryNotFoundError as error:  # before EntryNotFoundError, which it subclasses
            self.cache_miss, path = error, None
        except errors.EntryNotFoundError:
            path = None
        except errors.HfHubHTTPError as error:
            raise ModelNotAvailableError(self._remote_message(error)) from error
        if path is not None and self.snapshot is None:
            self._pin(path, repo_file)
        self.fetched[name] = path
        return path

    def _pin(self, path: Path, repo_file: str) -> None:
        """Remember the snapshot directory of the first file and fetch the rest from the same commit."""
        snapshot = path
        for _ in PurePosixPath(repo_file).parts:
            snapshot = snapshot.parent
        self.snapshot = snapshot
        if len(snapshot.name) == _COMMIT_HASH_LENGTH:
            self.revision = snapshot.name

    # --- messages --------------------------------------------------------------------------------------------------
    def _where(self) -> str:
        return f"{self.repo_id} (revision {self.requested})"

    def _remote_message(self, error: Exception) -> str:
        from huggingface_hub import errors

        where = self._where()
        if isinstance(error, errors.GatedRepoError):
            return f"{where} is a gated repository on the Hub; accept its conditions on its page, then log in (`hf auth login`) or pass token="
        if isinstance(error, errors.RepositoryNotFoundError):
            return (
                f"{where} is no local directory and no model repository on the Hub (or it is private and no valid "
                f"token was given); check the name, or log in (`hf auth login`) or pass token="
            )
        if isinstance(error, errors.RevisionNotFoundError):
            return f"{self.repo_id} has no revision {self.requested!r} on the Hub; pass an existing branch, tag or commit hash"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"{where}: the Hub answered {first_line}; try again later or point HF_HOME at a cache that holds it"

    def _missing_message(self, group: FileGroup) -> str:
        """No alternative of a required group: the repository lacks them, or they could only be looked for in the
        cache (offline, local_files_only, or the Hub out of reach)."""
        if self.cache_miss is None:
            return f"{self._where()} has no {group.what}: expected one of {group.names()}"
        cache = hub_cache(self.options)
        from huggingface_hub.file_download import repo_folder_name

        folder = cache / repo_folder_name(repo_id=self.repo_id, repo_type="model")
        revision_cached = (folder / "refs" / self.requested).is_file() or (
            folder / "snapshots" / self.requested
        ).is_dir()
        if not folder.is_dir():
            missing = f"{self._where()} is no local directory and is not in the Hub cache ({cache})"
        elif not revision_cached:
            missing = f"{self.repo_id} has no revision {self.requested!r} in the Hub cache ({cache})"
        else:
            missing = f"{self._where()} in the Hub cache ({cache}) lacks {group.names()}"
        return f"{missing}, and {self._why_cache_only()}"

    def _why_cache_only(self) -> str:
        if self.options.local_files_only:
            return "local_files_only=True forbids downloading; pass local_files_only=False or point HF_HOME at a cache that holds it"
        if hub_offline():
            return "HF_HUB_OFFLINE=1 forbids downloading; run without HF_HUB_OFFLINE or point HF_HOME at a cache that holds it"
        cause: Any = self.cache_miss.__cause__ if self.cache_miss is not None else None
        reason = f" ({type(cause).__name__})" if cause is not None else ""
        return f"the Hub could not be reached{reason}; check the network connection or point HF_HOME at a cache that holds it"
