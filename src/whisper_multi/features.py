"""WhisperFeatureExtractor: raw 16 kHz audio to Whisper's log-mel spectrogram, in numpy only.

The features are defined exactly as openai-whisper computes them: a periodic Hann window, a centred STFT with
reflect padding, the power spectrum with the last frame dropped, a Slaney-scale mel filterbank with Slaney area
normalisation, log10 with a 1e-10 floor, a dynamic range of 8 (80 dB) below each example's loudest bin, then
``(x + 4) / 4``. As in Transformers, each waveform is padded or truncated to 30 s *before* the STFT.

The public API (constructor arguments, ``__call__`` arguments, ``preprocessor_config.json``) follows Transformers'
``WhisperFeatureExtractor``. No framework is imported unless ``return_tensors`` asks for one.
"""

from __future__ import annotations

import copy
import math
import os
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from whisper_multi.backends import to_tensor
from whisper_multi.errors import ConfigError, InputError
from whisper_multi.jsonfile import JsonFileMixin

# Whisper's audio hyperparameters; everything else is derived from them.
SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30  # seconds of audio per model input
N_MELS = 80  # 128 for large-v3
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a chunk
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 frames in a mel spectrogram input

LOG_FLOOR = 1e-10  # smallest mel power before log10, so silence gives -10 and not -inf
DYNAMIC_RANGE = 8.0  # log10 units kept below each example's loudest bin (80 dB)
MAX_ABS_SAMPLE = 1e12  # far above any PCM scale (int32 is 2.1e9); (N_FFT * 1e12)² still fits float32 power
NORMALIZE_EPSILON = 1e-7  # added to the variance by do_normalize, as Transformers does
FRAMES_PER_BLOCK = 128  # STFT frames windowed and transformed at once: a block small enough to stay in cache

FEATURE_EXTRACTOR_NAME = "preprocessor_config.json"

# Integer PCM is scaled to [-1, 1) by its full-scale value; unsigned 8-bit PCM is centred on 128 (WAV convention).
_PCM_SCALES: dict[np.dtype, tuple[float, float]] = {  # dtype -> (offset, full scale)
    np.dtype(np.int8): (0.0, 2.0**7),
    np.dtype(np.uint8): (128.0, 2.0**7),
    np.dtype(np.int16): (0.0, 2.0**15),
    np.dtype(np.int32): (0.0, 2.0**31),
}

_PADDING_STRATEGIES = {"max_length": "max_length", "longest": "longest", True: "longest", "do_not_pad": "do_not_pad"}
# A 2-D array with rows this short and more rows than columns is (samples, channels) audio, not a batch.
_MAX_CHANNELS = 8

_MAX_THREADS = 8  # the STFT of a batch stops gaining well before this
# A thread gets at least one 30 s chunk of frames: on a busy machine, waiting for a descheduled worker costs more
# than splitting a single chunk saves (so one chunk is never split across threads).
MIN_FRAMES_PER_THREAD = N_FRAMES

_warned_missing_sampling_rate = False
_pool: tuple[int, ThreadPoolExecutor] | None = None  # (workers, pool), created on first use by _thread_pool
_pool_lock = threading.Lock()


# ---------------------------------------------------------------------------------------------------------------------
# Signal processing
# ---------------------------------------------------------------------------------------------------------------------


def hann_window(length: int = N_FFT) -> np.ndarray:
    """The periodic Hann window (``torch.hann_window``'s default) in float64: a symmetric one of ``length + 1``
    points without its last point, so that overlapping frames sum to a constant."""
    n = np.arange(length, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)


# Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz, so 1 kHz is mel 15), logarithmic above it with 27 mels
# per factor of 6.4 in frequency.
_MEL_LINEAR_HZ = 200.0 / 3.0
_MEL_BREAK_HZ = 1000.0
_MEL_BREAK = _MEL_BREAK_HZ / _MEL_LINEAR_HZ
_MEL_LOG_STEP = math.log(6.4) / 27.0


def _hz_to_mel(frequencies: np.ndarray) -> np.ndarray:
    frequencies = np.asarray(frequencies, dtype=np.float64)
    mels = frequencies / _MEL_LINEAR_HZ
    above = frequencies >= _MEL_BREAK_HZ
    mels[above] = _MEL_BREAK + np.log(frequencies[above] / _MEL_BREAK_HZ) / _MEL_LOG_STEP
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    frequencies = mels * _MEL_LINEAR_HZ
    above = mels >= _MEL_BREAK
    frequencies[above] = _MEL_BREAK_HZ * np.exp(_MEL_LOG_STEP * (mels[above] - _MEL_BREAK))
    return frequencies


def mel_filters(n_mels: int = N_MELS, sampling_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """Slaney-scale triangular mel filters with Slaney area normalisation, from 0 Hz to ``sampling_rate / 2``.

    Returns float32 of shape (n_mels, n_fft // 2 + 1), the layout of openai-whisper's ``mel_filters``. Each filter
    is scaled by 2 / bandwidth so that all filters have the same area (librosa's ``norm="slaney"``).
    """
    fft_hz = np.linspace(0.0, sampling_rate / 2.0, n_fft // 2 + 1)  # (n_freqs,)
    lowest_mel, highest_mel = _hz_to_mel(np.array([0.0, sampling_rate / 2.0]))
    edge_mels = np.linspace(lowest_mel, highest_mel, n_mels + 2)
    edge_hz = _mel_to_hz(edge_mels)  # (n_mels + 2,): filter i rises from edge i, peaks at i + 1, falls to i + 2
    widths = np.diff(edge_hz)  # (n_mels + 1,)
    offsets = edge_hz[:, None] - fft_hz[None, :]  # (n_mels + 2, n_freqs)
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    filters = np.maximum(0.0, np.minimum(rising, falling))  # (n_mels, n_freqs)
    filters *= (2.0 / (edge_hz[2:] - edge_hz[:-2]))[:, None]
    return filters.astype(np.float32)


def _reflect_pad(waveforms: np.ndarray, half: int) -> np.ndarray:
    """(batch, samples) -> (batch, samples + 2 * half), mirrored at both ends without repeating the edge sample.

    The same as ``np.pad(mode="reflect")`` and torch's reflect padding, in one allocation instead of two copies.
    """
    batch, n_samples = waveforms.shape
    if n_samples <= half:  # too short to mirror once: numpy reflects repeatedly
        return np.pad(waveforms, ((0, 0), (half, half)), mode="reflect")
    padded = np.empty((batch, n_samples + 2 * half), dtype=np.float32)
    padded[:, half : half + n_samples] = waveforms
    padded[:, :half] = waveforms[:, half:0:-1]
    padded[:, half + n_samples :] = waveforms[:, -2 : -half - 2 : -1]
    return padded


def _thread_count() -> int:
    """Threads for the STFT: ``OMP_NUM_THREADS`` when set (the knob torch and BLAS obey), else the usable CPUs."""
    configured = os.environ.get("OMP_NUM_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return min(int(configured), _MAX_THREADS)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(usable, _MAX_THREADS))


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != workers:  # replaced when OMP_NUM_THREADS changes; the old one exits when freed
            _pool = (workers, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="whisper-multi-stft"))
        return _pool[1]


def _forget_pool_after_fork() -> None:
    # A forked child (e.g. a DataLoader worker) inherits the pool object but not its threads: start a new one.
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _split_spans(batch: int, n_frames: int, parts: int) -> list[list[tuple[int, int, int]]]:
    """The (item, first frame, end frame) blocks of a batch, dealt into ``parts`` runs of nearly equal frame count."""
    total = batch * n_frames
    runs: list[list[tuple[int, int, int]]] = []
    for part in range(parts):
        first, end = total * part // parts, total * (part + 1) // parts
        spans = []
        while first < end:
            item, frame = divmod(first, n_frames)
            stop = min(frame + FRAMES_PER_BLOCK, n_frames, frame + end - first)
            spans.append((item, frame, stop))
            first += stop - frame
        runs.append(spans)
    return runs


def _power_spectrum_spans(
    padded: np.ndarray, window: np.ndarray, hop_length: int, power: np.ndarray, spans: list[tuple[int, int, int]]
) -> None:
    """|STFT|² of the given frame blocks into ``power`` (batch, frames, n_freqs), float32.

    The FFT runs in float64: numpy's float64 rfft is no slower than its float32 one, and in float32 quiet bins next
    to loud ones lose up to 5e-5 of accuracy. Blocks of FRAMES_PER_BLOCK through reused buffers stay in cache.
    """
    n_fft, n_freqs = window.shape[0], power.shape[-1]
    frames = sliding_window_view(padded, n_fft, axis=-1)[:, ::hop_length]  # (batch, frames + 1, n_fft), a view
    block = np.empty((FRAMES_PER_BLOCK, n_fft))
    spectrum = np.empty((FRAMES_PER_BLOCK, n_freqs), dtype=np.complex128)
    for item, start, stop in spans:
        count = stop - start
        np.multiply(frames[item, start:stop], window, out=block[:count])
        np.fft.rfft(block[:count], axis=-1, out=spectrum[:count])
        parts = spectrum[:count].view(np.float64)  # (count, 2 * n_freqs): re, im interleaved
        np.square(parts, out=parts)
        np.add(parts[:, 0::2], parts[:, 1::2], out=power[item, start:stop], casting="same_kind")


def _power_spectra(padded: np.ndarray, window: np.ndarray, hop_length: int, power: np.ndarray) -> None:
    """Fill ``power`` (batch, frames, n_freqs), sharing the blocks among threads: numpy's FFT releases the GIL."""
    batch, n_frames, _ = power.shape
    workers = max(1, min(_thread_count(), batch * n_frames // MIN_FRAMES_PER_THREAD))
    runs = _split_spans(batch, n_frames, workers)
    if len(runs) == 1:
        _power_spectrum_spans(padded, window, hop_length, power, runs[0])
        return
    pool = _thread_pool(workers - 1)
    futures = [pool.submit(_power_spectrum_spans, padded, window, hop_length, power, run) for run in runs[1:]]
    _power_spectrum_spans(padded, window, hop_length, power, runs[0])  # this thread takes a share too
    for future in futures:
        future.result()


def _power_to_log_mel(waveforms: np.ndarray, window: np.ndarray, filters_t: np.ndarray, hop_length: int) -> np.ndarray:
    """Mel power spectrogram, floored and in log10, of equal-length float32 waveforms (batch, samples).

    Returns (batch, n_mels, samples // hop_length): the centred STFT has one frame more, which Whisper drops.
    ``filters_t`` is the filterbank transposed, (n_freqs, n_mels).
    """
    batch, n_samples = waveforms.shape
    n_fft, n_frames = window.shape[0], n_samples // hop_length
    padded = _reflect_pad(waveforms, n_fft // 2)
    power = np.empty((batch, n_frames, n_fft // 2 + 1), dtype=np.float32)
    _power_spectra(padded, window, hop_length, power)
    # One matmul for the whole batch: BLAS wakes its threads once, not once per waveform.
    mel = power.reshape(batch * n_frames, -1) @ filters_t  # (batch * frames, n_mels)
    np.maximum(mel, LOG_FLOOR, out=mel)
    log_mel = np.empty((batch, filters_t.shape[1], n_frames), dtype=np.float32)
    np.log10(mel.reshape(batch, n_frames, -1).transpose(0, 2, 1), out=log_mel)  # the transpose costs no extra pass
    return log_mel


def _compress_dynamic_range(log_mel: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Clamp to DYNAMIC_RANGE below the maximum over ``axes``, then map to roughly [-1, 1] as Whisper does."""
    ceiling = log_mel.max(axis=axes, keepdims=True)
    np.maximum(log_mel, ceiling - DYNAMIC_RANGE, out=log_mel)
    log_mel += 4.0
    log_mel /= 4.0
    return log_mel


def log_mel_spectrogram(audio: np.ndarray, n_mels: int = N_MELS, padding: int = 0) -> np.ndarray:
    """openai-whisper's ``log_mel_spectrogram`` for one mono 16 kHz float waveform of any length, in numpy.

    Unlike the feature extractor, nothing is padded to 30 s (only ``padding`` zeros are appended) and the dynamic
    range is clamped against the maximum of the whole input, which is what long-form transcription slices from.
    Returns float32 (n_mels, (len(audio) + padding) // HOP_LENGTH).
    """
    waveform = _to_float_waveform(audio, where="audio")
    if waveform.ndim != 1:
        raise InputError(f"log_mel_spectrogram takes 1-D mono audio, got shape {waveform.shape}")
    _check_samples(waveform, where="audio")
    if padding:
        waveform = np.pad(waveform, (0, padding))
    filters_t = np.ascontiguousarray(mel_filters(n_mels).T)
    log_mel = _power_to_log_mel(waveform[None], hann_window(N_FFT), filters_t, HOP_LENGTH)
    return _compress_dynamic_range(log_mel, axes=(0, 1, 2))[0]


# ---------------------------------------------------------------------------------------------------------------------
# Input checking
# ---------------------------------------------------------------------------------------------------------------------


def _to_float_waveform(samples: Any, where: str) -> np.ndarray:
    """Any array-like of audio samples as float32; integer PCM is scaled to [-1, 1) (see ``_PCM_SCALES``)."""
    try:
        array = np.asarray(samples)
    except (TypeError, ValueError) as error:  # ragged nested lists
        raise InputError(f"{where} must be a rectangular array of numbers, got {_describe(samples)}") from error
    if isinstance(samples, (list, tuple)) and array.dtype.kind in "iu":
        # Python numbers are taken as sample values, never as PCM codes, as Transformers does.
        return array.astype(np.float32)
    if array.dtype in _PCM_SCALES:
        offset, scale = _PCM_SCALES[array.dtype]
        return ((array.astype(np.float32) - offset) / scale).astype(np.float32)
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    if array.dtype.kind in "iu":
        raise InputError(
            f"{where} has integer dtype {array.dtype}, whose full scale is ambiguous; expected float audio in "
            "[-1, 1] or int8/uint8/int16/int32 PCM: convert it, e.g. audio.astype(np.float32) / full_scale"
        )
    raise InputError(f"{where} has dtype {array.dtype}; expected real float audio in [-1, 1] or integer PCM")


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_samples(waveform: np.ndarray, where: str) -> None:
    if waveform.size == 0:
        raise InputError(f"{where} is empty; expected at least one audio sample")
    if not np.isfinite(waveform).all():
        first = int(np.flatnonzero(~np.isfinite(waveform))[0])
        raise InputError(f"{where} has a non-finite sample ({waveform[first]}) at index {first}; expected finite audio")
    peak = float(np.abs(waveform).max())
    if peak > MAX_ABS_SAMPLE:
        raise InputError(
            f"{where} has a sample of magnitude {peak:.3g}; expected audio in [-1, 1] (at most {MAX_ABS_SAMPLE:.0e}: "
            "larger samples overflow the float32 power spectrum)"
        )


def _is_sequence_of_items(raw_speech: Sequence[Any]) -> bool:
    """A list whose elements are arrays or lists is a batch; a list of numbers is one waveform."""
    return any(isinstance(item, (list, tuple)) or getattr(item, "ndim", 0) > 0 for item in raw_speech)


def _split_batch(raw_speech: Any) -> tuple[list[Any], bool]:
    """The inputs as a list of per-item sample containers, and whether the caller passed a batch."""
    if isinstance(raw_speech, (str, bytes)):
        raise InputError(f"raw_speech must be audio samples, got {type(raw_speech).__name__} {_describe(raw_speech)}")
    if isinstance(raw_speech, (list, tuple)):
        if len(raw_speech) == 0:
            raise InputError("raw_speech is an empty list; expected audio samples or a list of waveforms")
        if _is_sequence_of_items(raw_speech):
            return list(raw_speech), True
        return [raw_speech], False
    array = np.asarray(raw_speech)
    if array.ndim == 0:
        raise InputError(f"raw_speech is a scalar ({_describe(raw_speech)}); expected a 1-D waveform or a batch")
    if array.ndim == 1:
        return [array], False
    if array.ndim == 2:
        if array.shape[1] <= _MAX_CHANNELS and array.shape[0] > array.shape[1]:
            raise InputError(
                f"raw_speech has shape {array.shape}, which looks like (samples, channels) audio; Whisper takes mono: "
                "mix it down first, e.g. audio.mean(axis=1)"
            )
        return list(array), True
    raise InputError(f"raw_speech has shape {array.shape}; expected a 1-D waveform or a 2-D (batch, samples) array")


def _prepare_item(item: Any, index: int, batched: bool) -> np.ndarray:
    where = f"raw_speech[{index}]" if batched else "raw_speech"
    waveform = _to_float_waveform(item, where)
    if waveform.ndim == 0:
        raise InputError(f"{where} is a single number ({_describe(item)}); expected a 1-D waveform in every batch item")
    if waveform.ndim != 1:
        raise InputError(
            f"{where} has shape {waveform.shape}; expected 1-D mono audio. For stereo or multi-channel audio, "
            "mix it down first, e.g. audio.mean(axis=0)"
        )
    _check_samples(waveform, where)
    return waveform


def _warn_missing_sampling_rate(expected: int) -> None:
    global _warned_missing_sampling_rate
    if not _warned_missing_sampling_rate:
        _warned_missing_sampling_rate = True
        warnings.warn(
            f"sampling_rate was not passed to WhisperFeatureExtractor; the audio is assumed to be at {expected} Hz. "
            "Pass sampling_rate to have other rates rejected instead of silently giving wrong features.",
            UserWarning,
            stacklevel=4,  # the caller of WhisperFeatureExtractor.__call__
        )


# ---------------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------------


class BatchFeature(dict):
    """The extractor's output: a dict (``input_features``, optionally ``attention_mask``) with attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchFeature has no field {name!r}; fields: {sorted(self)}") from None

    def convert_to_tensors(self, return_tensors: str | None, device: str | None = None) -> BatchFeature:
        """Convert every numpy value in place to ``return_tensors``' type; ``None`` and "np" keep numpy."""
        for key, value in self.items():
            self[key] = to_tensor(value, return_tensors, device, unsupported=InputError)
        return self


# ---------------------------------------------------------------------------------------------------------------------
# Feature extractor
# ---------------------------------------------------------------------------------------------------------------------


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class WhisperFeatureExtractor(JsonFileMixin):
    """Whisper's log-mel front end, with the arguments and ``preprocessor_config.json`` of Transformers.

    Input conventions (checked, with an ``InputError`` naming the value otherwise):

    - A 1-D array or a list of numbers is one waveform; a list of 1-D arrays/lists (ragged lengths allowed) or a 2-D
      numpy array of shape (batch, samples) is a batch. A batch item with 2 or more dimensions is multi-channel
      audio and is rejected (mix it down). A 2-D array with at most 8 columns and more rows than columns is taken to
      be (samples, channels) audio, as soundfile returns it, and is rejected too. 3-D and higher arrays are rejected.
    - Float audio is used as given (expected in [-1, 1]). Integer numpy arrays are PCM and are scaled by dtype:
      int16 / 32768, int32 / 2**31, int8 / 128 and uint8 (x - 128) / 128; other integer dtypes (int64, uint16, ...)
      are rejected because their full scale is ambiguous. Python numbers in lists are taken as sample values.
      bool, complex, object and string dtypes are rejected, as are empty, NaN and infinite inputs.
    """

    _file_name: ClassVar[str] = FEATURE_EXTRACTOR_NAME

    model_input_names = ("input_features",)

    def __init__(
        self,
        feature_size: int = N_MELS,
        sampling_rate: int = SAMPLE_RATE,
        hop_length: int = HOP_LENGTH,
        chunk_length: int = CHUNK_LENGTH,
        n_fft: int = N_FFT,
        padding_value: float = 0.0,
        return_attention_mask: bool = False,
        **kwargs: Any,
    ) -> None:
        self.feature_size = _positive_int("feature_size", feature_size)
        self.sampling_rate = _positive_int("sampling_rate", sampling_rate)
        self.hop_length = _positive_int("hop_length", hop_length)
        self.chunk_length = _positive_int("chunk_length", chunk_length)
        self.n_fft = _positive_int("n_fft", n_fft)
        self.padding_value = float(padding_value)
        self.return_attention_mask = bool(return_attention_mask)
        self.n_samples = self.chunk_length * self.sampling_rate
        self.nb_max_frames = self.n_samples // self.hop_length
        self._check_derived(kwargs)
        self._check_supported(kwargs)
        self.padding_side = kwargs.pop("padding_side", "right")
        # Unknown keys are kept verbatim so a Transformers file round-trips unchanged.
        self._extra: dict[str, Any] = dict(kwargs)
        # Cached per instance: the window and the filterbank are the same for every call.
        self.window = hann_window(self.n_fft)  # float64, like the FFT
        self._filters = mel_filters(self.feature_size, self.sampling_rate, self.n_fft)  # (n_mels, n_freqs)
        self._filters_t = np.ascontiguousarray(self._filters.T)  # (n_freqs, n_mels), the matmul's layout

    @property
    def mel_filters(self) -> np.ndarray:
        """The filterbank in Transformers' layout, (n_fft // 2 + 1, feature_size)."""
        return self._filters.T

    def _check_derived(self, kwargs: dict[str, Any]) -> None:
        """n_samples and nb_max_frames are derived; a file may repeat them but must not contradict them."""
        for name, derived in (("n_samples", self.n_samples), ("nb_max_frames", self.nb_max_frames)):
            if name in kwargs and kwargs.pop(name) != derived:
                raise ConfigError(
                    f"{name} is derived from chunk_length, sampling_rate and hop_length and must be {derived}; "
                    "change those instead"
                )

    def _check_supported(self, kwargs: dict[str, Any]) -> None:
        if kwargs.get("padding_side", "right") != "right":
            raise ConfigError(f"padding_side={kwargs['padding_side']!r} is not supported; Whisper pads on the 'right'")
        if kwargs.get("dither", 0.0) not in (0, 0.0):
            raise ConfigError(f"dither={kwargs['dither']!r} is not supported; expected 0.0 (no dithering)")
        kwargs.pop("feature_extractor_type", None)  # written back by to_dict

    # -- calling ------------------------------------------------------------------------------------------------------

    def __call__(
        self,
        raw_speech: Any,
        truncation: bool = True,
        pad_to_multiple_of: int | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = None,
        padding: str | bool = "max_length",
        max_length: int | None = None,
        sampling_rate: int | None = None,
        do_normalize: bool | None = None,
        device: str | None = "cpu",
        return_token_timestamps: bool | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Log-mel features of one waveform or a batch: ``input_features`` float32 (batch, feature_size, frames).

        ``padding="max_length"`` pads or truncates every waveform to ``max_length`` samples (default 30 s, giving
        ``nb_max_frames`` frames); ``"longest"`` pads to the longest waveform of the batch. Lengths are rounded up
        to ``pad_to_multiple_of`` samples. With ``truncation=False`` nothing is cut and the batch is padded to its
        longest waveform if that is longer. ``attention_mask`` (batch, frames), int32, marks frames whose first
        sample is real audio. ``do_normalize`` scales each waveform to zero mean and unit variance over its real
        (kept) samples and leaves the padding at ``padding_value``, as Transformers does. ``sampling_rate`` should
        be passed: a rate other than the extractor's is rejected, and a missing one warns once per process.
        ``device`` places ``return_tensors="pt"`` tensors; ``return_token_timestamps`` adds ``num_frames``, the
        unpadded length of each waveform in frames.
        """
        self._check_sampling_rate(sampling_rate)
        waveforms = self._prepare(raw_speech)
        target = self._target_length(waveforms, padding, max_length, truncation, pad_to_multiple_of)
        if target < self.hop_length:
            raise InputError(
                f"audio padded to {target} samples gives no frame; expected at least hop_length={self.hop_length} "
                "samples: pad the audio or use padding='max_length'"
            )
        lengths = [min(len(w), target) for w in waveforms]
        stacked = self._pad(waveforms, target)
        if do_normalize:
            stacked = self._normalize(stacked, lengths)
        features = self._extract_fbank_features(stacked)
        outputs = BatchFeature(input_features=features)
        if return_attention_mask if return_attention_mask is not None else self.return_attention_mask:
            outputs["attention_mask"] = self._frame_mask(lengths, target, features.shape[-1])
        if return_token_timestamps:
            outputs["num_frames"] = np.array([len(w) // self.hop_length for w in waveforms], dtype=np.int64)
        return outputs.convert_to_tensors(return_tensors, device)

    def _check_sampling_rate(self, sampling_rate: int | None) -> None:
        if sampling_rate is None:
            _warn_missing_sampling_rate(self.sampling_rate)
        elif sampling_rate != self.sampling_rate:
            raise InputError(
                f"audio sampled at {sampling_rate} Hz, but this feature extractor expects {self.sampling_rate} Hz; "
                f"resample the audio to {self.sampling_rate} Hz first"
            )

    def _prepare(self, raw_speech: Any) -> list[np.ndarray]:
        items, batched = _split_batch(raw_speech)
        return [_prepare_item(item, i, batched) for i, item in enumerate(items)]

    def _target_length(
        self,
        waveforms: list[np.ndarray],
        padding: str | bool,
        max_length: int | None,
        truncation: bool,
        pad_to_multiple_of: int | None,
    ) -> int:
        """The common length, in samples, every waveform is padded or truncated to."""
        strategy = _PADDING_STRATEGIES.get(padding) if isinstance(padding, (str, bool)) else None
        if padding is False:
            strategy = "do_not_pad"
        if strategy is None:
            raise InputError(f"padding={padding!r} is not supported; expected 'max_length', 'longest' or 'do_not_pad'")
        if max_length is not None:
            _check_positive_length("max_length", max_length)
        limit = _round_up(max_length if max_length is not None else self.n_samples, pad_to_multiple_of)
        longest = max(min(len(w), limit) if truncation else len(w) for w in waveforms)
        if strategy == "do_not_pad":
            if len({len(w) for w in waveforms}) > 1:
                raise InputError(
                    f"padding='do_not_pad' needs waveforms of one length, got lengths {sorted({len(w) for w in waveforms})}; "
                    "use padding='longest' for a ragged batch"
                )
            return longest
        if strategy == "longest":
            return _round_up(longest, pad_to_multiple_of)
        return max(limit, longest)

    def _pad(self, waveforms: list[np.ndarray], target: int) -> np.ndarray:
        """(batch, target) float32, right-padded with padding_value and truncated to target."""
        stacked = np.full((len(waveforms), target), self.padding_value, dtype=np.float32)
        for row, waveform in zip(stacked, waveforms):
            kept = waveform[:target]
            row[: len(kept)] = kept
        return stacked

    def _normalize(self, stacked: np.ndarray, lengths: list[int]) -> np.ndarray:
        """Zero mean, unit variance over each row's real samples; the padding is set back to padding_value."""
        for row, length in zip(stacked, lengths):
            real = row[:length].astype(np.float64)
            row[:length] = (real - real.mean()) / np.sqrt(real.var() + NORMALIZE_EPSILON)
            row[length:] = self.padding_value
        return stacked

    def _frame_mask(self, lengths: list[int], target: int, n_frames: int) -> np.ndarray:
        """Frame i is real when its first sample, i * hop_length, is (Transformers' ``mask[:, ::hop_length]``)."""
        first_samples = np.arange(n_frames) * self.hop_length  # (frames,)
        return (first_samples[None, :] < np.asarray(lengths)[:, None]).astype(np.int32)  # (batch, frames)

    def _extract_fbank_features(self, waveforms: np.ndarray) -> np.ndarray:
        """(batch, samples) float32 -> (batch, feature_size, samples // hop_length) float32 log-mel."""
        log_mel = _power_to_log_mel(waveforms, self.window, self._filters_t, self.hop_length)
        return _compress_dynamic_range(log_mel, axes=(1, 2))

    # -- serialisation ------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The fields of ``preprocessor_config.json``, as Transformers writes them, plus any kept unknown keys."""
        data: dict[str, Any] = {
            "chunk_length": self.chunk_length,
            "feature_extractor_type": type(self).__name__,
            "feature_size": self.feature_size,
            "hop_length": self.hop_length,
            "n_fft": self.n_fft,
            "n_samples": self.n_samples,
            "nb_max_frames": self.nb_max_frames,
            "padding_side": self.padding_side,
            "padding_value": self.padding_value,
            "processor_class": "WhisperProcessor",
            "return_attention_mask": self.return_attention_mask,
            "sampling_rate": self.sampling_rate,
        }
        data.update(copy.deepcopy(self._extra))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> WhisperFeatureExtractor:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        return cls(**{**data, **overrides})

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"


def _check_positive_length(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InputError(f"{name}={value!r} must be a positive integer number of samples")


def _round_up(length: int, multiple: int | None) -> int:
    """``length`` rounded up to a multiple of ``multiple`` samples (unchanged when None)."""
    if multiple is None:
        return length
    _check_positive_length("pad_to_multiple_of", multiple)
    return -(-length // multiple) * multiple
