"""Audio files to 16 kHz mono float32 waveforms: whole (``load_audio``) or in chunks (``stream_audio``).

WAV, FLAC, OGG and the other formats libsndfile reads go through soundfile; MP3, M4A and any other container
FFmpeg knows go through PyAV. Both decoders hand over blocks of float32 samples at the file's own rate; channels
are mixed down by their mean and the result is resampled with soxr. ``stream_audio`` never holds more than one
chunk plus one decoded block, so a three-hour recording costs the same memory as a thirty-second one.

soundfile, av and soxr (the ``audio`` extra) are imported inside the functions that need them: importing this
module imports numpy only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from whisper_multi.errors import BackendError, InputError
from whisper_multi.features import CHUNK_LENGTH, SAMPLE_RATE

# Extensions read with soundfile first (libsndfile's own formats); everything else is handed to PyAV.
SOUNDFILE_SUFFIXES = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".w64", ".rf64", ".caf"}
)
BLOCK_SECONDS = 10  # seconds decoded at a time at the file's own rate
RESAMPLE_QUALITY = "HQ"  # soxr's default: its documented passband is ample for Whisper's 8 kHz band


@dataclass
class _Decoded:
    """An opened audio file: its rate, channel count and an iterator of (frames, channels) float32 blocks."""

    rate: int
    channels: int
    blocks: Iterator[np.ndarray]


def _import(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise BackendError(
            f"reading audio files needs {module}, which is not installed; pip install 'whisper-multi[audio]'"
        ) from error


def _check_rate(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InputError(f"{name}={value!r} must be a positive integer number of samples per second")
    return int(value)


def _check_file(path: str | os.PathLike[str]) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"audio path must be a str or os.PathLike, got {type(path).__name__}")
    file = Path(path)
    if not file.exists():
        raise InputError(f"no audio file at {file}: it does not exist")
    if not file.is_file():
        raise InputError(f"{file} is not a file; expected an audio file")
    try:
        size = file.stat().st_size
        with open(file, "rb"):
            pass
    except OSError as error:
        raise InputError(f"cannot read audio file {file}: {error.strerror or error}") from error
    if size == 0:
        raise InputError(f"audio file {file} is empty (0 bytes); expected an audio file")
    return file


# --- decoders -------------------------------------------------------------------------------------------------------
@contextmanager
def _open_soundfile(file: Path) -> Iterator[_Decoded]:
    soundfile = _import("soundfile")
    with soundfile.SoundFile(file) as sound:
        block = max(1, BLOCK_SECONDS * sound.samplerate)
        blocks = sound.blocks(blocksize=block, dtype="float32", always_2d=True)
        yield _Decoded(int(sound.samplerate), int(sound.channels), blocks)


def _pyav_blocks(container: Any, stream: Any) -> Iterator[np.ndarray]:
    av = _import("av")
    # Only the sample format changes (float32, one plane per channel); the rate and layout stay the file's own.
    to_float = av.AudioResampler(format="fltp")
    for packet in container.demux(stream):
        for frame in packet.decode():
            for converted in to_float.resample(frame):
                yield converted.to_ndarray().T  # (frames, channels)
    for converted in to_float.resample(None):  # what the converter still holds
        yield converted.to_ndarray().T


@contextmanager
def _open_pyav(file: Path) -> Iterator[_Decoded]:
    av = _import("av")
    with av.open(str(file), mode="r") as container:
        if not container.streams.audio:
            raise InputError(f"{file} has no audio stream; expected a file with sound in it")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or stream.rate
        channels = stream.codec_context.channels
        if not rate or not channels:
            raise InputError(
                f"{file}: its audio stream declares rate {rate} and {channels} channels; expected both > 0"
            )
        yield _Decoded(int(rate), int(channels), _pyav_blocks(container, stream))


def _opener(file: Path) -> tuple[Any, Exception | None]:
    """soundfile for libsndfile's formats, PyAV for the rest and for files soundfile cannot open (with its reason)."""
    if file.suffix.lower() not in SOUNDFILE_SUFFIXES:
        return _open_pyav, None
    soundfile = _import("soundfile")
    try:
        soundfile.info(str(file))
    except (RuntimeError, OSError) as error:  # LibsndfileError is a RuntimeError
        return _open_pyav, error  # e.g. a WAV holding a codec libsndfile lacks: PyAV may still read it
    return _open_soundfile, None


@contextmanager
def _open(file: Path) -> Iterator[_Decoded]:
    """The file opened by the decoder that reads it; decoder failures become InputError naming the file."""
    opener, soundfile_error = _opener(file)
    try:
        with opener(file) as decoded:
            yield decoded
    except InputError:
        raise
    except Exception as error:
        if not _is_decoding_error(error):
            raise
        reason = str(error) or type(error).__name__
        if soundfile_error is not None:
            reason += f"; soundfile: {soundfile_error}"
        raise InputError(f"cannot decode {file} as audio: {reason}; expected a readable audio file") from error


def _is_decoding_error(error: Exception) -> bool:
    if isinstance(error, (RuntimeError, OSError, ValueError, EOFError)):  # soundfile's and most of PyAV's
        return True
    try:
        import av
    except ImportError:
        return False
    return isinstance(error, av.FFmpegError)


def _mono(block: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,), the mean of the channels (a single channel is returned as is)."""
    return block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)


def _check_finite(samples: np.ndarray, file: Path, offset: int) -> None:
    if not np.isfinite(samples).all():
        first = int(np.flatnonzero(~np.isfinite(samples.reshape(-1)))[0])
        raise InputError(f"{file} holds a non-finite sample near sample {offset + first}; expected finite audio")


# --- public API -----------------------------------------------------------------------------------------------------
def load_audio(path: str | os.PathLike[str], sampling_rate: int = SAMPLE_RATE, mono: bool = True) -> np.ndarray:
    """The whole audio file as float32 at ``sampling_rate`` Hz: (samples,) when ``mono``, else (channels, samples).

    Raises InputError naming the file when it is missing, empty, holds no samples or cannot be decoded as audio.
    """
    sampling_rate = _check_rate("sampling_rate", sampling_rate)
    file = _check_file(path)
    with _open(file) as decoded:
        blocks = [_mono(block)[:, None] if mono else block for block in decoded.blocks]
        rate, channels = decoded.rate, 1 if mono else decoded.channels
    samples = np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)  # (frames, channels)
    if samples.shape[0] == 0:
        raise InputError(f"audio file {file} holds no samples (0 frames); expected at least one")
    _check_finite(samples, file, 0)
    samples = resample(samples, rate, sampling_rate)
    return np.ascontiguousarray(samples[:, 0] if mono else samples.T)


def resample(samples: np.ndarray, rate: int, sampling_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32 ``samples`` ((frames,) or (frames, channels)) from ``rate`` to ``sampling_rate`` Hz with soxr, the
    resampler of ``load_audio``; returned as they are when the rates agree."""
    rate, sampling_rate = _check_rate("rate", rate), _check_rate("sampling_rate", sampling_rate)
    samples = np.asarray(samples, dtype=np.float32)
    if rate == sampling_rate:
        return samples
    soxr = _import("soxr")
    return soxr.resample(samples, rate, sampling_rate, quality=RESAMPLE_QUALITY).astype(np.float32, copy=False)


def stream_audio(
    path: str | os.PathLike[str], chunk_seconds: float = CHUNK_LENGTH, sampling_rate: int = SAMPLE_RATE
) -> Iterator[np.ndarray]:
    """Mono float32 chunks of ``chunk_seconds`` at ``sampling_rate`` Hz (the last one shorter), decoded as they go.

    The file is never loaded whole: one decoded block and one chunk are held at a time, resampled by soxr's
    streaming resampler, so the concatenated chunks equal ``load_audio(path)`` up to the resampler's edges.
    The checks of ``load_audio`` apply, before the first chunk is yielded.
    """
    sampling_rate = _check_rate("sampling_rate", sampling_rate)
    if isinstance(chunk_seconds, bool) or not isinstance(chunk_seconds, (int, float)) or not chunk_seconds > 0:
        raise InputError(f"chunk_seconds={chunk_seconds!r} must be a positive number of seconds")
    chunk = max(1, round(chunk_seconds * sampling_rate))
    file = _check_file(path)
    return _stream(file, chunk, sampling_rate)


def _stream(file: Path, chunk: int, sampling_rate: int) -> Iterator[np.ndarray]:
    pending: list[np.ndarray] = []
    held = 0
    emitted = 0
    with _open(file) as decoded:
        resampler = None
        if decoded.rate != sampling_rate:
            soxr = _import("soxr")
            resampler = soxr.ResampleStream(decoded.rate, sampling_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        read = 0
        for block in decoded.blocks:
            samples = _mono(block)
            _check_finite(samples, file, read)
            read += len(samples)
            if resampler is not None:
                samples = resampler.resample_chunk(np.ascontiguousarray(samples), last=False)
            pending.append(samples)
            held += len(samples)
            while held >= chunk:
                out, pending, held = _take(pending, chunk)
                emitted += chunk
                yield out
        if resampler is not None:
            pending.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            held += len(pending[-1])
    if read == 0:
        raise InputError(f"audio file {file} holds no samples (0 frames); expected at least one")
    while held > 0:
        out, pending, held = _take(pending, min(chunk, held))
        yield out


def _take(pending: list[np.ndarray], count: int) -> tuple[np.ndarray, list[np.ndarray], int]:
    """The first ``count`` samples of the pending pieces, the pieces left and how many samples they hold."""
    joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
    rest = joined[count:]
    return np.ascontiguousarray(joined[:count], dtype=np.float32), [rest] if len(rest) else [], len(rest)


# --- `datasets` Audio values ----------------------------------------------------------------------------------------
# The columns a datasets row keeps its transcript in, the first present taken unless one is named (datasets' own
# audiofolder examples use "transcription"; Common Voice "sentence").
DATASET_TEXT_COLUMNS = ("transcription", "text", "sentence")


def is_audio_value(value: Any) -> bool:
    """Whether ``value`` is a ``datasets`` Audio value: a dict with ``array`` and ``sampling_rate`` (decoded), one
    with ``path`` and/or ``bytes`` (``Audio(decode=False)``), or datasets' torchcodec decoder (read by key)."""
    if isinstance(value, Mapping):
        return any(key in value for key in ("array", "bytes", "path"))
    return hasattr(value, "get_all_samples") and hasattr(value, "__getitem__")


def audio_value_waveform(value: Any, sampling_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A ``datasets`` Audio value (``is_audio_value``) as a mono float32 waveform at ``sampling_rate`` Hz.

    Channels (datasets' ``(channels, samples)``) are mixed by their mean; other rates are resampled by ``resample``;
    an undecoded value is read from its bytes or its path by ``load_audio``.
    """
    if isinstance(value, Mapping) and value.get("array") is None:
        return _undecoded_waveform(value, sampling_rate)
    # datasets' decoder answers these two keys only (it is no Mapping).
    array, rate = value["array"], value.get("sampling_rate") if isinstance(value, Mapping) else value["sampling_rate"]
    if rate is None:
        raise InputError("a datasets Audio value holds an array but no sampling_rate; expected both keys")
    samples = np.asarray(array, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=0, dtype=np.float32)
    if samples.ndim != 1 or samples.size == 0:
        raise InputError(
            f"a datasets Audio array has shape {samples.shape}; expected (samples,) or (channels, samples) with "
            "at least one sample"
        )
    if not np.isfinite(samples).all():
        raise InputError("a datasets Audio array holds a non-finite sample; expected finite audio")
    return np.ascontiguousarray(resample(samples, _check_rate("sampling_rate", rate), sampling_rate))


def _undecoded_waveform(value: Mapping[str, Any], sampling_rate: int) -> np.ndarray:
    """The audio of ``{"path", "bytes"}``: the bytes when present (decoded from a temporary file named like the
    path, so the decoder is chosen by its extension as for a file), else the file at ``path``."""
    data, path = value.get("bytes"), value.get("path")
    if data is None:
        if path is None:
            raise InputError("a datasets Audio value has neither array, bytes nor path; expected one of them")
        return load_audio(path, sampling_rate)
    import tempfile

    suffix = Path(str(path)).suffix if path else ".wav"
    with tempfile.TemporaryDirectory(prefix="whisper-multi-audio-") as scratch:
        file = Path(scratch) / f"audio{suffix}"
        file.write_bytes(bytes(data))
        try:
            return load_audio(file, sampling_rate)
        except InputError as error:  # named by the value's path, not by the temporary file
            message = str(error).replace(str(file), "its bytes")
            raise InputError(f"datasets Audio value {path or '(no path)'}: {message}") from error
