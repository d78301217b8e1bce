"""WhisperConfig / WhisperGenerationConfig: presets, validation, Transformers-compatible files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from whisper_multi import ConfigError, WhisperConfig, WhisperGenerationConfig
from whisper_multi.configuration import PRESETS

FIXTURES = Path(__file__).parent / "fixtures" / "config"

# Published dimensions, as in openai-whisper's model cards: d_model, enc layers, dec layers, heads, vocab, mels.
PUBLISHED = {
    "tiny": (384, 4, 4, 6, 51865, 80),
    "tiny.en": (384, 4, 4, 6, 51864, 80),
    "base": (512, 6, 6, 8, 51865, 80),
    "base.en": (512, 6, 6, 8, 51864, 80),
    "small": (768, 12, 12, 12, 51865, 80),
    "small.en": (768, 12, 12, 12, 51864, 80),
    "medium": (1024, 24, 24, 16, 51865, 80),
    "medium.en": (1024, 24, 24, 16, 51864, 80),
    "large-v1": (1280, 32, 32, 20, 51865, 80),
    "large-v2": (1280, 32, 32, 20, 51865, 80),
    "large-v3": (1280, 32, 32, 20, 51866, 128),
    "large-v3-turbo": (1280, 32, 4, 20, 51866, 128),
}
# Parameter counts of the published checkpoints as their model cards state them (millions, one decimal;
# openai-whisper's README rounds the same models up to 39 M, 74 M, 244 M, 769 M, 1550 M).
PUBLISHED_PARAMS_M = {
    "tiny": 37.8,
    "base": 72.6,
    "small": 241.7,
    "medium": 763.9,
    "large-v3": 1543.5,
    "large-v3-turbo": 808.9,
}


def count_parameters(config: WhisperConfig) -> int:
    """Parameters of WhisperForConditionalGeneration from the formulas of the architecture (proj_out tied)."""
    d, f = config.d_model, config.encoder_ffn_dim
    attention = 4 * d * d + 3 * d  # q, k, v, out weights; q, v, out biases (k has none)
    mlp = 2 * d * f + f + d
    norm = 2 * d
    encoder_layer = attention + mlp + 2 * norm
    decoder_layer = 2 * attention + mlp + 3 * norm
    convs = config.num_mel_bins * d * 3 + d + d * d * 3 + d
    encoder = convs + config.max_source_positions * d + config.encoder_layers * encoder_layer + norm
    decoder = (config.vocab_size + config.max_target_positions) * d + config.decoder_layers * decoder_layer + norm
    return encoder + decoder


def test_presets_cover_every_published_model() -> None:
    assert set(PRESETS) == set(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_dimensions(name: str) -> None:
    config = WhisperConfig.from_preset(name)
    d_model, encoder_layers, decoder_layers, heads, vocab, mels = PUBLISHED[name]
    assert (config.d_model, config.encoder_layers, config.decoder_layers) == (d_model, encoder_layers, decoder_layers)
    assert (config.encoder_attention_heads, config.decoder_attention_heads) == (heads, heads)
    assert (config.encoder_ffn_dim, config.decoder_ffn_dim) == (4 * d_model, 4 * d_model)
    assert (config.vocab_size, config.num_mel_bins) == (vocab, mels)
    assert (config.max_source_positions, config.max_target_positions) == (1500, 448)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_M))
def test_preset_parameter_count_matches_published_size(name: str) -> None:
    assert round(count_parameters(WhisperConfig.from_preset(name)) / 1e6, 1) == PUBLISHED_PARAMS_M[name]


@pytest.mark.parametrize(
    ("name", "start", "eos", "bos"),
    [("tiny.en", 50257, 50256, 50257), ("tiny", 50258, 50257, 50257), ("large-v3", 50258, 50257, 50257)],
)
def test_preset_special_token_ids(name: str, start: int, eos: int, bos: int) -> None:
    config = WhisperConfig.from_preset(name)
    assert (config.decoder_start_token_id, config.eos_token_id, config.bos_token_id, config.pad_token_id) == (
        start, eos, bos, eos,
    )  # fmt: skip
    assert config.begin_suppress_tokens == [220, eos]


def test_preset_accepts_hub_style_names() -> None:
    assert WhisperConfig.from_preset("openai/whisper-base.en") == WhisperConfig.from_preset("base.en")


def test_unknown_preset_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'.*tiny, tiny\.en, base.*large-v3-turbo"):
        WhisperConfig.from_preset("huge")


def test_defaults_are_transformers_defaults() -> None:
    config = WhisperConfig()
    expected = {
        "vocab_size": 51865, "num_mel_bins": 80, "encoder_layers": 4, "encoder_attention_heads": 6,
        "decoder_layers": 4, "decoder_attention_heads": 6, "decoder_ffn_dim": 1536, "encoder_ffn_dim": 1536,
        "encoder_layerdrop": 0.0, "decoder_layerdrop": 0.0, "decoder_start_token_id": 50257, "use_cache": True,
        "is_encoder_decoder": True, "activation_function": "gelu", "d_model": 384, "dropout": 0.0,
        "attention_dropout": 0.0, "activation_dropout": 0.0, "init_std": 0.02, "scale_embedding": False,
        "max_source_positions": 1500, "max_target_positions": 448, "pad_token_id": 50256, "bos_token_id": 50256,
        "eos_token_id": 50256, "suppress_tokens": None, "begin_suppress_tokens": [220, 50256],
        "use_weighted_layer_sum": False, "classifier_proj_size": 256, "apply_spec_augment": False,
        "mask_time_prob": 0.05, "mask_time_length": 10, "mask_time_min_masks": 2, "mask_feature_prob": 0.0,
        "mask_feature_length": 10, "mask_feature_min_masks": 0, "median_filter_width": 7,
    }  # fmt: skip
    assert {key: getattr(config, key) for key in expected} == expected
    assert config.num_labels == 2 and config.id2label == {0: "LABEL_0", 1: "LABEL_1"}


def test_labels_from_num_labels_and_id2label() -> None:
    assert WhisperConfig(num_labels=3).label2id == {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}
    config = WhisperConfig(id2label={"0": "speech", "1": "music"})
    assert config.id2label == {0: "speech", 1: "music"} and config.label2id == {"speech": 0, "music": 1}
    with pytest.raises(ConfigError, match="num_labels=3 disagrees with id2label, which has 2"):
        WhisperConfig(num_labels=3, id2label={0: "a", 1: "b"})


def test_save_load_round_trip_keeps_unknown_keys(tmp_path: Path) -> None:
    config = WhisperConfig.from_preset("small", my_custom_key={"nested": [1, 2]})
    config.save_pretrained(tmp_path)
    reloaded = WhisperConfig.from_pretrained(tmp_path)
    assert reloaded == config
    assert reloaded.my_custom_key == {"nested": [1, 2]}
    assert json.loads((tmp_path / "config.json").read_text())["my_custom_key"] == {"nested": [1, 2]}


def test_reads_transformers_config_json() -> None:
    config = WhisperConfig.from_pretrained(FIXTURES / "transformers_tiny_en_config.json")
    preset = WhisperConfig.from_preset("tiny.en")
    for key in ("d_model", "encoder_layers", "vocab_size", "decoder_start_token_id", "eos_token_id", "suppress_tokens"):
        assert getattr(config, key) == getattr(preset, key), key
    # Keys this package does not model are kept and written back unchanged.
    assert config.forced_decoder_ids == [[1, 50362]] and config.max_length == 448
    data = config.to_dict()
    source = json.loads((FIXTURES / "transformers_tiny_en_config.json").read_text())
    assert {key: data[key] for key in source if key != "transformers_version"} == {
        key: value for key, value in source.items() if key != "transformers_version"
    }


def test_from_dict_overrides_and_to_json_string() -> None:
    config = WhisperConfig.from_dict({"d_model": 64, "encoder_attention_heads": 4, "decoder_attention_heads": 4})
    assert json.loads(config.to_json_string())["d_model"] == 64
    assert WhisperConfig.from_dict(config.to_dict(), d_model=128).d_model == 128


# --- validation: every rule, with a message naming the value and the expectation --------------------------------
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"d_model": 100, "encoder_attention_heads": 6}, r"d_model=100 is not divisible by encoder_attention_heads=6"),
        ({"d_model": 96, "encoder_attention_heads": 6, "decoder_attention_heads": 5},
         r"d_model=96 is not divisible by decoder_attention_heads=5"),
        ({"d_model": 0}, r"d_model must be positive, got 0"),
        ({"encoder_layers": -1}, r"encoder_layers must be positive, got -1"),
        ({"vocab_size": 0}, r"vocab_size must be positive, got 0"),
        ({"num_mel_bins": 2.5}, r"num_mel_bins must be an integer, got 2.5 \(float\)"),
        ({"decoder_layers": "4"}, r"decoder_layers must be an integer, got '4' \(str\)"),
        ({"encoder_layers": True}, r"encoder_layers must be an integer, got True"),
        ({"activation_function": "mish"}, r"unknown activation_function 'mish'; expected one of gelu"),
        ({"dropout": 1.5}, r"dropout must be a probability between 0 and 1, got 1.5"),
        ({"mask_time_prob": -0.1}, r"mask_time_prob must be a probability between 0 and 1, got -0.1"),
        ({"mask_time_length": -2}, r"mask_time_length must be a non-negative integer, got -2"),
        ({"eos_token_id": 60000}, r"eos_token_id=60000 is not a token id below vocab_size=51865"),
        ({"suppress_tokens": "1,2"}, r"suppress_tokens must be a list of token ids or null, got '1,2'"),
        ({"num_labels": 0}, r"num_labels must be a positive integer, got 0"),
        ({"id2label": ["a"]}, r"id2label must be a dict of index to label, got list"),
        ({"model_type": "wav2vec2"}, r"model_type is 'wav2vec2', expected 'whisper'"),
    ],
)  # fmt: skip
def test_validation_errors(fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WhisperConfig.from_dict(fields)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        WhisperConfig(d_model=-4)


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{\n  "d_model": 384,\n  "encoder_layers": ,\n}\n')
    with pytest.raises(ConfigError, match=rf"{path} is not valid JSON: Expecting value at line 3, column 21"):
        WhisperConfig.from_pretrained(tmp_path)


def test_non_object_json_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must hold a JSON object, found list"):
        WhisperConfig.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=r"no config.json at .*empty"):
        WhisperConfig.from_pretrained(tmp_path / "empty")


def test_invalid_value_in_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"d_model": 10, "encoder_attention_heads": 3}))
    with pytest.raises(ConfigError, match=r"config\.json: d_model=10 is not divisible"):
        WhisperConfig.from_pretrained(tmp_path)


def test_save_into_a_file_path_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "not_a_dir"
    target.write_text("x")
    with pytest.raises(ConfigError, match="it is a file, not a directory"):
        WhisperConfig().save_pretrained(target)


# --- generation config -----------------------------------------------------------------------------------------
def test_generation_config_for_multilingual_vocab(tmp_path: Path) -> None:
    generation = WhisperGenerationConfig.from_model_config(WhisperConfig.from_preset("tiny"))
    assert generation.is_multilingual is True
    assert generation.no_timestamps_token_id == 50363 and generation.prev_sot_token_id == 50361
    assert generation.lang_to_id["<|en|>"] == 50259 and generation.lang_to_id["<|su|>"] == 50357
    assert len(generation.lang_to_id) == 99
    assert generation.task_to_id == {"translate": 50358, "transcribe": 50359}
    generation.save_pretrained(tmp_path)
    assert WhisperGenerationConfig.from_pretrained(tmp_path) == generation


def test_generation_config_for_large_v3_and_english_only() -> None:
    v3 = WhisperGenerationConfig.from_model_config(WhisperConfig.from_preset("large-v3"))
    assert v3.lang_to_id["<|yue|>"] == 50358 and v3.task_to_id == {"translate": 50359, "transcribe": 50360}
    assert v3.no_timestamps_token_id == 50364
    english = WhisperGenerationConfig.from_model_config(WhisperConfig.from_preset("tiny.en"))
    assert english.is_multilingual is False and english.lang_to_id is None
    # Absent from the file: Transformers takes an empty lang_to_id for "detect the language" and forces token 0.
    assert "lang_to_id" not in english.to_dict() and "task_to_id" not in english.to_dict()
    assert english.no_timestamps_token_id == 50362 and english.decoder_start_token_id == 50257


def test_large_v3_suppress_tokens_follow_the_shifted_special_tokens() -> None:
    v2, v3 = WhisperConfig.from_preset("large-v2"), WhisperConfig.from_preset("large-v3")
    assert v2.suppress_tokens[-5:] == [50358, 50359, 50360, 50361, 50362]
    assert v3.suppress_tokens[-5:] == [50359, 50360, 50361, 50362, 50363]
