"""safetensors files and canonical directories: agreement with the reference library, sharding, bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from whisper_multi.errors import CheckpointError
from whisper_multi.weights.safetensors_io import (
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
    load_state_dict,
    open_safetensors,
    parse_size,
    read_header,
    save_state_dict,
    write_safetensors,
)


def _tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "model.encoder.conv1.weight": rng.standard_normal((8, 4, 3)).astype(np.float32),
        "model.encoder.conv1.bias": rng.standard_normal(8).astype(np.float16),
        "counts": np.arange(6, dtype=np.int64).reshape(2, 3),
        "flags": np.array([True, False]),
        "empty": np.zeros((0, 4), np.float32),
        "scalar": np.array(3.5, np.float64),
    }


def _assert_same(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert list(actual) == list(expected) or set(actual) == set(expected)
    for name, array in expected.items():
        assert actual[name].dtype == array.dtype and actual[name].shape == array.shape, name
        np.testing.assert_array_equal(actual[name], array)


def test_written_file_is_read_by_the_reference_library(tmp_path: Path) -> None:
    tensors = _tensors()
    write_safetensors(tmp_path / "a.safetensors", tensors, {"format": "pt"})
    _assert_same(safetensors.numpy.load_file(tmp_path / "a.safetensors"), tensors)


def test_reference_library_file_is_read_here(tmp_path: Path) -> None:
    tensors = _tensors(1)
    safetensors.numpy.save_file(tensors, tmp_path / "b.safetensors", metadata={"format": "np"})
    _assert_same(open_safetensors(tmp_path / "b.safetensors"), tensors)


def test_bfloat16_round_trip(tmp_path: Path) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    array = np.array([1.0, -2.5, 3.140625], dtype=ml_dtypes.bfloat16)
    write_safetensors(tmp_path / "c.safetensors", {"x": array})
    header, _ = read_header(tmp_path / "c.safetensors")
    assert header["x"]["dtype"] == "BF16"
    np.testing.assert_array_equal(open_safetensors(tmp_path / "c.safetensors")["x"], array)


@pytest.mark.parametrize(("text", "expected"), [("2GB", 2 * 10**9), ("500MB", 5 * 10**8), ("1GiB", 2**30), (7, 7)])
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="cannot read size 'big'"):
        parse_size("big")


def test_single_and_sharded_directories(tmp_path: Path) -> None:
    tensors = {f"w{i}": np.full((256,), i, np.float32) for i in range(5)}  # 1 KiB each
    assert save_state_dict(tmp_path / "one", tensors) == [tmp_path / "one" / WEIGHTS_NAME]
    _assert_same(load_state_dict(tmp_path / "one"), tensors)
    written = save_state_dict(tmp_path / "many", tensors, max_shard_size=2048)
    assert [path.name for path in written] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    index = json.loads((tmp_path / "many" / WEIGHTS_INDEX_NAME).read_text())
    assert index["metadata"]["total_size"] == 5 * 1024
    assert index["weight_map"]["w4"] == "model-00003-of-00003.safetensors"
    _assert_same(load_state_dict(tmp_path / "many"), tensors)
    assert not (tmp_path / "many" / WEIGHTS_NAME).exists()


# --- bad files ------------------------------------------------------------------------------------------------------
def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / WEIGHTS_NAME
    write_safetensors(path, {"x": np.ones(100, np.float32)})
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(
        CheckpointError, match=r"is truncated: tensor 'x' ends at byte 400 of the data, which has only 390"
    ):
        open_safetensors(path)
    path.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="is truncated: 5 bytes, not even the 8-byte header length"):
        open_safetensors(path)


def test_corrupted_header(tmp_path: Path) -> None:
    path = tmp_path / WEIGHTS_NAME
    path.write_bytes((10).to_bytes(8, "little") + b"{not json}")
    with pytest.raises(CheckpointError, match="corrupted header: not valid JSON"):
        open_safetensors(path)
    path.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(
        CheckpointError, match=r"corrupted header: it declares 1000000000000 header bytes but the file has 2"
    ):
        open_safetensors(path)


def test_declared_size_larger_than_shape(tmp_path: Path) -> None:
    header = json.dumps({"x": {"dtype": "F32", "shape": [1000000], "data_offsets": [0, 4]}}).encode()
    path = tmp_path / WEIGHTS_NAME
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    with pytest.raises(
        CheckpointError, match=r"tensor 'x' declares bytes 0..4 but shape \[1000000\] of F32 needs 4000000"
    ):
        open_safetensors(path)


def test_overlapping_tensors_and_unknown_dtype(tmp_path: Path) -> None:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    }
    encoded = json.dumps(header).encode()
    path = tmp_path / WEIGHTS_NAME
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + b"\0" * 12)
    with pytest.raises(CheckpointError, match="tensors 'a' and 'b' overlap"):
        open_safetensors(path)
    encoded = json.dumps({"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + b"\0" * 8)
    with pytest.raises(CheckpointError, match="tensor dtype 'C64' is not supported"):
        open_safetensors(path)


def test_index_pointing_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.safetensors"
    write_safetensors(outside, {"x": np.ones(2, np.float32)})
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    for target in ("../secret.safetensors", str(outside)):
        (checkpoint / WEIGHTS_INDEX_NAME).write_text(json.dumps({"weight_map": {"x": target}}))
        with pytest.raises(CheckpointError, match=r"which is outside .*checkpoint; refusing to read it"):
            load_state_dict(checkpoint)


def test_symlink_escaping_the_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.safetensors"
    write_safetensors(outside, {"x": np.ones(2, np.float32)})
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    os.symlink(outside, checkpoint / WEIGHTS_NAME)
    with pytest.raises(CheckpointError, match=r"outside .*checkpoint; refusing"):
        load_state_dict(checkpoint)


def test_index_listing_tensors_no_shard_holds(tmp_path: Path) -> None:
    save_state_dict(tmp_path, {"a": np.ones(300, np.float32), "b": np.ones(300, np.float32)}, max_shard_size=1500)
    index = json.loads((tmp_path / WEIGHTS_INDEX_NAME).read_text())
    index["weight_map"]["ghost"] = "model-00001-of-00002.safetensors"
    (tmp_path / WEIGHTS_INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="lists tensors no shard holds: ghost"):
        load_state_dict(tmp_path)


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=f"no {WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME} in"):
        load_state_dict(tmp_path)


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        write_safetensors(tmp_path / WEIGHTS_NAME, {"x": np.ones(4, np.float32)})
    assert list(tmp_path.iterdir()) == []
