"""Weight files written here load in Transformers 4.57 (PT, TF, Flax) and openai-whisper, and the reverse.

Runs in the peers environment, where Transformers, its TF/Flax stacks and openai-whisper sit beside whisper_multi's
core. Every comparison is exact: a conversion only renames and permutes axes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

transformers = pytest.importorskip("transformers", reason="Transformers runs in the `nox -s peers` session")
torch = pytest.importorskip("torch")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from whisper_multi import WhisperConfig  # noqa: E402
from whisper_multi.weights import hf_formats, openai_format  # noqa: E402
from whisper_multi.weights.convert import convert, read_checkpoint  # noqa: E402
from whisper_multi.weights.safetensors_io import save_state_dict  # noqa: E402
from whisper_multi.weights.table import canonical_parameters, framework_names, to_framework_layout  # noqa: E402

FIELDS = dict(
    vocab_size=100, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
    decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=30,
    max_target_positions=20, num_mel_bins=8, decoder_start_token_id=1, pad_token_id=0, bos_token_id=0,
    eos_token_id=2, begin_suppress_tokens=[3], suppress_tokens=[],
)  # fmt: skip


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


needs_tf = pytest.mark.skipif(not (_has("tensorflow") and _has("h5py")), reason="TensorFlow is not installed")
needs_flax = pytest.mark.skipif(not _has("flax"), reason="Flax is not installed")
needs_openai = pytest.mark.skipif(not _has("whisper"), reason="openai-whisper is not installed")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random canonical checkpoint (non-zero biases and norms, so every tensor is distinguishable)."""
    config = WhisperConfig(**FIELDS)
    rng = np.random.default_rng(7)
    tensors = {n: rng.standard_normal(s.shape).astype(np.float32) for n, s in canonical_parameters(config).items()}
    directory = tmp_path_factory.mktemp("source") / "canonical"
    save_state_dict(directory, tensors)
    config.save_pretrained(directory)
    return directory


def _canonical(directory: Path) -> dict[str, np.ndarray]:
    return read_checkpoint(directory).tensors


def _pt_state(model: object) -> dict[str, np.ndarray]:
    return {name: tensor.detach().numpy() for name, tensor in model.state_dict().items()}  # type: ignore[attr-defined]


def _assert_same(expected: dict[str, np.ndarray], found: dict[str, np.ndarray]) -> None:
    assert sorted(found) == sorted(expected)
    different = [n for n in expected if not np.array_equal(np.asarray(found[n]), np.asarray(expected[n]))]
    assert different == []


# --- ours -> theirs -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_shard_size", ["5GB", "4KB"])
def test_transformers_pt_loads_our_pytorch_model_bin(source: Path, tmp_path: Path, max_shard_size: str) -> None:
    written = convert(source, tmp_path / "pt", "pt", max_shard_size=max_shard_size)
    model, info = transformers.WhisperForConditionalGeneration.from_pretrained(written, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    state = _pt_state(model)
    expected = _canonical(source)
    _assert_same(expected, {n: state[n] for n in expected})
    assert np.array_equal(state["proj_out.weight"], expected["model.decoder.embed_tokens.weight"])


def _tf_weights(model: object) -> dict[str, np.ndarray]:
    # Keras names start with the model's name; Transformers' loader drops that first component, and so do we.
    return {w.name.partition("/")[2]: w.numpy() for w in model.weights}  # type: ignore[attr-defined]


def _in_layout(config: WhisperConfig, framework: str, canonical: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    specs, names = canonical_parameters(config), framework_names(config, framework)
    return {names[n]: to_framework_layout(canonical[n], specs[n].kind, framework) for n in specs}


@needs_tf
@pytest.mark.parametrize("max_shard_size", ["5GB", "4KB"])
def test_transformers_tf_loads_our_tf_model_h5(source: Path, tmp_path: Path, max_shard_size: str) -> None:
    written = convert(source, tmp_path / "tf", "tf", max_shard_size=max_shard_size)
    model, info = transformers.TFWhisperForConditionalGeneration.from_pretrained(written, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    config = read_checkpoint(written).config
    _assert_same(_in_layout(config, "tf", _canonical(source)), _tf_weights(model))


def _flat(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else key
        flat.update(_flat(value, name) if isinstance(value, dict) else {name: np.asarray(value)})
    return flat


def _load_flax_strictly(directory: Path, caplog: pytest.LogCaptureFixture) -> object:
    """FlaxWhisper...from_pretrained, failing on any missing or unused weight (Flax has no output_loading_info;
    Transformers logs both)."""
    with caplog.at_level("WARNING", logger="transformers"):
        model = transformers.FlaxWhisperForConditionalGeneration.from_pretrained(directory)
    problems = [r.getMessage() for r in caplog.records if "not used" in r.getMessage() or "newly" in r.getMessage()]
    assert problems == []
    return model


@needs_flax
@pytest.mark.parametrize("max_shard_size", ["5GB", "4KB"])
def test_transformers_flax_loads_our_flax_model_msgpack(
    source: Path, tmp_path: Path, max_shard_size: str, caplog: pytest.LogCaptureFixture
) -> None:
    written = convert(source, tmp_path / "flax", "flax", max_shard_size=max_shard_size)
    model = _load_flax_strictly(written, caplog)
    config = read_checkpoint(written).config
    _assert_same(_in_layout(config, "flax", _canonical(source)), _flat(dict(model.params)))


@needs_tf
@needs_flax
def test_hf_target_loads_in_all_three_frameworks(
    source: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = convert(source, tmp_path / "hf", "hf")
    for model_class in (transformers.WhisperForConditionalGeneration, transformers.TFWhisperForConditionalGeneration):
        _, info = model_class.from_pretrained(written, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], model_class.__name__
    config = read_checkpoint(written).config
    _assert_same(
        _in_layout(config, "flax", _canonical(source)), _flat(dict(_load_flax_strictly(written, caplog).params))
    )


@needs_openai
def test_openai_whisper_loads_our_model_pt(source: Path, tmp_path: Path) -> None:
    import whisper

    written = convert(source, tmp_path / "openai", "openai")
    model = whisper.load_model(str(written / "model.pt"), device="cpu")
    names = openai_format.openai_names(read_checkpoint(source).config)
    state = _pt_state(model)
    expected = _canonical(source)
    _assert_same({names[n]: a for n, a in expected.items()}, {names[n]: state[names[n]] for n in expected})
    assert sorted(state) == sorted(names.values())  # no parameter of theirs is left out


# --- theirs -> ours ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def theirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """A random Transformers PyTorch model saved as pytorch_model.bin, and its canonical state."""
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**FIELDS))
    directory = tmp_path_factory.mktemp("theirs") / "pt"
    model.save_pretrained(directory, safe_serialization=False)
    state = _pt_state(model)
    state.pop("proj_out.weight")
    return directory, state


def test_we_read_transformers_pytorch_model_bin(theirs: tuple[Path, dict[str, np.ndarray]]) -> None:
    directory, state = theirs
    _assert_same(state, _canonical(directory))


@needs_tf
@pytest.mark.parametrize("max_shard_size", ["10GB", "4KB"])
def test_we_read_transformers_tf_model_h5(theirs, tmp_path: Path, max_shard_size: str) -> None:
    directory, state = theirs
    model = transformers.TFWhisperForConditionalGeneration.from_pretrained(directory, from_pt=True)
    model.save_pretrained(tmp_path, max_shard_size=max_shard_size)
    assert (tmp_path / "tf_model.h5.index.json").is_file() == (max_shard_size == "4KB")
    _assert_same(state, _canonical(tmp_path))


@needs_flax
@pytest.mark.parametrize("max_shard_size", ["10GB", "4KB"])
def test_we_read_transformers_flax_model_msgpack(theirs, tmp_path: Path, max_shard_size: str) -> None:
    directory, state = theirs
    model = transformers.FlaxWhisperForConditionalGeneration.from_pretrained(directory, from_pt=True)
    model.save_pretrained(tmp_path, max_shard_size=max_shard_size)
    assert (tmp_path / "flax_model.msgpack.index.json").is_file() == (max_shard_size == "4KB")
    _assert_same(state, _canonical(tmp_path))


@needs_openai
def test_we_read_openai_whisper_checkpoints(tmp_path: Path) -> None:
    import whisper
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(
        n_mels=8, n_audio_ctx=30, n_audio_state=16, n_audio_head=2, n_audio_layer=2, n_vocab=100, n_text_ctx=20,
        n_text_state=16, n_text_head=2, n_text_layer=2,
    )  # fmt: skip
    torch.manual_seed(1)
    model = Whisper(dims)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_()  # openai-whisper leaves the decoder's positional embedding uninitialized (torch.empty)
    path = tmp_path / "tiny-random.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": model.state_dict()}, path)
    assert whisper.load_model(str(path), device="cpu") is not None
    checkpoint = read_checkpoint(path)
    names = openai_format.openai_names(checkpoint.config)
    state = _pt_state(model)
    _assert_same({n: state[names[n]] for n in names}, checkpoint.tensors)


def test_reading_their_pt_file_with_our_reader_matches_convert(theirs) -> None:
    directory, _ = theirs
    config = read_checkpoint(directory).config
    _assert_same(_canonical(directory), hf_formats.read_pt(directory, config))
