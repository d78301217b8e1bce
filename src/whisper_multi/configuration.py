"""WhisperConfig and WhisperGenerationConfig: Transformers-compatible ``config.json`` / ``generation_config.json``.

No framework is imported here. Unknown keys found in a file are kept and written back, so a config read from a
Transformers checkpoint round-trips unchanged.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from whisper_multi.errors import ConfigError
from whisper_multi.jsonfile import JsonFileMixin
from whisper_multi.text.special_tokens import special_tokens_for_vocab

CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
TRANSFORMERS_VERSION = "4.57.0"  # the format written, for readers that check it

ACTIVATIONS = ("gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "quick_gelu", "relu", "silu", "swish", "tanh")

_MULTILINGUAL_VOCAB, _ENGLISH_VOCAB = 51865, 51864


def _with_english_only(size: str, d_model: int, layers: int, heads: int) -> dict[str, tuple[int, ...]]:
    """A size published twice: multilingual, and English-only (".en") with the smaller vocabulary."""
    return {
        size: (d_model, layers, heads, _MULTILINGUAL_VOCAB, 80, layers),
        f"{size}.en": (d_model, layers, heads, _ENGLISH_VOCAB, 80, layers),
    }


# Published dimensions: (d_model, layers, heads, vocab_size, num_mel_bins, decoder_layers).
_PRESET_DIMENSIONS: dict[str, tuple[int, ...]] = {
    **_with_english_only("tiny", 384, 4, 6),
    **_with_english_only("base", 512, 6, 8),
    **_with_english_only("small", 768, 12, 12),
    **_with_english_only("medium", 1024, 24, 16),
    "large-v1": (1280, 32, 20, 51865, 80, 32),
    "large-v2": (1280, 32, 20, 51865, 80, 32),
    "large-v3": (1280, 32, 20, 51866, 128, 32),
    "large-v3-turbo": (1280, 32, 20, 51866, 128, 4),
}
PRESETS = tuple(_PRESET_DIMENSIONS)

# Tokens Whisper never predicts (openai-whisper's non-speech symbols), for the English-only and multilingual BPEs.
_SUPPRESS_TOKENS_EN = [1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90, 91, 92, 93, 357, 366, 438, 532, 685, 705, 796, 930, 1058, 1220, 1267, 1279, 1303, 1343, 1377, 1391, 1635, 1782, 1875, 2162, 2361, 2488, 3467, 4008, 4211, 4600, 4808, 5299, 5855, 6329, 7203, 9609, 9959, 10563, 10786, 11420, 11709, 11907, 13163, 13697, 13700, 14808, 15306, 16410, 16791, 17992, 19203, 19510, 20724, 22305, 22935, 27007, 30109, 30420, 33409, 34949, 40283, 40493, 40549, 47282, 49146, 50257, 50357, 50358, 50359, 50360, 50361]  # fmt: skip
_SUPPRESS_TOKENS_MULTI = [1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90, 91, 92, 93, 359, 503, 522, 542, 873, 893, 902, 918, 922, 931, 1350, 1853, 1982, 2460, 2627, 3246, 3253, 3268, 3536, 3846, 3961, 4183, 4667, 6585, 6647, 7273, 9061, 9383, 10428, 10929, 11938, 12033, 12331, 12562, 13793, 14157, 14635, 15265, 15618, 16553, 16604, 18362, 18956, 20075, 21675, 22520, 26130, 26161, 26435, 28279, 29464, 31650, 32302, 32470, 36865, 42863, 47425, 49870, 50254, 50258, 50358, 50359, 50360, 50361, 50362]  # fmt: skip


def _suppress_tokens_for_vocab(vocab_size: int) -> list[int]:
    tokens = _SUPPRESS_TOKENS_EN if vocab_size == 51864 else _SUPPRESS_TOKENS_MULTI
    if vocab_size == 51866:  # large-v3 shifts every special token after the languages by one
        return [t + 1 if t >= 50358 else t for t in tokens]
    return list(tokens)


def _indexed_labels(convert: Callable[[], dict[Any, Any]], problem: str) -> dict[Any, Any]:
    """``convert()``, the labels with their indices as ints; a key or value that is no integer raises ``problem``."""
    try:
        return convert()
    except (TypeError, ValueError) as error:
        raise ConfigError(problem) from error


class _JsonConfig(JsonFileMixin):
    """Shared machinery: attributes from a dict of known fields plus kept unknown keys; ``from_pretrained`` reads a
    directory, the file itself or a Hub repository by name (``whisper_multi.hub``)."""

    _file_name: ClassVar[str] = CONFIG_NAME
    _defaults: ClassVar[dict[str, Any]] = {}

    if TYPE_CHECKING:  # fields are set from _defaults at run time; tell the type checker they exist

        def __getattr__(self, name: str) -> Any: ...

        def __setattr__(self, name: str, value: Any) -> None: ...

    def __init__(self, **kwargs: Any) -> None:
        for key, default in self._defaults.items():
            setattr(self, key, copy.deepcopy(kwargs.pop(key, default)))
        for key in kwargs:
            if key == "_extra" or hasattr(type(self), key):  # a method or property: setting it would break the class
                raise ConfigError(
                    f"{key!r} is not a {type(self).__name__} field but the name of one of its attributes; "
                    f"expected a field name or a new key"
                )
        # Unknown keys are kept verbatim so a file round-trips unchanged.
        self._extra: dict[str, Any] = dict(kwargs)
        for key, value in kwargs.items():
            setattr(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        data = {key: copy.deepcopy(getattr(self, key)) for key in self._defaults}
        data.update({key: copy.deepcopy(getattr(self, key, value)) for key, value in self._extra.items()})
        data["transformers_version"] = data.get("transformers_version") or TRANSFORMERS_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any):  # type: ignore[no-untyped-def]
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        merged = {**data, **overrides}
        return cls(**merged)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"


class WhisperConfig(_JsonConfig):
    """Architecture of a Whisper model, field for field as Transformers' ``WhisperConfig``.

    The defaults are those of Transformers (a tiny-sized multilingual model). Use ``from_preset`` for the published
    sizes and ``from_pretrained`` for a checkpoint directory.
    """

    model_type = "whisper"
    # Transformers' aliases: accepted as arguments, read back through the properties below.
    attribute_map: ClassVar[dict[str, str]] = {"hidden_size": "d_model", "num_attention_heads": "encoder_attention_heads"}  # fmt: skip
    _defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 51865,
        "num_mel_bins": 80,
        "encoder_layers": 4,
        "encoder_attention_heads": 6,
        "decoder_layers": 4,
        "decoder_attention_heads": 6,
        "decoder_ffn_dim": 1536,
        "encoder_ffn_dim": 1536,
        "encoder_layerdrop": 0.0,
        "decoder_layerdrop": 0.0,
        "decoder_start_token_id": 50257,
        "use_cache": True,
        "is_encoder_decoder": True,
        "activation_function": "gelu",
        "d_model": 384,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "init_std": 0.02,
        "scale_embedding": False,
        "max_source_positions": 1500,
        "max_target_positions": 448,
        "pad_token_id": 50256,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "suppress_tokens": None,
        "begin_suppress_tokens": [220, 50256],
        "use_weighted_layer_sum": False,
        "classifier_proj_size": 256,
        "apply_spec_augment": False,
        "mask_time_prob": 0.05,
        "mask_time_length": 10,
        "mask_time_min_masks": 2,
        "mask_feature_prob": 0.0,
        "mask_feature_length": 10,
        "mask_feature_min_masks": 0,
        "median_filter_width": 7,
        "tie_word_embeddings": True,
        "num_hidden_layers": None,  # Transformers mirrors encoder_layers here
        "model_type": "whisper",
        "architectures": None,
        "torch_dtype": None,
        "id2label": None,
        "label2id": None,
    }

    num_hidden_layers: int
    id2label: Any  # dict[int, str] once __init__ has run
    label2id: Any  # dict[str, int] once __init__ has run

    def __init__(self, **kwargs: Any) -> None:
        num_labels = kwargs.pop("num_labels", None)
        for alias, name in self.attribute_map.items():  # Transformers' aliases, read-only properties here
            if alias in kwargs:
                value = kwargs.pop(alias)
                if name in kwargs and kwargs[name] != value:
                    raise ConfigError(f"{alias}={value!r} disagrees with {name}={kwargs[name]!r}; expected one value")
                kwargs[name] = value
        super().__init__(**kwargs)
        if self.num_hidden_layers is None:
            self.num_hidden_layers = self.encoder_layers
        self._set_labels(num_labels)
        self.validate()

    # --- labels (audio classification) -------------------------------------------------------------------------
    def _set_labels(self, num_labels: int | None) -> None:
        if self.id2label is not None:
            if not isinstance(self.id2label, dict):
                raise ConfigError(f"id2label must be a dict of index to label, got {type(self.id2label).__name__}")
            self.id2label = _indexed_labels(
                lambda: {int(key): str(value) for key, value in self.id2label.items()},
                f"id2label keys must be integer class indices, got {list(self.id2label)[:10]!r}",
            )
        if self.id2label is None:
            count = 2 if num_labels is None else num_labels
            if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
                raise ConfigError(f"num_labels must be a positive integer, got {count!r}")
            self.id2label = {i: f"LABEL_{i}" for i in range(count)}
        elif num_labels is not None and num_labels != len(self.id2label):
            raise ConfigError(f"num_labels={num_labels} disagrees with id2label, which has {len(self.id2label)} labels")
        if self.label2id is not None and not isinstance(self.label2id, dict):
            raise ConfigError(f"label2id must be a dict of label to index, got {type(self.label2id).__name__}")
        if self.label2id is None or len(self.label2id) != len(self.id2label):
            self.label2id = {label: index for index, label in self.id2label.items()}
        else:
            self.label2id = _indexed_labels(
                lambda: {str(key): int(value) for key, value in self.label2id.items()},
                f"label2id values must be integer class indices, got {list(self.label2id.values())[:10]!r}",
            )

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def num_attention_heads(self) -> int:
        return self.encoder_attention_heads

    # --- validation ---------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ConfigError naming the field, its value and what is expected."""
        positive = (
            "vocab_size", "num_mel_bins", "encoder_layers", "encoder_attention_heads", "decoder_layers",
            "decoder_attention_heads", "decoder_ffn_dim", "encoder_ffn_dim", "d_model", "max_source_positions",
            "max_target_positions", "classifier_proj_size", "median_filter_width",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        for name in ("dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop", "decoder_layerdrop",
                     "mask_time_prob", "mask_feature_prob"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be a probability between 0 and 1, got {value!r}")
        for name in ("use_cache", "is_encoder_decoder", "scale_embedding", "use_weighted_layer_sum",
                     "apply_spec_augment", "tie_word_embeddings"):  # fmt: skip
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        init_std = self.init_std
        if not isinstance(init_std, (int, float)) or isinstance(init_std, bool) or not 0.0 <= init_std < math.inf:
            raise ConfigError(f"init_std must be a non-negative number, got {init_std!r}")
        for name in ("mask_time_length", "mask_time_min_masks", "mask_feature_length", "mask_feature_min_masks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
        for name, heads in (("encoder", self.encoder_attention_heads), ("decoder", self.decoder_attention_heads)):
            if self.d_model % heads:
                raise ConfigError(
                    f"d_model={self.d_model} is not divisible by {name}_attention_heads={heads}; "
                    f"choose a head count that divides {self.d_model}"
                )
        if self.activation_function not in ACTIVATIONS:
            raise ConfigError(
                f"unknown activation_function {self.activation_function!r}; expected one of {', '.join(ACTIVATIONS)}"
            )
        for name in ("decoder_start_token_id", "pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or not 0 <= value < self.vocab_size):
                raise ConfigError(f"{name}={value!r} is not a token id below vocab_size={self.vocab_size}")
        for name in ("suppress_tokens", "begin_suppress_tokens"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, list) or not all(isinstance(t, int) for t in value)):
                raise ConfigError(f"{name} must be a list of token ids or null, got {value!r}")

    # --- files --------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["id2label"] = {str(key): value for key, value in self.id2label.items()}
        data["model_type"] = "whisper"
        # None is written where the default is not None, so that reading the file back gives None again.
        return {
            key: value
            for key, value in data.items()
            if value is not None or key == "suppress_tokens" or self._defaults.get(key) is not None
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> WhisperConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"WhisperConfig.from_dict expects a dict, got {type(data).__name__}")
        model_type = data.get("model_type", "whisper")
        if model_type != "whisper":
            raise ConfigError(f"model_type is {model_type!r}, expected 'whisper'; this is not a Whisper config")
        return cls(**{**data, **overrides})

    # --- presets ------------------------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> WhisperConfig:
        """Config of a published Whisper model ("tiny", "tiny.en", ... "large-v3-turbo")."""
        key = name.strip().lower().removeprefix("openai/whisper-").removeprefix("whisper-")
        if key not in _PRESET_DIMENSIONS:
            raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
        d_model, encoder_layers, heads, vocab_size, num_mel_bins, decoder_layers = _PRESET_DIMENSIONS[key]
        special = special_tokens_for_vocab(vocab_size)
        fields: dict[str, Any] = {
            "d_model": d_model,
            "encoder_layers": encoder_layers,
            "decoder_layers": decoder_layers,
            "encoder_attention_heads": heads,
            "decoder_attention_heads": heads,
            "encoder_ffn_dim": 4 * d_model,
            "decoder_ffn_dim": 4 * d_model,
            "vocab_size": vocab_size,
            "num_mel_bins": num_mel_bins,
            "decoder_start_token_id": special.sot,
            "bos_token_id": special.eot if special.is_multilingual else special.sot,
            "eos_token_id": special.eot,
            "pad_token_id": special.eot,
            "begin_suppress_tokens": [220, special.eot],
            "suppress_tokens": _suppress_tokens_for_vocab(vocab_size),
            "architectures": ["WhisperForConditionalGeneration"],
            "_name_or_path": f"openai/whisper-{key}",
        }
        fields.update(overrides)
        return cls(**fields)


class WhisperGenerationConfig(_JsonConfig):
    """What ``generate`` needs beyond the architecture: special token ids, languages, tasks, timestamp rules.

    Reads and writes Transformers' ``generation_config.json``.
    """

    _file_name: ClassVar[str] = GENERATION_CONFIG_NAME
    _defaults: ClassVar[dict[str, Any]] = {
        "decoder_start_token_id": 50258,
        "bos_token_id": 50257,
        "eos_token_id": 50257,
        "pad_token_id": 50257,
        "max_length": 448,
        "begin_suppress_tokens": [220, 50257],
        "suppress_tokens": [],
        "forced_decoder_ids": None,
        "alignment_heads": None,
        "is_multilingual": True,
        "lang_to_id": None,  # absent for English-only models: Transformers reads {} as "detect the language"
        "task_to_id": None,
        "no_timestamps_token_id": 50363,
        "prev_sot_token_id": 50361,
        "max_initial_timestamp_index": 50,
        "return_timestamps": False,
        "median_filter_width": 7,
    }

    @classmethod
    def from_model_config(cls, config: WhisperConfig, **overrides: Any) -> WhisperGenerationConfig:
        """Generation settings that follow from the vocabulary of ``config``."""
        special = special_tokens_for_vocab(config.vocab_size)
        fields: dict[str, Any] = {
            "decoder_start_token_id": config.decoder_start_token_id,
            "bos_token_id": config.bos_token_id,
            "eos_token_id": config.eos_token_id,
            "pad_token_id": config.pad_token_id,
            "max_length": config.max_target_positions,
            "begin_suppress_tokens": list(config.begin_suppress_tokens or []),
            "suppress_tokens": list(config.suppress_tokens or []),
            "is_multilingual": special.is_multilingual,
            "lang_to_id": special.lang_to_id if special.is_multilingual else None,
            "task_to_id": special.task_to_id if special.is_multilingual else None,
            "no_timestamps_token_id": special.no_timestamps,
            "prev_sot_token_id": special.sot_prev,
            "median_filter_width": config.median_filter_width,
        }
        fields.update(overrides)
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in super().to_dict().items() if value is not None}
