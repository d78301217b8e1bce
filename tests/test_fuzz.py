"""Property tests over inputs no one would write by hand: the package answers with a result or its own error.

- The feature extractor turns any finite float waveform into finite features of the right shape, or refuses it
  with an InputError.
- ``WhisperConfig.from_dict`` turns any JSON object into a valid config (which survives a JSON round trip) or a
  ConfigError.
- Every checkpoint reader (safetensors, CTranslate2 model.bin, h5, msgpack, PyTorch .bin, openai .pt) turns random
  bytes and random mutations of a real small file into tensors or a CheckpointError, within a few seconds; never
  another exception, a hang or a crash.
- The tokenizers decode any list of in-vocabulary ids.

Each test counts the examples it ran and prints the count (``pytest -s`` shows them); the counts are also checked
against a floor so that a strategy that stops generating is noticed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from test_formats import random_tensors, tiny_config
from whisper_multi import WhisperConfig, WhisperFeatureExtractor
from whisper_multi.errors import CheckpointError, ConfigError, InputError
from whisper_multi.weights import hf_formats, openai_format, read_ct2, write_ct2
from whisper_multi.weights.safetensors_io import open_safetensors, write_safetensors

EXAMPLES: dict[str, int] = {}  # target -> examples run in this session
SECONDS_PER_EXAMPLE = 10  # a reader that takes longer than this on a 100 kB file is hanging
FUZZ = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])


def _record(target: str, count: int, floor: int) -> None:
    EXAMPLES[target] = count
    print(f"fuzz {target}: {count} examples")
    assert count >= floor, f"only {count} examples ran for {target}"


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise Hang if the body runs longer than ``seconds`` (checked between Python bytecodes)."""

    def expire(signum: int, frame: Any) -> None:
        raise Hang(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- the feature extractor ------------------------------------------------------------------------------------------
@functools.cache
def _extractor() -> WhisperFeatureExtractor:
    return WhisperFeatureExtractor()


WAVEFORMS = st.one_of(
    hnp.arrays(np.float32, st.integers(1, 2000), elements=st.floats(-1, 1, width=32)),
    hnp.arrays(np.float32, st.integers(1, 600), elements=st.floats(width=32, allow_nan=False, allow_infinity=False)),
    hnp.arrays(np.float64, st.integers(1, 600), elements=st.floats(-1e6, 1e6)),
    st.integers(1, 40000).map(lambda n: np.random.default_rng(n).standard_normal(n).astype(np.float32)),
)


def test_feature_extractor_gives_finite_features_or_an_input_error() -> None:
    count = 0

    @FUZZ
    @given(waveform=WAVEFORMS, padding=st.sampled_from(["max_length", "longest"]))
    def run(waveform: np.ndarray, padding: str) -> None:
        nonlocal count
        count += 1
        try:
            features = _extractor()(waveform, sampling_rate=16000, padding=padding)["input_features"]
        except InputError as error:
            assert "sample" in str(error) or "samples" in str(error)
            return
        frames = 3000 if padding == "max_length" else len(waveform) // 160
        assert features.shape == (1, 80, frames) and features.dtype == np.float32
        assert np.isfinite(features).all()

    run()
    _record("feature extractor", count, 30)


# --- WhisperConfig.from_dict ----------------------------------------------------------------------------------------
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)  # fmt: skip
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
# Field names the config knows (plus aliases), so values reach the validation rules, and arbitrary names.
KEYS = st.one_of(
    st.sampled_from([*WhisperConfig._defaults, "num_labels", "hidden_size", "num_attention_heads", "to_dict"]),
    st.text(max_size=12),
)
# Values that are nearly right for integer and probability fields.
NEAR_VALUES = st.one_of(JSON_VALUES, st.integers(-3, 8), st.floats(-0.5, 1.5), st.sampled_from([384, 51865, 6, 1500]))


def test_config_from_dict_gives_a_valid_config_or_a_config_error() -> None:
    count = 0

    @settings(FUZZ, max_examples=300)
    @given(data=st.dictionaries(KEYS, NEAR_VALUES, max_size=8))
    def run(data: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        try:
            config = WhisperConfig.from_dict(data)
        except ConfigError:
            return
        config.validate()
        again = WhisperConfig.from_dict(json.loads(config.to_json_string()))
        assert again == config

    run()
    _record("config from_dict", count, 150)


# --- checkpoint readers ---------------------------------------------------------------------------------------------
def _write_safetensors(directory: Path) -> Path:
    write_safetensors(directory / "model.safetensors", random_tensors(tiny_config()))
    return directory / "model.safetensors"


def _write_ct2(directory: Path) -> Path:
    config = tiny_config()
    write_ct2(directory, config, random_tensors(config), vocabulary=[f"t{i}" for i in range(config.vocab_size)])
    return directory / "model.bin"


def _write_h5(directory: Path) -> Path:
    pytest.importorskip("h5py")
    hf_formats.write_tf(directory, tiny_config(), random_tensors(tiny_config()))
    return directory / "tf_model.h5"


def _write_msgpack(directory: Path) -> Path:
    pytest.importorskip("msgpack")
    hf_formats.write_flax(directory, tiny_config(), random_tensors(tiny_config()))
    return directory / "flax_model.msgpack"


def _write_pt(directory: Path) -> Path:
    pytest.importorskip("torch")
    hf_formats.write_pt(directory, tiny_config(), random_tensors(tiny_config()))
    return directory / "pytorch_model.bin"


def _write_openai(directory: Path) -> Path:
    pytest.importorskip("torch")
    config = WhisperConfig.from_dict({**tiny_config().to_dict(), "encoder_ffn_dim": 64, "decoder_ffn_dim": 64})
    return openai_format.write_openai(directory / "model.pt", config, random_tensors(config))


def _touch(tensors: Any) -> None:
    """Read every value: a view past the end of a mapped file would fault here."""
    with np.errstate(all="ignore"):  # the values may be anything; only reading them matters
        for array in tensors.values():
            float(np.asarray(array, dtype=np.float64).sum())


def _read_safetensors(path: Path) -> None:
    _touch(open_safetensors(path))


def _read_ct2(path: Path) -> None:
    _touch(read_ct2(path.parent, dtype=None).tensors)


def _read_h5(path: Path) -> None:
    _touch(hf_formats.read_tf(path.parent, tiny_config()))


def _read_msgpack(path: Path) -> None:
    _touch(hf_formats.read_msgpack_tree(path))


def _read_pt(path: Path) -> None:
    _touch(hf_formats.read_pt(path.parent, tiny_config()))


def _read_openai(path: Path) -> None:
    _touch(openai_format.read_openai(path).tensors)


READERS: dict[str, tuple[Callable[[Path], Path], Callable[[Path], None]]] = {
    "safetensors": (_write_safetensors, _read_safetensors),
    "ct2 model.bin": (_write_ct2, _read_ct2),
    "h5": (_write_h5, _read_h5),
    "msgpack": (_write_msgpack, _read_msgpack),
    "pytorch .bin": (_write_pt, _read_pt),
    "openai .pt": (_write_openai, _read_openai),
}


@st.composite
def mutations(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few random edits, most of them in the first 4 kB where the headers are."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        near_header = draw(st.booleans())
        position = draw(st.integers(0, min(len(data), 4096) - 1 if near_header else len(data) - 1))
        kind = draw(st.sampled_from(["flip", "byte", "int", "truncate", "delete", "insert"]))
        if kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[position] = draw(st.integers(0, 255))
        elif kind == "int":  # a length or offset field made large, small or negative
            value = draw(st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1, 255, 65535]))
            data[position : position + 8] = value.to_bytes(8, "little")
        elif kind == "truncate":
            del data[position:]
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 64))]
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


def _fuzz_reader(target: str, strategy_of: Callable[[bytes], st.SearchStrategy[bytes]], floor: int) -> None:
    write, read = READERS[target]
    outcomes = {"loaded": 0, "refused": 0}
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "original").mkdir()
        original_path = write(Path(scratch) / "original")
        original = original_path.read_bytes()
        companions = {p.name: p.read_bytes() for p in original_path.parent.iterdir() if p != original_path}
        counter = iter(range(10**9))

        @FUZZ
        @given(data=strategy_of(original))
        def run(data: bytes) -> None:
            # A fresh directory per example: a file that is still mapped by an earlier example is never rewritten.
            directory = Path(scratch) / f"case{next(counter)}"
            directory.mkdir()
            for name, content in companions.items():
                (directory / name).write_bytes(content)
            (directory / original_path.name).write_bytes(data)
            started = time.monotonic()
            try:
                with time_limit(SECONDS_PER_EXAMPLE):
                    read(directory / original_path.name)
                outcomes["loaded"] += 1
            except CheckpointError as error:
                assert str(directory) in str(error), f"the error does not name the file: {error}"
                outcomes["refused"] += 1
            assert time.monotonic() - started < SECONDS_PER_EXAMPLE

        run()
    count = sum(outcomes.values())
    print(f"fuzz {target}: {outcomes}")
    _record(target, count, floor)


@pytest.mark.parametrize("target", list(READERS))
def test_reader_survives_mutations_of_a_real_file(target: str) -> None:
    _fuzz_reader(f"{target}", mutations, 30)


@pytest.mark.parametrize("target", list(READERS))
def test_reader_refuses_random_bytes(target: str) -> None:
    def random_bytes(original: bytes) -> st.SearchStrategy[bytes]:
        # Random bytes, and random bytes behind the first bytes of a real file (a plausible magic number).
        keep = st.integers(0, min(64, len(original)))
        return st.one_of(
            st.binary(max_size=2048), st.tuples(keep, st.binary(max_size=2048)).map(lambda p: original[: p[0]] + p[1])
        )

    _fuzz_reader(target, random_bytes, 30)


# --- tokenizer decode -----------------------------------------------------------------------------------------------
def test_tokenizer_decodes_any_in_range_ids() -> None:
    from test_tokenization import load

    tokenizers = [load(kind, "english") for kind in ("slow", "fast")]
    size = len(tokenizers[0])
    count = 0

    @settings(FUZZ, max_examples=150)
    @given(
        ids=st.lists(
            st.one_of(st.integers(0, 300), st.integers(50250, size - 1), st.integers(0, size - 1)), max_size=40
        ),
        skip=st.booleans(),
        timestamps=st.booleans(),
        offsets=st.booleans(),
    )
    def run(ids: list[int], skip: bool, timestamps: bool, offsets: bool) -> None:
        nonlocal count
        count += 1
        for tokenizer in tokenizers:
            text = tokenizer.decode(
                ids, skip_special_tokens=skip, decode_with_timestamps=timestamps, output_offsets=offsets
            )
            assert isinstance(text if not offsets else text["text"], str)
            assert tokenizer.batch_decode([ids, ids[:1]], skip_special_tokens=skip)[0] == tokenizer.decode(
                ids, skip_special_tokens=skip
            )

    run()
    _record("tokenizer decode", count, 75)


def test_examples_floor_is_meaningful() -> None:
    assert math.isfinite(SECONDS_PER_EXAMPLE) and FUZZ.max_examples >= 60
