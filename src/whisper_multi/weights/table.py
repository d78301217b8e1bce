"""The canonical parameter table: every weight of a Whisper checkpoint, its name, shape and kind.

Names are those of Transformers' PyTorch ``model.safetensors``; every other format (CTranslate2, TF, Flax) is
converted to and from this table. Each parameter has a *kind* ("linear_weight", "conv_weight", ...), and the layout
of a framework is a rule per kind (``LAYOUT_RULES``), so conversion is data, not code per layer.

No framework is imported here: rules act on numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import CheckpointError, ConfigError

HEADS = ("conditional_generation", "audio_classification", "base")

# Parameters that share storage with another one and are therefore not stored in ``model.safetensors``.
TIED_PARAMETERS: dict[str, str] = {"proj_out.weight": "model.decoder.embed_tokens.weight"}

KINDS = (
    "linear_weight",
    "linear_bias",
    "conv_weight",
    "conv_bias",
    "norm_scale",
    "norm_bias",
    "embedding",
    "positional_table",
    "layer_weights",
)


class ParamSpec(NamedTuple):
    """One stored parameter: its canonical name, its shape in PyTorch layout and its kind."""

    name: str
    shape: tuple[int, ...]
    kind: str


# --- the table ----------------------------------------------------------------------------------------------------
def _linear(prefix: str, out_features: int, in_features: int, bias: bool = True) -> list[ParamSpec]:
    specs = [ParamSpec(f"{prefix}.weight", (out_features, in_features), "linear_weight")]
    if bias:
        specs.append(ParamSpec(f"{prefix}.bias", (out_features,), "linear_bias"))
    return specs


def _layer_norm(prefix: str, d_model: int) -> list[ParamSpec]:
    return [
        ParamSpec(f"{prefix}.weight", (d_model,), "norm_scale"),
        ParamSpec(f"{prefix}.bias", (d_model,), "norm_bias"),
    ]


def _attention(prefix: str, d_model: int) -> list[ParamSpec]:
    # Whisper's key projection has no bias: a key bias adds the same score to every key of a query, which the
    # softmax cancels. The order is the module registration order of Transformers (k, v, q, out).
    return [
        *_linear(f"{prefix}.k_proj", d_model, d_model, bias=False),
        *_linear(f"{prefix}.v_proj", d_model, d_model),
        *_linear(f"{prefix}.q_proj", d_model, d_model),
        *_linear(f"{prefix}.out_proj", d_model, d_model),
    ]


def _feed_forward(prefix: str, d_model: int, ffn_dim: int) -> list[ParamSpec]:
    return [*_linear(f"{prefix}.fc1", ffn_dim, d_model), *_linear(f"{prefix}.fc2", d_model, ffn_dim)]


def _layer_stack(prefix: str, count: int, d: int, ffn_dim: int, cross_attention: bool) -> list[ParamSpec]:
    """The transformer layers of the encoder or the decoder (which adds cross-attention), then the final norm."""
    specs = []
    for i in range(count):
        layer = f"{prefix}.layers.{i}"
        specs += _attention(f"{layer}.self_attn", d) + _layer_norm(f"{layer}.self_attn_layer_norm", d)
        if cross_attention:
            specs += _attention(f"{layer}.encoder_attn", d) + _layer_norm(f"{layer}.encoder_attn_layer_norm", d)
        specs += _feed_forward(layer, d, ffn_dim) + _layer_norm(f"{layer}.final_layer_norm", d)
    return specs + _layer_norm(f"{prefix}.layer_norm", d)


def _encoder(prefix: str, config: WhisperConfig) -> list[ParamSpec]:
    d = config.d_model
    specs = [
        ParamSpec(f"{prefix}.conv1.weight", (d, config.num_mel_bins, 3), "conv_weight"),
        ParamSpec(f"{prefix}.conv1.bias", (d,), "conv_bias"),
        ParamSpec(f"{prefix}.conv2.weight", (d, d, 3), "conv_weight"),
        ParamSpec(f"{prefix}.conv2.bias", (d,), "conv_bias"),
        ParamSpec(f"{prefix}.embed_positions.weight", (config.max_source_positions, d), "positional_table"),
    ]
    return specs + _layer_stack(prefix, config.encoder_layers, d, config.encoder_ffn_dim, cross_attention=False)


def _decoder(prefix: str, config: WhisperConfig) -> list[ParamSpec]:
    d = config.d_model
    specs = [
        ParamSpec(f"{prefix}.embed_tokens.weight", (config.vocab_size, d), "embedding"),
        ParamSpec(f"{prefix}.embed_positions.weight", (config.max_target_positions, d), "positional_table"),
    ]
    return specs + _layer_stack(prefix, config.decoder_layers, d, config.decoder_ffn_dim, cross_attention=True)


def _classification_head(config: WhisperConfig) -> list[ParamSpec]:
    specs = []
    if config.use_weighted_layer_sum:
        # One weight per hidden state: the embeddings plus every layer. Transformers sizes it by num_hidden_layers,
        # which mirrors encoder_layers.
        specs.append(ParamSpec("layer_weights", (config.num_hidden_layers + 1,), "layer_weights"))
    specs += _linear("projector", config.classifier_proj_size, config.d_model)
    specs += _linear("classifier", config.num_labels, config.classifier_proj_size)
    return specs


def canonical_parameters(config: WhisperConfig, head: str = "conditional_generation") -> dict[str, ParamSpec]:
    """Every stored parameter of a Transformers Whisper model, in state-dict order, keyed by name.

    ``head`` picks the model class: "conditional_generation" (``WhisperForConditionalGeneration``, names under
    ``model.``), "base" (``WhisperModel``) or "audio_classification" (``WhisperForAudioClassification``: the
    encoder plus the classifier). Tied parameters (``TIED_PARAMETERS``) are not listed.
    """
    if head == "conditional_generation":
        specs = _encoder("model.encoder", config) + _decoder("model.decoder", config)
    elif head == "base":
        specs = _encoder("encoder", config) + _decoder("decoder", config)
    elif head == "audio_classification":
        specs = _encoder("encoder", config) + _classification_head(config)
    else:
        raise ConfigError(f"unknown head {head!r}; expected one of {', '.join(HEADS)}")
    return {spec.name: spec for spec in specs}


def tied_parameters(head: str = "conditional_generation") -> dict[str, str]:
    """Tied name -> the stored name it shares storage with, for one head."""
    return dict(TIED_PARAMETERS) if head == "conditional_generation" else {}


# --- checking a state dict ----------------------------------------------------------------------------------------
_LISTED = 10  # names listed per category in an error; the rest are counted


def _listing(title: str, items: list[str]) -> str:
    shown = "\n    ".join(items[:_LISTED])
    more = f"\n    ... and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
    return f"\n  {title} ({len(items)}):\n    {shown}{more}"


def check_state_dict(
    config: WhisperConfig,
    tensors: Mapping[str, Any],
    source: str,
    head: str = "conditional_generation",
) -> None:
    """Raise CheckpointError unless ``tensors`` holds exactly the canonical names with the canonical shapes.

    Every problem is reported at once (missing names, unexpected names, wrong shapes), so a checkpoint is either
    loaded whole or not at all. Tied parameters may be present (a PyTorch ``state_dict()`` lists them) but must then
    have the shape of the parameter they are tied to.
    """
    expected = canonical_parameters(config, head)
    ties = tied_parameters(head)
    missing = [name for name in expected if name not in tensors]
    unexpected = sorted(name for name in tensors if name not in expected and name not in ties)
    wrong = []
    for name, array in tensors.items():
        spec = expected.get(name) or expected.get(ties.get(name, ""))
        if spec is not None and tuple(array.shape) != spec.shape:
            wrong.append(f"{name}: expected {spec.shape}, found {tuple(array.shape)}")
    if missing or unexpected or wrong:
        details = ""
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            details += _listing(title, items) if items else ""
        raise CheckpointError(
            f"{source} does not match the Whisper {head} parameters for d_model={config.d_model}, "
            f"encoder_layers={config.encoder_layers}, decoder_layers={config.decoder_layers}, "
            f"vocab_size={config.vocab_size}:{details}"
        )


# --- per-framework layout rules -----------------------------------------------------------------------------------
# The canonical layout is PyTorch's. A rule converts one kind of tensor to a framework's layout and back; the two
# functions are exact inverses (pure axis permutations returning views), so a round trip is bit-exact. The
# per-framework *name* rules (Keras "kernel", Flax "scale", ...) follow the layout rules below.
Transform = Callable[[np.ndarray], np.ndarray]


class LayoutRule(NamedTuple):
    to_framework: Transform
    from_framework: Transform


def _identity(array: np.ndarray) -> np.ndarray:
    return array


def _swap_matrix(array: np.ndarray) -> np.ndarray:
    # (out, in) <-> (in, out): Keras and Flax Dense kernels multiply from the right.
    return np.transpose(array, (1, 0))


def _reverse_conv_axes(array: np.ndarray) -> np.ndarray:
    # (out, in, k) <-> (k, in, out): Keras and Flax Conv kernels are channels-last. Reversing the axes is its own
    # inverse.
    return np.transpose(array, (2, 1, 0))


_IDENTITY_RULE = LayoutRule(_identity, _identity)
_CHANNELS_LAST_RULES = {
    **{kind: _IDENTITY_RULE for kind in KINDS},
    "linear_weight": LayoutRule(_swap_matrix, _swap_matrix),
    "conv_weight": LayoutRule(_reverse_conv_axes, _reverse_conv_axes),
}

LAYOUT_RULES: dict[str, dict[str, LayoutRule]] = {
    "pt": {kind: _IDENTITY_RULE for kind in KINDS},
    "tf": dict(_CHANNELS_LAST_RULES),
    "flax": dict(_CHANNELS_LAST_RULES),
}


def _rule(framework: str, kind: str) -> LayoutRule:
    if framework not in LAYOUT_RULES:
        raise ConfigError(f"unknown framework {framework!r}; expected one of {', '.join(LAYOUT_RULES)}")
    if kind not in LAYOUT_RULES[framework]:
        raise ConfigError(f"no {framework} layout rule for kind {kind!r}; expected one of {', '.join(KINDS)}")
    return LAYOUT_RULES[framework][kind]


def to_framework_layout(array: np.ndarray, kind: str, framework: str) -> np.ndarray:
    """A canonical (PyTorch-layout) tensor of ``kind`` in ``framework``'s layout."""
    return _rule(framework, kind).to_framework(np.asarray(array))


def from_framework_layout(array: np.ndarray, kind: str, framework: str) -> np.ndarray:
    """A tensor of ``kind`` in ``framework``'s layout back in the canonical (PyTorch) layout."""
    return _rule(framework, kind).from_framework(np.asarray(array))


def framework_shape(spec: ParamSpec, framework: str) -> tuple[int, ...]:
    """The shape ``spec`` has in ``framework``'s layout, computed without data."""
    probe = np.broadcast_to(np.zeros((), dtype=np.uint8), spec.shape)  # a view of one byte: no allocation
    return tuple(to_framework_layout(probe, spec.kind, framework).shape)


# --- per-framework name rules -------------------------------------------------------------------------------------
# Transformers' TF and Flax Whisper models use the PyTorch module paths, so a framework name is the canonical module
# path written with "/" plus a leaf name chosen by kind. Two details differ: Keras keeps "layers.N" as one layer
# name (Flax nests it as "layers/N"), and Keras suffixes every variable with its output index ":0".
class NameRule(NamedTuple):
    leaf_by_kind: dict[str, str]
    layer_separator: str  # between "layers" and the layer number
    suffix: str


# Keras and Flax both call a dense or conv weight "kernel"; they differ in norms and embeddings.
_KERNEL_LEAVES = {"linear_weight": "kernel", "linear_bias": "bias", "conv_weight": "kernel", "conv_bias": "bias",
                  "layer_weights": "layer_weights"}  # fmt: skip
NAME_RULES: dict[str, NameRule] = {
    "tf": NameRule(
        {**_KERNEL_LEAVES, "norm_scale": "gamma", "norm_bias": "beta", "embedding": "embeddings",
         "positional_table": "weight"},
        layer_separator=".",
        suffix=":0",
    ),
    "flax": NameRule(
        {**_KERNEL_LEAVES, "norm_scale": "scale", "norm_bias": "bias", "embedding": "embedding",
         "positional_table": "embedding"},
        layer_separator="/",
        suffix="",
    ),
}  # fmt: skip


def framework_name(spec: ParamSpec, framework: str) -> str:
    """The name ``spec`` has in ``framework`` ("pt", "tf" or "flax"), e.g. ``model/encoder/conv1/kernel:0``."""
    if framework == "pt":
        return spec.name
    if framework not in NAME_RULES:
        raise ConfigError(f"unknown framework {framework!r}; expected one of pt, {', '.join(NAME_RULES)}")
    rule = NAME_RULES[framework]
    module = spec.name.rpartition(".")[0] if "." in spec.name else ""
    path = module.replace(".", "/").replace("layers/", f"layers{rule.layer_separator}")
    leaf = rule.leaf_by_kind[spec.kind]
    return f"{path}/{leaf}{rule.suffix}" if path else f"{leaf}{rule.suffix}"


def framework_names(config: WhisperConfig, framework: str, head: str = "conditional_generation") -> dict[str, str]:
    """Canonical name -> ``framework`` name for every stored parameter of ``head``, in table order."""
    return {name: framework_name(spec, framework) for name, spec in canonical_parameters(config, head).items()}
