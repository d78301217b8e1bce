"""The canonical parameter table, the state-dict check and the per-framework layout rules."""

from __future__ import annotations

import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from whisper_multi import CheckpointError, WhisperConfig
from whisper_multi.weights import (
    KINDS,
    LAYOUT_RULES,
    TIED_PARAMETERS,
    ParamSpec,
    canonical_parameters,
    check_state_dict,
    framework_shape,
    from_framework_layout,
    tied_parameters,
    to_framework_layout,
)

# Parameter counts of the published checkpoints as their model cards state them (millions, one decimal).
PUBLISHED_PARAMS_M = {"tiny": 37.8, "base": 72.6, "small": 241.7, "medium": 763.9, "large-v3": 1543.5}


def shapes_only(specs: dict[str, ParamSpec]) -> dict[str, SimpleNamespace]:
    """Stand-ins with a ``.shape``: check_state_dict must not need the data."""
    return {name: SimpleNamespace(shape=spec.shape) for name, spec in specs.items()}


@pytest.fixture(scope="module")
def tiny_en() -> WhisperConfig:
    return WhisperConfig.from_preset("tiny.en")


def test_first_names_follow_transformers_state_dict_order(tiny_en: WhisperConfig) -> None:
    names = list(canonical_parameters(tiny_en))
    assert names[:12] == [
        "model.encoder.conv1.weight",
        "model.encoder.conv1.bias",
        "model.encoder.conv2.weight",
        "model.encoder.conv2.bias",
        "model.encoder.embed_positions.weight",
        "model.encoder.layers.0.self_attn.k_proj.weight",
        "model.encoder.layers.0.self_attn.v_proj.weight",
        "model.encoder.layers.0.self_attn.v_proj.bias",
        "model.encoder.layers.0.self_attn.q_proj.weight",
        "model.encoder.layers.0.self_attn.q_proj.bias",
        "model.encoder.layers.0.self_attn.out_proj.weight",
        "model.encoder.layers.0.self_attn.out_proj.bias",
    ]
    assert names[-2:] == ["model.decoder.layer_norm.weight", "model.decoder.layer_norm.bias"]


def test_decoder_layer_names_and_shapes(tiny_en: WhisperConfig) -> None:
    specs = canonical_parameters(tiny_en)
    layer = {name.removeprefix("model.decoder.layers.3."): spec for name, spec in specs.items() if ".layers.3." in name}
    layer = {name: spec for name, spec in layer.items() if not spec.name.startswith("model.encoder")}
    assert list(layer) == [
        *[f"self_attn.{p}" for p in ("k_proj.weight", "v_proj.weight", "v_proj.bias", "q_proj.weight", "q_proj.bias")],
        "self_attn.out_proj.weight", "self_attn.out_proj.bias",
        "self_attn_layer_norm.weight", "self_attn_layer_norm.bias",
        *[f"encoder_attn.{p}" for p in ("k_proj.weight", "v_proj.weight", "v_proj.bias", "q_proj.weight", "q_proj.bias")],
        "encoder_attn.out_proj.weight", "encoder_attn.out_proj.bias",
        "encoder_attn_layer_norm.weight", "encoder_attn_layer_norm.bias",
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
        "final_layer_norm.weight", "final_layer_norm.bias",
    ]  # fmt: skip
    assert layer["fc1.weight"] == ParamSpec("model.decoder.layers.3.fc1.weight", (1536, 384), "linear_weight")
    assert layer["fc2.weight"].shape == (384, 1536)
    assert layer["encoder_attn_layer_norm.weight"].kind == "norm_scale"


def test_shapes_and_kinds_of_the_stems(tiny_en: WhisperConfig) -> None:
    specs = canonical_parameters(tiny_en)
    assert specs["model.encoder.conv1.weight"] == ParamSpec("model.encoder.conv1.weight", (384, 80, 3), "conv_weight")
    assert specs["model.encoder.conv2.weight"].shape == (384, 384, 3)
    assert specs["model.encoder.conv2.bias"].kind == "conv_bias"
    assert specs["model.encoder.embed_positions.weight"] == ParamSpec(
        "model.encoder.embed_positions.weight", (1500, 384), "positional_table"
    )
    assert specs["model.decoder.embed_positions.weight"].shape == (448, 384)
    assert specs["model.decoder.embed_tokens.weight"] == ParamSpec(
        "model.decoder.embed_tokens.weight", (51864, 384), "embedding"
    )
    assert {spec.kind for spec in specs.values()} <= set(KINDS)


def test_key_projections_have_no_bias_and_proj_out_is_tied(tiny_en: WhisperConfig) -> None:
    specs = canonical_parameters(tiny_en)
    assert not [name for name in specs if name.endswith("k_proj.bias")]
    assert len([name for name in specs if name.endswith("k_proj.weight")]) == 4 + 2 * 4
    assert "proj_out.weight" not in specs
    assert TIED_PARAMETERS == {"proj_out.weight": "model.decoder.embed_tokens.weight"}
    assert tied_parameters("conditional_generation") == TIED_PARAMETERS
    assert tied_parameters("base") == {}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_M))
def test_table_size_matches_published_parameter_count(name: str) -> None:
    specs = canonical_parameters(WhisperConfig.from_preset(name))
    assert round(sum(math.prod(spec.shape) for spec in specs.values()) / 1e6, 1) == PUBLISHED_PARAMS_M[name]


def test_base_head_drops_the_model_prefix(tiny_en: WhisperConfig) -> None:
    full = canonical_parameters(tiny_en)
    base = canonical_parameters(tiny_en, head="base")
    assert list(base) == [name.removeprefix("model.") for name in full]
    assert [spec.shape for spec in base.values()] == [spec.shape for spec in full.values()]


def test_audio_classification_head() -> None:
    config = WhisperConfig.from_preset("tiny", num_labels=5, classifier_proj_size=64, use_weighted_layer_sum=True)
    specs = canonical_parameters(config, head="audio_classification")
    assert not [name for name in specs if name.startswith(("decoder.", "model."))]
    assert "encoder.conv1.weight" in specs
    assert list(specs)[-5:] == ["layer_weights", "projector.weight", "projector.bias", "classifier.weight",
                                "classifier.bias"]  # fmt: skip
    assert specs["layer_weights"].shape == (5,)  # the embeddings plus 4 encoder layers
    assert specs["projector.weight"] == ParamSpec("projector.weight", (64, 384), "linear_weight")
    assert specs["classifier.weight"].shape == (5, 64)
    assert specs["classifier.bias"].shape == (5,)
    plain = canonical_parameters(WhisperConfig.from_preset("tiny"), head="audio_classification")
    assert "layer_weights" not in plain
    assert plain["classifier.weight"].shape == (2, 256)  # Transformers' defaults: 2 labels, projection of 256


def test_unknown_head_is_rejected(tiny_en: WhisperConfig) -> None:
    with pytest.raises(ValueError, match="unknown head 'lm'"):
        canonical_parameters(tiny_en, head="lm")


# --- check_state_dict ---------------------------------------------------------------------------------------------
def test_check_state_dict_accepts_exact_tables(tiny_en: WhisperConfig) -> None:
    for head in ("conditional_generation", "base", "audio_classification"):
        check_state_dict(tiny_en, shapes_only(canonical_parameters(tiny_en, head)), "fake.safetensors", head=head)


def test_check_state_dict_accepts_a_tied_name_with_the_right_shape(tiny_en: WhisperConfig) -> None:
    tensors = shapes_only(canonical_parameters(tiny_en))
    tensors["proj_out.weight"] = SimpleNamespace(shape=(51864, 384))
    check_state_dict(tiny_en, tensors, "state_dict()")
    tensors["proj_out.weight"] = SimpleNamespace(shape=(51865, 384))
    with pytest.raises(CheckpointError, match=r"proj_out\.weight: expected \(51864, 384\), found \(51865, 384\)"):
        check_state_dict(tiny_en, tensors, "state_dict()")


def test_check_state_dict_reports_every_problem_with_the_source(tiny_en: WhisperConfig) -> None:
    tensors = shapes_only(canonical_parameters(tiny_en))
    del tensors["model.encoder.conv1.bias"]
    del tensors["model.decoder.layer_norm.weight"]
    tensors["model.encoder.layers.0.self_attn.k_proj.bias"] = SimpleNamespace(shape=(384,))
    tensors["model.decoder.embed_tokens.weight"] = SimpleNamespace(shape=(51865, 384))
    with pytest.raises(CheckpointError) as caught:
        check_state_dict(tiny_en, tensors, "/ckpt/model.safetensors")
    message = str(caught.value)
    assert message.startswith("/ckpt/model.safetensors does not match")
    assert "missing (2):" in message and "model.encoder.conv1.bias" in message
    assert "model.decoder.layer_norm.weight" in message
    assert "unexpected (1):\n    model.encoder.layers.0.self_attn.k_proj.bias" in message
    assert "model.decoder.embed_tokens.weight: expected (51864, 384), found (51865, 384)" in message


def test_check_state_dict_counts_long_listings(tiny_en: WhisperConfig) -> None:
    with pytest.raises(CheckpointError, match=r"missing \(167\):(.|\n)*\.\.\. and 157 more"):
        check_state_dict(tiny_en, {}, "empty.safetensors")


def test_check_state_dict_accepts_numpy_arrays() -> None:
    config = WhisperConfig.from_preset(
        "tiny.en", d_model=8, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, num_mel_bins=4,
    )  # fmt: skip
    tensors = {name: np.zeros(spec.shape, np.float32) for name, spec in canonical_parameters(config).items()}
    check_state_dict(config, tensors, "arrays")


# --- layout rules -------------------------------------------------------------------------------------------------
KIND_SHAPES = {
    "linear_weight": (6, 4),
    "linear_bias": (6,),
    "conv_weight": (6, 4, 3),
    "conv_bias": (6,),
    "norm_scale": (6,),
    "norm_bias": (6,),
    "embedding": (10, 6),
    "positional_table": (7, 6),
    "layer_weights": (5,),
}


def test_every_kind_has_a_rule_in_every_framework() -> None:
    assert set(LAYOUT_RULES) == {"pt", "tf", "flax"}
    for rules in LAYOUT_RULES.values():
        assert set(rules) == set(KINDS) == set(KIND_SHAPES)


@pytest.mark.parametrize("framework", ["pt", "tf", "flax"])
@pytest.mark.parametrize("kind", KINDS)
def test_rules_round_trip_bit_exactly(framework: str, kind: str) -> None:
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float16):
        array = rng.standard_normal(KIND_SHAPES[kind]).astype(dtype)
        there = to_framework_layout(array, kind, framework)
        back = from_framework_layout(there, kind, framework)
        assert back.dtype == array.dtype and back.shape == array.shape
        assert back.tobytes() == np.ascontiguousarray(back).tobytes() == array.tobytes()


@pytest.mark.parametrize("framework", ["tf", "flax"])
def test_channels_last_layouts(framework: str) -> None:
    linear = np.arange(6 * 4, dtype=np.float32).reshape(6, 4)  # (out, in)
    kernel = to_framework_layout(linear, "linear_weight", framework)
    assert kernel.shape == (4, 6) and kernel[1, 5] == linear[5, 1]
    conv = np.arange(6 * 4 * 3, dtype=np.float32).reshape(6, 4, 3)  # (out, in, width)
    conv_kernel = to_framework_layout(conv, "conv_weight", framework)
    assert conv_kernel.shape == (3, 4, 6)  # (width, in, out)
    assert conv_kernel[2, 1, 5] == conv[5, 1, 2]
    table = np.arange(12, dtype=np.float32).reshape(2, 6)
    assert to_framework_layout(table, "embedding", framework) is table


def test_pt_is_the_canonical_layout() -> None:
    conv = np.ones((6, 4, 3), np.float32)
    assert to_framework_layout(conv, "conv_weight", "pt") is conv


def test_framework_shape_without_data(tiny_en: WhisperConfig) -> None:
    specs = canonical_parameters(tiny_en)
    assert framework_shape(specs["model.decoder.embed_tokens.weight"], "flax") == (51864, 384)
    assert framework_shape(specs["model.encoder.conv1.weight"], "tf") == (3, 80, 384)
    assert framework_shape(specs["model.encoder.layers.0.fc1.weight"], "tf") == (384, 1536)
    assert framework_shape(specs["model.encoder.layers.0.fc1.weight"], "pt") == (1536, 384)


def test_unknown_framework_or_kind() -> None:
    with pytest.raises(ValueError, match="unknown framework 'mxnet'"):
        to_framework_layout(np.zeros(2), "linear_bias", "mxnet")
    with pytest.raises(ValueError, match="no tf layout rule for kind 'bogus'"):
        from_framework_layout(np.zeros(2), "bogus", "tf")


def test_weight_layer_imports_no_framework() -> None:
    code = (
        "import sys, whisper_multi.weights\n"
        "heavy = {'torch', 'tensorflow', 'jax', 'flax', 'ctranslate2'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
