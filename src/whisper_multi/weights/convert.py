"""Convert a Whisper checkpoint between formats: the engine of ``whisper-multi convert``.

A source is detected from its files and read into canonical tensors (memory-mapped where the format allows); a
target is written into a temporary directory beside the destination, which is renamed into place only once
everything is written. Any failure, KeyboardInterrupt included, removes the temporary directory and leaves the
destination as it was. A run killed outright (SIGKILL, power loss) cannot clean up: its temporary directory carries
its process id, and the next conversion to the same destination removes it once that process is gone.

Every target directory also carries what ``from_pretrained`` needs besides the weights: ``config.json`` (except
CTranslate2, whose ``config.json`` is its own), ``generation_config.json``, ``preprocessor_config.json`` and the
tokenizer files.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from whisper_multi.configuration import CONFIG_NAME, GENERATION_CONFIG_NAME, WhisperConfig, WhisperGenerationConfig
from whisper_multi.errors import CheckpointError, WhisperMultiError
from whisper_multi.weights import ct2 as ct2_format
from whisper_multi.weights import hf_formats, openai_format
from whisper_multi.weights.packages import embedded_model_path, read_embedded_model
from whisper_multi.weights.safetensors_io import WEIGHTS_INDEX_NAME, WEIGHTS_NAME, load_state_dict, save_state_dict
from whisper_multi.weights.table import canonical_parameters, check_state_dict

# What each target writes (besides generation_config.json, preprocessor_config.json and the tokenizer files).
TARGETS: dict[str, str] = {
    "canonical": "config.json + model.safetensors (shards + model.safetensors.index.json above --max-shard-size)",
    "pt": "config.json + pytorch_model.bin (Transformers PyTorch; sharded with pytorch_model.bin.index.json)",
    "tf": "config.json + tf_model.h5 (Transformers TensorFlow; sharded with tf_model.h5.index.json)",
    "flax": "config.json + flax_model.msgpack (Transformers Flax; sharded with flax_model.msgpack.index.json)",
    # Not model.safetensors: Transformers' TF classes prefer it over tf_model.h5 and then go through its PyTorch
    # conversion path, which fails in 4.57. With pytorch_model.bin each framework finds its own file.
    "hf": "config.json + pytorch_model.bin + tf_model.h5 + flax_model.msgpack: a full Transformers directory that "
    "WhisperForConditionalGeneration, TFWhisper... and FlaxWhisper... all load",
    "openai": f"{openai_format.OPENAI_WEIGHTS_NAME} (openai-whisper: dims + model_state_dict; "
    "whisper.load_model(DST/model.pt)) + config.json",
    "ct2": "model.bin + config.json + vocabulary (CTranslate2 / faster-whisper), float32 or float16",
}
DTYPES = ("float32", "float16", "bfloat16")
SOURCE_FORMATS = ("canonical", "pt", "tf", "flax", "ct2", "openai")
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
    "normalizer.json",
)
PREPROCESSOR_FILE = "preprocessor_config.json"
_PROGRESS_DELAY_S = 1.0  # a conversion faster than this shows no progress bar

# The weight files that identify each source format, in the order they are preferred when several are present.
_FORMAT_FILES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("canonical", (WEIGHTS_NAME, WEIGHTS_INDEX_NAME)),
    ("pt", (hf_formats.PT_WEIGHTS_NAME, hf_formats.index_name(hf_formats.PT_WEIGHTS_NAME))),
    ("tf", (hf_formats.TF_WEIGHTS_NAME, hf_formats.index_name(hf_formats.TF_WEIGHTS_NAME))),
    ("flax", (hf_formats.FLAX_WEIGHTS_NAME, hf_formats.index_name(hf_formats.FLAX_WEIGHTS_NAME))),
    ("ct2", (ct2_format.MODEL_FILE,)),
)
_OPENAI_SUFFIXES = (".pt", ".pth")


@dataclass
class Checkpoint:
    """A checkpoint in canonical form, plus what the destination needs beyond the weights."""

    format: str
    config: WhisperConfig
    tensors: Mapping[str, np.ndarray]  # may make each tensor when asked for (read_ct2)
    directory: Path | None  # where the tokenizer and preprocessor files are
    generation_config: WhisperGenerationConfig | None = None
    alignment_heads: list[tuple[int, int]] = field(default_factory=list)
    vocabulary: list[str] | None = None


# --- detecting and reading a source ---------------------------------------------------------------------------------
def _listing(directory: Path) -> str:
    names = sorted(entry.name for entry in directory.iterdir())
    if not names:
        return "it is empty"
    shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    return f"found: {shown}"


def _expected_files() -> str:
    names = [name for _, files in _FORMAT_FILES for name in files]
    return f"{', '.join(names)} or an openai-whisper *.pt file"


def detect_format(path: str | os.PathLike[str]) -> tuple[str, Path]:
    """(source format, the directory or file to read) for a checkpoint directory or weight file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: it does not exist")
    if path.is_file():
        for name, files in _FORMAT_FILES:
            if path.name in files:
                return name, path.parent
        if path.suffix in _OPENAI_SUFFIXES:
            return "openai", path
        raise CheckpointError(f"{path} is not a Whisper weight file; expected {_expected_files()}")
    for name, files in _FORMAT_FILES:
        if any((path / file).is_file() for file in files):
            return name, path
    openai_files = sorted(p for p in path.iterdir() if p.suffix in _OPENAI_SUFFIXES and p.is_file())
    if len(openai_files) == 1:
        return "openai", openai_files[0]
    if len(openai_files) > 1:
        names = ", ".join(p.name for p in openai_files)
        raise CheckpointError(f"{path} holds several openai-whisper files ({names}); pass the one to convert")
    raise CheckpointError(f"{path} is not a Whisper checkpoint: {_listing(path)}; expected {_expected_files()}")


def _hf_config(directory: Path) -> WhisperConfig:
    if not (directory / CONFIG_NAME).is_file():
        raise CheckpointError(
            f"no {CONFIG_NAME} in {directory}; a Transformers checkpoint needs one beside its weights"
        )
    return WhisperConfig.from_pretrained(directory)


def _generation_config(directory: Path | None) -> WhisperGenerationConfig | None:
    if directory is None or not (directory / GENERATION_CONFIG_NAME).is_file():
        return None
    return WhisperGenerationConfig.from_pretrained(directory)


def _read_canonical(directory: Path, config: WhisperConfig) -> dict[str, np.ndarray]:
    tensors = load_state_dict(directory)
    single = directory / WEIGHTS_NAME
    check_state_dict(config, tensors, str(single if single.is_file() else directory / WEIGHTS_INDEX_NAME))
    return {name: tensors[name] for name in canonical_parameters(config)}  # drops a stored tied proj_out


def read_checkpoint(path: str | os.PathLike[str] | None = None, *, package: str | None = None) -> Checkpoint:
    """Read a checkpoint directory or weight file (or an installed model package) into canonical form."""
    if package is not None:
        model = read_embedded_model(package, dtype=None)
        return _from_ct2(model, embedded_model_path(package))
    if path is None:
        raise CheckpointError("nothing to convert: pass a source path or a package name")
    fmt, location = detect_format(path)
    if fmt == "ct2":
        return _from_ct2(ct2_format.read_ct2(location, dtype=None), location)
    if fmt == "openai":
        directory = location.parent
        beside = WhisperConfig.from_pretrained(directory) if (directory / CONFIG_NAME).is_file() else None
        checkpoint = openai_format.read_openai(location, beside)
        return Checkpoint(
            "openai", checkpoint.config, checkpoint.tensors, directory, _generation_config(directory),
            checkpoint.alignment_heads,
        )  # fmt: skip
    config = _hf_config(location)
    tensors = _read_canonical(location, config) if fmt == "canonical" else hf_formats.READERS[fmt](location, config)
    return Checkpoint(fmt, config, tensors, location, _generation_config(location))


def _from_ct2(model: ct2_format.CT2Model, directory: Path) -> Checkpoint:
    return Checkpoint(
        "ct2", model.config, model.tensors, directory, _generation_config(directory), list(model.alignment_heads),
        model.vocabulary,
    )  # fmt: skip


# --- dtype --------------------------------------------------------------------------------------------------------
def _numpy_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


class _Cast(Mapping[str, np.ndarray]):
    """The tensors in another float dtype, each cast only when a writer asks for it (one at a time)."""

    def __init__(self, tensors: Mapping[str, np.ndarray], dtype: np.dtype) -> None:
        self._tensors, self._dtype = tensors, dtype

    def __getitem__(self, name: str) -> np.ndarray:
        array = self._tensors[name]
        return array if array.dtype == self._dtype else array.astype(self._dtype)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


def _stored_dtype(tensors: Mapping[str, np.ndarray]) -> str:
    names = {array.dtype.name for array in tensors.values()}
    return names.pop() if len(names) == 1 else "float32"


# --- the destination directory --------------------------------------------------------------------------------------
def _check_paths(source: Path | None, destination: Path, overwrite: bool) -> None:
    dst = destination.resolve()
    if source is not None:
        src = source.resolve()
        src_dir = src if src.is_dir() else src.parent
        if src.is_dir() and dst.is_relative_to(src):
            raise CheckpointError(f"the destination {destination} is inside the source {source}; choose another place")
        if dst == src or (overwrite and src_dir.is_relative_to(dst) and dst.exists()):
            raise CheckpointError(f"--overwrite would delete the source {source}, which is inside {destination}")
    if destination.exists() and not destination.is_dir():
        raise CheckpointError(f"the destination {destination} is a file; expected a directory path")
    if destination.exists() and not overwrite:
        raise CheckpointError(f"the destination {destination} already exists; pass --overwrite to replace it")


def _staging_prefix(destination: Path, pid: int) -> str:
    # The owner's pid is in the name, so a later run can tell a killed run's leftovers from a live run's.
    return f".{destination.name}.{pid}."


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to someone else
    return True


def clean_stale_staging(destination: Path) -> list[Path]:
    """Remove what killed conversions to ``destination`` left beside it; return the paths removed.

    A ``.converting`` directory of a dead process is a partial output and is deleted. A ``.replaced`` directory holds
    the previous destination while it is swapped for the new one: if the process died between the two renames, the
    destination is missing and is put back; otherwise the old copy is deleted. Live processes' directories are kept.
    """
    pattern = re.compile(rf"\.{re.escape(destination.name)}\.(\d+)\.[^/]*\.(converting|replaced)")
    removed: list[Path] = []
    try:
        entries = list(destination.parent.iterdir())
    except OSError:
        return removed  # no parent yet: nothing was left there
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or not entry.is_dir() or entry.is_symlink() or _process_alive(int(match.group(1))):
            continue
        kept = entry / destination.name
        if match.group(2) == "replaced" and kept.is_dir() and not destination.exists():
            os.replace(kept, destination)
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


@contextmanager
def _staging(destination: Path) -> Iterator[Path]:
    """A temporary directory beside ``destination``, renamed onto it on success and removed on any failure."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    prefix = _staging_prefix(destination, os.getpid())
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".converting", dir=destination.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary directory
        if destination.exists():
            old = Path(tempfile.mkdtemp(prefix=prefix, suffix=".replaced", dir=destination.parent))
            os.replace(destination, old / destination.name)
            os.replace(tmp, destination)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, destination)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --- progress -----------------------------------------------------------------------------------------------------
def _directory_bytes(directory: Path) -> int:
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass  # a temporary file renamed while we looked
    return total


class _Progress:
    """A progress bar on stderr, from the bytes written so far, shown only once a conversion takes over a second.

    Watching the output directory keeps the writers free of progress code; tqdm draws the bar when installed.
    """

    def __init__(self, directory: Path, total: int, label: str, enabled: bool) -> None:
        self.directory, self.total, self.label, self.enabled = directory, max(total, 1), label, enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Progress:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        if self._stop.wait(_PROGRESS_DELAY_S):
            return
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        bar = tqdm(total=self.total, desc=self.label, unit="B", unit_scale=True, file=sys.stderr) if tqdm else None
        shown = 0
        while True:
            stopped = self._stop.wait(0.2)
            done = self.total if stopped else min(_directory_bytes(self.directory), self.total)
            if bar is not None:
                bar.update(done - shown)
            else:
                filled = int(30 * done / self.total)
                sys.stderr.write(
                    f"\r{self.label}: [{'#' * filled}{' ' * (30 - filled)}] {100 * done // self.total:3d}% "
                    f"{done / 1e6:.0f}/{self.total / 1e6:.0f} MB"
                )
                sys.stderr.flush()
            shown = done
            if stopped:
                break
        if bar is not None:
            bar.close()
        else:
            sys.stderr.write("\n")


# --- companion files ----------------------------------------------------------------------------------------------
def _copy_tokenizer_files(source: Path | None, destination: Path) -> None:
    """The source's tokenizer files, completed by our tokenizers when some are missing (e.g. a CTranslate2 model
    ships only tokenizer.json)."""
    if source is None:
        return
    for name in (*TOKENIZER_FILES, PREPROCESSOR_FILE):
        if (source / name).is_file():
            shutil.copyfile(source / name, destination / name)
    if not any((destination / name).is_file() for name in ("tokenizer.json", "vocab.json")):
        return
    try:  # a tokenizer that lacks Whisper's first merge is written repaired, so loading it never warns again
        from whisper_multi.text.tokenizer_files import repair_first_merge_in_files

        repair_first_merge_in_files(destination)
    except WhisperMultiError:
        pass  # a tokenizer we cannot read is copied as it is
    if all((destination / name).is_file() for name in TOKENIZER_FILES[:6]):
        return
    try:
        from whisper_multi.text.tokenization import WhisperTokenizer
        from whisper_multi.text.tokenization_fast import WhisperTokenizerFast
    except ImportError:
        return
    # Only the class that writes the missing files is built: building a tokenizer costs memory, the fast one more.
    has_fast_file = (destination / "tokenizer.json").is_file()
    tokenizer_class = WhisperTokenizer if has_fast_file else WhisperTokenizerFast
    with tempfile.TemporaryDirectory(dir=destination) as scratch:
        try:
            tokenizer_class.from_pretrained(destination).save_pretrained(scratch)
        except (WhisperMultiError, ImportError, OSError, ValueError):
            return  # a tokenizer we cannot read is copied as it is
        for name in os.listdir(scratch):
            if not (destination / name).exists():
                shutil.copyfile(Path(scratch) / name, destination / name)
    _release_freed_memory()


def _release_freed_memory() -> None:
    """Hand the tokenizer's freed memory back to the system before the weights are streamed (peak memory)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the memory is reused by the allocator instead


def _write_preprocessor(config: WhisperConfig, destination: Path) -> None:
    if (destination / PREPROCESSOR_FILE).is_file():
        return
    try:
        from whisper_multi.features import WhisperFeatureExtractor
    except ImportError:
        return
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(destination)


def _generation_config_for(checkpoint: Checkpoint) -> WhisperGenerationConfig | None:
    heads = [list(pair) for pair in checkpoint.alignment_heads] or None
    if checkpoint.generation_config is not None:
        generation = checkpoint.generation_config
        if heads and not generation.alignment_heads:
            generation.alignment_heads = heads
        return generation
    try:
        return WhisperGenerationConfig.from_model_config(checkpoint.config, alignment_heads=heads)
    except WhisperMultiError:
        return None  # not a published Whisper vocabulary: there are no known special tokens to describe


def _vocabulary(checkpoint: Checkpoint, destination: Path) -> list[str]:
    """One token string per id, as CTranslate2 needs it."""
    if checkpoint.vocabulary is not None:
        return checkpoint.vocabulary
    if checkpoint.directory is not None:
        found = ct2_format.read_vocabulary(checkpoint.directory)
        if found is not None:
            return found
    try:
        from whisper_multi.text.tokenization import WhisperTokenizer

        tokenizer = WhisperTokenizer.from_pretrained(destination)
        tokens = tokenizer.convert_ids_to_tokens(list(range(checkpoint.config.vocab_size)))
    except (ImportError, WhisperMultiError, OSError, ValueError) as error:
        raise CheckpointError(
            f"a CTranslate2 model needs its vocabulary; {checkpoint.directory} has no vocabulary.txt, vocabulary.json "
            f"or tokenizer files that give one ({error})"
        ) from error
    if any(token is None for token in tokens):
        raise CheckpointError(f"the tokenizer of {checkpoint.directory} has no token for some ids below vocab_size")
    return list(tokens)


# --- writing a target -----------------------------------------------------------------------------------------------
def _write_weights(
    checkpoint: Checkpoint, tensors: Mapping[str, np.ndarray], directory: Path, target: str, max_shard_size: int | str
) -> None:
    config = checkpoint.config
    if target == "canonical":
        save_state_dict(directory, tensors, max_shard_size=max_shard_size)
    for framework in ("pt", "tf", "flax"):
        if target in (framework, "hf"):
            hf_formats.WRITERS[framework](directory, config, tensors, max_shard_size)
    if target == "openai":
        openai_format.write_openai(directory / openai_format.OPENAI_WEIGHTS_NAME, config, tensors)
    if target == "ct2":
        dtype = _stored_dtype(tensors)
        if dtype not in ("float32", "float16"):
            raise CheckpointError(f"CTranslate2 stores float32 or float16 here, not {dtype}; pass --dtype")
        ct2_format.write_ct2(
            directory, config, tensors, dtype, vocabulary=_vocabulary(checkpoint, directory),
            alignment_heads=checkpoint.alignment_heads or None,
        )  # fmt: skip


def write_checkpoint(
    checkpoint: Checkpoint,
    directory: Path,
    target: str,
    dtype: str | None = None,
    max_shard_size: int | str = hf_formats.DEFAULT_MAX_SHARD_SIZE,
) -> None:
    """Write ``checkpoint`` as ``target`` into an existing (empty) directory, companion files included."""
    tensors: Mapping[str, np.ndarray] = checkpoint.tensors
    if dtype is not None:
        if dtype not in DTYPES:
            raise CheckpointError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        if target == "ct2" and dtype == "bfloat16":
            raise CheckpointError("CTranslate2 files are written as float32 or float16, not bfloat16")
        tensors = _Cast(checkpoint.tensors, _numpy_dtype(dtype))
    _copy_tokenizer_files(checkpoint.directory, directory)
    _write_preprocessor(checkpoint.config, directory)
    generation = _generation_config_for(checkpoint)
    if generation is not None:
        generation.save_pretrained(directory)
    if target != "ct2":
        checkpoint.config.save_pretrained(directory)
    _write_weights(checkpoint, tensors, directory, target, max_shard_size)


def _expected_bytes(checkpoint: Checkpoint, target: str, dtype: str | None) -> int:
    itemsize = _numpy_dtype(dtype).itemsize if dtype else None
    total = sum(a.size * (itemsize or a.dtype.itemsize) for a in checkpoint.tensors.values())
    return total * (3 if target == "hf" else 1)


def convert(
    source: str | os.PathLike[str] | None,
    destination: str | os.PathLike[str],
    to: str = "canonical",
    *,
    dtype: str | None = None,
    overwrite: bool = False,
    quiet: bool = True,
    package: str | None = None,
    max_shard_size: int | str = hf_formats.DEFAULT_MAX_SHARD_SIZE,
) -> Path:
    """Convert the checkpoint at ``source`` (or the installed model ``package``) to ``to``, written at
    ``destination`` atomically. Returns the destination directory.

    ``dtype`` casts every tensor ("float32", "float16" or "bfloat16"); by default tensors keep their stored dtype.
    """
    if to not in TARGETS:
        raise CheckpointError(f"unknown target {to!r}; expected one of {', '.join(TARGETS)}")
    destination = Path(destination)
    clean_stale_staging(destination)  # a killed earlier run's partial output, or its swapped-out destination
    _check_paths(Path(source) if source is not None else None, destination, overwrite)
    checkpoint = read_checkpoint(source, package=package)
    with _staging(destination) as tmp:
        label = f"{checkpoint.format} -> {to}"
        # A bar only on a terminal: in a log its redrawn lines pile up.
        with _Progress(tmp, _expected_bytes(checkpoint, to, dtype), label, enabled=not quiet and sys.stderr.isatty()):
            write_checkpoint(checkpoint, tmp, to, dtype, max_shard_size)
    return destination
