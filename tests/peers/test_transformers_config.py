"""Config files written here load in Transformers 4.57 with equal values, and the reverse.

Runs in the `peers` nox session, where Transformers 4.57 is installed beside whisper_multi's core.
"""

from __future__ import annotations

from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers", reason="Transformers runs in the `nox -s peers` session")

from whisper_multi import WhisperConfig, WhisperGenerationConfig  # noqa: E402
from whisper_multi.configuration import PRESETS  # noqa: E402

FIELDS = [key for key in WhisperConfig._defaults if key not in ("architectures", "torch_dtype", "model_type")]


def _same_fields(ours: WhisperConfig, theirs: object) -> dict[str, tuple[object, object]]:
    differences = {}
    for key in FIELDS:
        mine, other = getattr(ours, key), getattr(theirs, key)
        if key == "id2label":
            mine, other = {int(k): v for k, v in mine.items()}, {int(k): v for k, v in other.items()}
        if key == "label2id" and other is None:
            # Transformers leaves label2id unset when only id2label is given; ours is its inverse.
            other = {label: index for index, label in theirs.id2label.items()}
        if mine != other:
            differences[key] = (mine, other)
    return differences


@pytest.mark.parametrize("preset", PRESETS)
def test_ours_loads_in_transformers(preset: str, tmp_path: Path) -> None:
    ours = WhisperConfig.from_preset(preset, num_labels=3)
    ours.save_pretrained(tmp_path)
    theirs = transformers.WhisperConfig.from_pretrained(tmp_path)
    assert _same_fields(ours, theirs) == {}
    assert theirs.num_labels == 3


def test_transformers_loads_in_ours(tmp_path: Path) -> None:
    theirs = transformers.WhisperConfig(
        d_model=256, encoder_layers=3, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=8,
        vocab_size=51866, num_mel_bins=128, apply_spec_augment=True, mask_time_prob=0.1, use_weighted_layer_sum=True,
        id2label={0: "speech", 1: "music", 2: "noise"},
    )  # fmt: skip
    theirs.save_pretrained(tmp_path)
    ours = WhisperConfig.from_pretrained(tmp_path)
    assert _same_fields(ours, theirs) == {}


def test_generation_config_loads_in_transformers(tmp_path: Path) -> None:
    ours = WhisperGenerationConfig.from_model_config(WhisperConfig.from_preset("tiny"))
    ours.save_pretrained(tmp_path)
    theirs = transformers.GenerationConfig.from_pretrained(tmp_path)
    for key in ("no_timestamps_token_id", "lang_to_id", "task_to_id", "is_multilingual", "decoder_start_token_id",
                "suppress_tokens", "begin_suppress_tokens", "max_initial_timestamp_index"):  # fmt: skip
        assert getattr(theirs, key) == getattr(ours, key), key
