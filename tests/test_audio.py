"""load_audio and stream_audio: every container to 16 kHz mono float32, checked against signals written here.

Test files are synthesised in numpy (a 440 Hz tone, PCM quantised where the format is PCM) and written with
soundfile (WAV, FLAC, OGG) or encoded with PyAV (MP3, AAC in M4A); the decoded result is compared with the
analytic tone resampled to 16 kHz. The error cases are in tests/test_bad_inputs.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import load_wav
from whisper_multi.audio import load_audio, stream_audio

soundfile = pytest.importorskip("soundfile")
pytest.importorskip("soxr")

AUDIO_DIR = Path(__file__).parent / "fixtures" / "audio"
TONE_HZ = 440.0
EDGE = 200  # samples at each end where the resampler's filter sees the file's edges


def tone(rate: int, seconds: float, amplitude: float = 0.5, phase: float = 0.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * TONE_HZ * t + phase)


def write_pyav(path: Path, channels: np.ndarray, rate: int, codec: str) -> Path:
    """Encode (channels, samples) float audio with PyAV (``mp3`` or ``aac``)."""
    av = pytest.importorskip("av")
    layout = "mono" if channels.shape[0] == 1 else "stereo"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        step = 1152
        for start in range(0, channels.shape[1], step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(channels[:, start : start + step], dtype=np.float32), format="fltp", layout=layout
            )
            frame.rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def dominant_hz(samples: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def test_stereo_int16_44k_wav_is_mixed_and_resampled(tmp_path: Path) -> None:
    left, right = tone(44100, 1.0, 0.6), tone(44100, 1.0, 0.2)
    pcm = np.round(np.stack([left, right], axis=1) * 32767).astype(np.int16)
    soundfile.write(tmp_path / "a.wav", pcm, 44100, subtype="PCM_16")
    audio = load_audio(tmp_path / "a.wav")
    assert audio.dtype == np.float32 and audio.shape == (16000,)
    expected = tone(16000, 1.0, 0.4 * 32767 / 32768)  # the mean of the channels, as 16-bit PCM scales it
    np.testing.assert_allclose(audio[EDGE:-EDGE], expected[EDGE:-EDGE], atol=2e-4)


def test_int16_16k_wav_is_scaled_exactly(tmp_path: Path) -> None:
    pcm = np.array([0, 1, -1, 32767, -32768, 12345], dtype=np.int16)
    soundfile.write(tmp_path / "a.wav", pcm, 16000, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(tmp_path / "a.wav"), pcm.astype(np.float32) / 32768.0)


def test_fixture_speech_equals_the_standard_library_reader() -> None:
    path = AUDIO_DIR / "speech_en_short.wav"
    np.testing.assert_array_equal(load_audio(path), load_wav(path))


def test_mono_false_keeps_channels(tmp_path: Path) -> None:
    stereo = np.stack([tone(16000, 0.5, 0.5), tone(16000, 0.5, 0.25)], axis=1).astype(np.float32)
    soundfile.write(tmp_path / "a.wav", stereo, 16000, subtype="FLOAT")
    audio = load_audio(tmp_path / "a.wav", mono=False)
    assert audio.shape == (2, 8000)
    np.testing.assert_array_equal(audio, stereo.T)


def test_other_rate_on_request(tmp_path: Path) -> None:
    soundfile.write(tmp_path / "a.wav", tone(16000, 1.0).astype(np.float32), 16000, subtype="FLOAT")
    audio = load_audio(tmp_path / "a.wav", sampling_rate=8000)
    assert audio.shape == (8000,)
    np.testing.assert_allclose(audio[EDGE:-EDGE], tone(8000, 1.0)[EDGE:-EDGE], atol=2e-4)


@pytest.mark.parametrize(("suffix", "subtype", "atol"), [(".flac", "PCM_16", 2e-4), (".ogg", "VORBIS", 0.05)])
def test_flac_and_ogg(suffix: str, subtype: str, atol: float, tmp_path: Path) -> None:
    path = tmp_path / f"a{suffix}"
    soundfile.write(path, tone(48000, 1.0), 48000, subtype=subtype)
    audio = load_audio(path)
    assert audio.shape == (16000,) and audio.dtype == np.float32
    np.testing.assert_allclose(audio[EDGE:-EDGE], tone(16000, 1.0)[EDGE:-EDGE], atol=atol)


@pytest.mark.parametrize(("suffix", "codec"), [(".mp3", "mp3"), (".m4a", "aac")])
def test_compressed_containers_through_pyav(suffix: str, codec: str, tmp_path: Path) -> None:
    stereo = np.stack([tone(44100, 2.0, 0.5), tone(44100, 2.0, 0.5)])
    path = write_pyav(tmp_path / f"a{suffix}", stereo, 44100, codec)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    # Encoders add priming samples (under 0.1 s); the tone must be there at the right pitch and loudness.
    assert 32000 <= len(audio) <= 32000 + 1600
    assert abs(dominant_hz(audio) - TONE_HZ) < 2
    middle = audio[4000:28000]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_stream_equals_load(tmp_path: Path) -> None:
    stereo = np.stack([tone(22050, 7.3, 0.5), tone(22050, 7.3, 0.3, phase=1.0)], axis=1)
    soundfile.write(tmp_path / "a.wav", stereo, 22050, subtype="FLOAT")
    whole = load_audio(tmp_path / "a.wav")
    chunks = list(stream_audio(tmp_path / "a.wav", chunk_seconds=2))
    assert [len(chunk) for chunk in chunks[:-1]] == [32000] * 3
    assert all(chunk.dtype == np.float32 for chunk in chunks)
    streamed = np.concatenate(chunks)
    assert len(streamed) == len(whole)
    np.testing.assert_allclose(streamed, whole, atol=1e-6)


def test_stream_of_compressed_file(tmp_path: Path) -> None:
    path = write_pyav(tmp_path / "a.mp3", tone(44100, 3.0)[None], 44100, "mp3")
    chunks = list(stream_audio(path, chunk_seconds=1))
    assert [len(chunk) for chunk in chunks[:3]] == [16000] * 3
    np.testing.assert_allclose(np.concatenate(chunks), load_audio(path), atol=1e-6)


def test_stream_is_lazy(tmp_path: Path) -> None:
    soundfile.write(tmp_path / "a.wav", tone(16000, 5.0).astype(np.float32), 16000, subtype="FLOAT")
    stream = stream_audio(tmp_path / "a.wav", chunk_seconds=1)
    first = next(stream)  # type: ignore[call-overload]
    np.testing.assert_array_equal(first, tone(16000, 1.0).astype(np.float32))
    stream.close()  # type: ignore[attr-defined]


def test_importing_audio_imports_no_decoder() -> None:
    import subprocess
    import sys

    code = "import sys, whisper_multi.audio; print(sorted({'soundfile', 'av', 'soxr', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
