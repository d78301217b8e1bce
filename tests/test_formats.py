"""Transformers PT/TF/Flax and openai-whisper weight files: names from the table, exact round trips, unsafe files.

The expected TF and Flax names are those Transformers 4.57 writes for a tiny random model (checked against the real
library in tests/peers/test_transformers_formats.py).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from whisper_multi import WhisperConfig
from whisper_multi.errors import CheckpointError
from whisper_multi.weights import hf_formats, hf_tf, openai_format
from whisper_multi.weights.table import canonical_parameters, framework_names

h5py = pytest.importorskip("h5py")
msgpack = pytest.importorskip("msgpack")


def tiny_config() -> WhisperConfig:
    return WhisperConfig(
        vocab_size=100, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=30,
        max_target_positions=20, num_mel_bins=8, decoder_start_token_id=1, pad_token_id=0, bos_token_id=0,
        eos_token_id=2, begin_suppress_tokens=[3], suppress_tokens=[],
    )  # fmt: skip


def random_tensors(config: WhisperConfig, dtype: str = "float32", seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        name: rng.standard_normal(spec.shape).astype(np.float32).astype(dtype)
        for name, spec in canonical_parameters(config).items()
    }


@pytest.fixture
def config() -> WhisperConfig:
    return tiny_config()


@pytest.fixture
def tensors(config: WhisperConfig) -> dict[str, np.ndarray]:
    return random_tensors(config)


def assert_equal_tensors(expected: dict[str, np.ndarray], found: dict[str, np.ndarray]) -> None:
    assert list(found) == list(expected)
    for name, array in expected.items():
        assert found[name].dtype == array.dtype, name
        assert np.ascontiguousarray(found[name]).tobytes() == np.ascontiguousarray(array).tobytes(), name


# --- names ----------------------------------------------------------------------------------------------------------
def test_tf_names_are_transformers_names(config: WhisperConfig) -> None:
    names = framework_names(config, "tf")
    assert names["model.encoder.conv1.weight"] == "model/encoder/conv1/kernel:0"
    assert names["model.encoder.embed_positions.weight"] == "model/encoder/embed_positions/weight:0"
    assert names["model.encoder.layers.1.self_attn.k_proj.weight"] == "model/encoder/layers.1/self_attn/k_proj/kernel:0"
    assert names["model.decoder.layers.0.encoder_attn_layer_norm.weight"] == (
        "model/decoder/layers.0/encoder_attn_layer_norm/gamma:0"
    )
    assert names["model.decoder.layer_norm.bias"] == "model/decoder/layer_norm/beta:0"
    assert names["model.decoder.embed_tokens.weight"] == "model/decoder/embed_tokens/embeddings:0"


def test_flax_names_are_transformers_names(config: WhisperConfig) -> None:
    names = framework_names(config, "flax")
    assert names["model.encoder.conv2.weight"] == "model/encoder/conv2/kernel"
    assert names["model.encoder.embed_positions.weight"] == "model/encoder/embed_positions/embedding"
    assert names["model.decoder.layers.1.fc2.bias"] == "model/decoder/layers/1/fc2/bias"
    assert names["model.encoder.layers.0.final_layer_norm.weight"] == "model/encoder/layers/0/final_layer_norm/scale"
    assert names["model.decoder.embed_tokens.weight"] == "model/decoder/embed_tokens/embedding"


def test_openai_names(config: WhisperConfig) -> None:
    names = openai_format.openai_names(config)
    expected = {
        "model.encoder.embed_positions.weight": "encoder.positional_embedding",
        "model.encoder.layers.1.self_attn.q_proj.weight": "encoder.blocks.1.attn.query.weight",
        "model.encoder.layers.0.self_attn.k_proj.weight": "encoder.blocks.0.attn.key.weight",
        "model.encoder.layers.0.self_attn_layer_norm.bias": "encoder.blocks.0.attn_ln.bias",
        "model.encoder.layers.0.fc1.weight": "encoder.blocks.0.mlp.0.weight",
        "model.encoder.layers.0.fc2.bias": "encoder.blocks.0.mlp.2.bias",
        "model.encoder.layers.0.final_layer_norm.weight": "encoder.blocks.0.mlp_ln.weight",
        "model.encoder.layer_norm.weight": "encoder.ln_post.weight",
        "model.decoder.embed_tokens.weight": "decoder.token_embedding.weight",
        "model.decoder.embed_positions.weight": "decoder.positional_embedding",
        "model.decoder.layers.1.encoder_attn.v_proj.bias": "decoder.blocks.1.cross_attn.value.bias",
        "model.decoder.layers.1.encoder_attn.out_proj.weight": "decoder.blocks.1.cross_attn.out.weight",
        "model.decoder.layers.1.encoder_attn_layer_norm.weight": "decoder.blocks.1.cross_attn_ln.weight",
        "model.decoder.layer_norm.bias": "decoder.ln.bias",
    }
    assert {name: names[name] for name in expected} == expected
    assert len(set(names.values())) == len(names)  # the rename is one-to-one


# --- exact round trips ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("framework", ["pt", "tf", "flax"])
@pytest.mark.parametrize("max_shard_size", ["5GB", 4000])
def test_round_trip(framework: str, max_shard_size: object, config, tensors, tmp_path: Path) -> None:
    pytest.importorskip("torch") if framework == "pt" else None
    written = hf_formats.WRITERS[framework](tmp_path, config, tensors, max_shard_size)
    sharded = max_shard_size == 4000
    assert (len(written) > 1) == sharded
    assert (tmp_path / hf_formats.index_name(hf_formats.WEIGHTS_NAMES[framework])).is_file() == sharded
    assert_equal_tensors(tensors, hf_formats.READERS[framework](tmp_path, config))


@pytest.mark.parametrize("framework", ["pt", "flax"])
def test_bfloat16_round_trip(framework: str, config, tmp_path: Path) -> None:
    pytest.importorskip("ml_dtypes")
    pytest.importorskip("torch") if framework == "pt" else None
    tensors = random_tensors(config, "bfloat16")
    hf_formats.WRITERS[framework](tmp_path, config, tensors)
    assert_equal_tensors(tensors, hf_formats.READERS[framework](tmp_path, config))


def test_openai_round_trip(config, tensors, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    path = openai_format.write_openai(tmp_path / "model.pt", config, tensors)
    checkpoint = openai_format.read_openai(path)
    assert_equal_tensors(tensors, checkpoint.tensors)
    assert openai_format.dims_from_config(checkpoint.config) == openai_format.dims_from_config(config)


def test_openai_alignment_heads_are_read(config, tensors, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = openai_format.write_openai(tmp_path / "model.pt", config, tensors)
    checkpoint = torch.load(path, weights_only=True)
    mask = torch.zeros(2, 2, dtype=torch.bool)
    mask[1, 0] = mask[1, 1] = True
    checkpoint["model_state_dict"]["alignment_heads"] = mask.to_sparse()
    torch.save(checkpoint, path)
    assert openai_format.read_openai(path).alignment_heads == [(1, 0), (1, 1)]


def test_openai_refuses_a_config_it_cannot_express(config, tensors, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    odd = WhisperConfig.from_dict({**config.to_dict(), "encoder_ffn_dim": 48, "decoder_ffn_dim": 48})
    with pytest.raises(CheckpointError, match="encoder_ffn_dim is 48"):
        openai_format.write_openai(tmp_path / "model.pt", odd, random_tensors(odd))


# --- the files themselves -------------------------------------------------------------------------------------------
def test_tf_file_layout(config, tensors, tmp_path: Path) -> None:
    hf_formats.write_tf(tmp_path, config, tensors)
    with h5py.File(tmp_path / "tf_model.h5", "r") as file:
        assert [n.decode() for n in file.attrs["layer_names"]] == ["model"]
        weight_names = [n.decode() for n in file["model"].attrs["weight_names"]]
        assert weight_names[0] == "tf_whisper_for_conditional_generation/model/encoder/conv1/kernel:0"
        kernel = file["model"][weight_names[0]][...]
    # Conv1D kernels are (kernel, in, out) in Keras.
    assert np.array_equal(kernel, tensors["model.encoder.conv1.weight"].transpose(2, 1, 0))


def test_flax_file_decodes_with_plain_msgpack(config, tensors, tmp_path: Path) -> None:
    hf_formats.write_flax(tmp_path, config, tensors)

    def ext(code: int, data: bytes) -> np.ndarray:
        assert code == 1
        shape, dtype, raw = msgpack.unpackb(data, raw=True)
        return np.frombuffer(raw, dtype=dtype.decode()).reshape(shape)

    tree = msgpack.unpackb((tmp_path / "flax_model.msgpack").read_bytes(), ext_hook=ext, raw=False)
    fc1 = tree["model"]["decoder"]["layers"]["1"]["fc1"]["kernel"]
    assert np.array_equal(fc1, tensors["model.decoder.layers.1.fc1.weight"].T)  # Dense kernels are (in, out)
    assert set(tree) == {"model"} and set(tree["model"]) == {"encoder", "decoder"}


def test_flax_arrays_are_views_of_the_file(config, tensors, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hf_formats.write_flax(tmp_path, config, tensors)
    fed: list[int] = []

    class Recording(msgpack.Unpacker):
        def feed(self, data) -> None:
            fed.append(len(data))
            super().feed(data)

    monkeypatch.setattr(msgpack, "Unpacker", Recording)
    flat = hf_formats.read_msgpack_tree(tmp_path / "flax_model.msgpack")
    largest = max(array.nbytes for array in flat.values())
    assert fed and max(fed) < largest  # no array's bytes went through msgpack's buffer
    for name, array in flat.items():
        assert not array.flags.owndata and not array.flags.writeable, name
    embeddings = flat["model/decoder/embed_tokens/embedding"]
    assert embeddings.tobytes() == tensors["model.decoder.embed_tokens.weight"].tobytes()


def test_flax_reader_takes_every_ext_size_and_refuses_other_exts(tmp_path: Path) -> None:
    def ndarray(array: np.ndarray) -> msgpack.ExtType:
        return msgpack.ExtType(1, msgpack.packb((list(array.shape), array.dtype.name, array.tobytes())))

    small = np.arange(6, dtype=np.int8)  # a 16-byte payload: msgpack writes it as fixext 16
    assert len(ndarray(small).data) == 16
    large = np.arange(20000, dtype=np.float32).reshape(100, 200)  # ext 32
    path = tmp_path / "tree.msgpack"
    path.write_bytes(msgpack.packb({"a": {"small": ndarray(small), "large": ndarray(large)}}))
    flat = hf_formats.read_msgpack_tree(path)
    assert np.array_equal(flat["a/small"], small) and np.array_equal(flat["a/large"], large)
    path.write_bytes(msgpack.packb({"a": msgpack.ExtType(5, b"xyz")}))
    with pytest.raises(CheckpointError, match=r"a is a msgpack ext of type 5; expected a Flax array or a map"):
        hf_formats.read_msgpack_tree(path)
    bad_size = msgpack.packb(((3,), "float32", b"\0" * 8))  # 3 float32 need 12 bytes
    path.write_bytes(msgpack.packb({"a": msgpack.ExtType(1, bad_size)}))
    with pytest.raises(CheckpointError, match=r"a holds 8 data bytes .* its shape \(3,\) of float32 needs 12"):
        hf_formats.read_msgpack_tree(path)


def test_large_attribute_lists_are_split_as_keras_splits_them(tmp_path: Path) -> None:
    names = [f"layer_{i:05d}/" + "x" * 100 for i in range(1000)]  # ~110 kB: over the 64 kB attribute limit
    with h5py.File(tmp_path / "a.h5", "w") as file:
        hf_tf._set_h5_strings(file, "weight_names", names)
        assert "weight_names" not in file.attrs and "weight_names0" in file.attrs
        assert hf_tf._h5_strings(file, "weight_names") == names


# --- bad files --------------------------------------------------------------------------------------------------------
class _Marker:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (self.path,))


@pytest.mark.parametrize("kind", ["pt", "openai"])
def test_pickle_with_code_is_refused_and_not_run(kind: str, config, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    marker = tmp_path / "code-ran"
    payload = {"model.encoder.conv1.weight": torch.zeros(1), "evil": _Marker(str(marker))}
    path = tmp_path / ("pytorch_model.bin" if kind == "pt" else "model.pt")
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="refused") as error:
        hf_formats.read_pt(tmp_path, config) if kind == "pt" else openai_format.read_openai(path)
    assert str(path) in str(error.value)
    assert not marker.exists()


def test_plain_pickle_with_code_is_refused(config, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    marker = tmp_path / "code-ran"
    (tmp_path / "pytorch_model.bin").write_bytes(pickle.dumps(_Marker(str(marker))))
    with pytest.raises(CheckpointError):
        hf_formats.read_pt(tmp_path, config)
    assert not marker.exists()


def test_h5_external_link_is_refused(config, tensors, tmp_path: Path) -> None:
    hf_formats.write_tf(tmp_path, config, tensors)
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other["secret"] = np.zeros(3)
    with h5py.File(tmp_path / "tf_model.h5", "a") as file:
        file["model/elsewhere"] = h5py.ExternalLink("other.h5", "/secret")
    with pytest.raises(CheckpointError, match=r"external link to other\.h5:/secret") as error:
        hf_formats.read_tf(tmp_path, config)
    assert "model/elsewhere" in str(error.value)


def test_h5_external_dataset_is_refused(config, tensors, tmp_path: Path) -> None:
    hf_formats.write_tf(tmp_path, config, tensors)
    (tmp_path / "raw.bin").write_bytes(np.zeros(16, np.float32).tobytes())
    with h5py.File(tmp_path / "tf_model.h5", "a") as file:
        file.create_dataset("model/outside", shape=(16,), dtype="f4", external=[("raw.bin", 0, 64)])
    with pytest.raises(CheckpointError, match=r"model/outside.*another file"):
        hf_formats.read_tf(tmp_path, config)


def test_wrong_shape_missing_and_extra_names_are_listed(config, tensors, tmp_path: Path) -> None:
    hf_formats.write_tf(tmp_path, config, tensors)
    with h5py.File(tmp_path / "tf_model.h5", "a") as file:
        group = file["model/tf_whisper_for_conditional_generation/model"]
        del group["encoder/layer_norm/gamma:0"]
        del group["decoder/layers.0/fc1/bias:0"]
        group.create_dataset("decoder/layers.0/fc1/bias:0", data=np.zeros(5, np.float32))
        names = [n.decode() for n in file["model"].attrs["weight_names"]]
        names.remove("tf_whisper_for_conditional_generation/model/encoder/layer_norm/gamma:0")
        group.create_dataset("decoder/extra/kernel:0", data=np.zeros(2, np.float32))
        names.append("tf_whisper_for_conditional_generation/model/decoder/extra/kernel:0")
        file["model"].attrs["weight_names"] = np.asarray([n.encode() for n in names])
    with pytest.raises(CheckpointError) as error:
        hf_formats.read_tf(tmp_path, config)
    message = str(error.value)
    assert "missing (1):\n    model.encoder.layer_norm.weight" in message
    assert "unexpected (1):\n    model/decoder/extra/kernel:0" in message
    assert "model.decoder.layers.0.fc1.bias: expected (64,), found (5,)" in message
    assert "tf_model.h5" in message


def test_truncated_msgpack_is_refused(config, tensors, tmp_path: Path) -> None:
    hf_formats.write_flax(tmp_path, config, tensors)
    path = tmp_path / "flax_model.msgpack"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"flax_model\.msgpack"):
        hf_formats.read_flax(tmp_path, config)


@pytest.mark.parametrize("framework", ["pt", "tf", "flax"])
def test_index_pointing_outside_its_directory_is_refused(framework: str, config, tensors, tmp_path: Path) -> None:
    pytest.importorskip("torch") if framework == "pt" else None
    checkpoint = tmp_path / "checkpoint"
    hf_formats.WRITERS[framework](checkpoint, config, tensors, 4000)
    index_path = checkpoint / hf_formats.index_name(hf_formats.WEIGHTS_NAMES[framework])
    index = json.loads(index_path.read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = "../outside.bin"
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"'\.\./outside\.bin', which is outside"):
        hf_formats.READERS[framework](checkpoint, config)


def test_index_disagreeing_with_its_shards_is_refused(config, tensors, tmp_path: Path) -> None:
    hf_formats.write_flax(tmp_path, config, tensors, 4000)
    index_path = tmp_path / "flax_model.msgpack.index.json"
    index = json.loads(index_path.read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert index["weight_map"]["model/encoder/conv1/kernel"] == shards[0]
    index["weight_map"]["model/encoder/conv1/kernel"] = shards[1]
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="model/encoder/conv1/kernel"):
        hf_formats.read_flax(tmp_path, config)


def test_missing_weights_file_names_the_directory(config, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=f"no tf_model.h5 or tf_model.h5.index.json in {tmp_path}"):
        hf_formats.read_tf(tmp_path, config)
