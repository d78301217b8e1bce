"""Cross-framework parity of one set of weights: the engine of ``whisper-multi check`` and of ``conformance/``.

The same canonical weights are loaded into the PyTorch, TensorFlow and Flax models, and every stage is fed
IDENTICAL inputs in every framework, so a difference names the stage that makes it:

- ``mel``: the numpy extractor's features returned as numpy, torch, tf and jax tensors (must be identical);
- ``weights``: every parameter as each framework holds it, against the canonical tensor put in that framework's
  layout by ``NATIVE_AXES`` below, a statement of the layouts independent of the weight layer's rules;
- ``float64``: every framework's model in float64 on the same inputs: the three must agree to 1e-9 on every output
  of the encoder, decoder and end-to-end stages (they implement the same math), and each framework's float32 outputs
  are measured against its own float64 ones (how exact its float32 arithmetic is). The float32 pair bounds of the
  stages below are then derived from that measurement (``Float64Reference``);
- ``encoder``: the same mel features -> the last encoder state, every hidden state, the attention weights;
- ``decoder``: the same encoder states (the reference framework's) and token ids -> the decoder hidden states,
  self- and cross-attention weights and logits;
- ``e2e``: mel features -> logits, and the loss with labels;
- ``cached``: step-by-step logits (dynamic and static cache) against the full forward, in each framework and across;
- ``gradients``: of the loss, per parameter, relative to the largest magnitude of the reference gradient;
- ``classification``: audio-classification logits (the encoder's weights plus a seeded head);
- ``generation``: token ids of ``generate`` (greedy, beam search, timestamps), when the models have it.

Differences are max and mean absolute values, never signed sums (errors of opposite signs cancel). A framework
that is not installed is skipped and listed, never counted as passed; a stage a model cannot run yet is "not
available", which is not a pass either. No framework is imported at module level.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import os
import time
import traceback
import wave
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import InputError

FRAMEWORKS = ("pt", "tf", "flax")
FRAMEWORK_NAMES = {"pt": "PyTorch", "tf": "TensorFlow", "flax": "Flax"}
FRAMEWORK_MODULES = {"pt": ("torch",), "tf": ("tensorflow", "keras"), "flax": ("jax", "flax")}
# The mel features as each framework's tensor type (``return_tensors``), compared with the numpy array.
MEL_TENSOR_TYPES = {"pt": "pt", "tf": "tf", "flax": "jax"}

# Stage groups, in pipeline order: the first failing group of a pair is where the frameworks part.
STAGE_GROUPS = (
    "mel", "weights", "float64", "encoder", "decoder", "e2e", "cached", "gradients", "classification", "generation"
)  # fmt: skip
ENCODER_STAGES = ("encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions")
DECODER_STAGES = ("decoder_hidden_states", "decoder_attentions", "cross_attentions", "logits")
E2E_STAGES = ("e2e_logits", "loss")
# The stages measured in float64: each output of the full forward (encoder, end to end) and of the decoder fed the
# reference framework's encoder states, with the key it has in that run's outputs.
FLOAT64_STAGES: dict[str, tuple[str, str]] = {
    **{stage: ("forward", stage) for stage in ENCODER_STAGES},
    **{stage: ("decode", stage) for stage in DECODER_STAGES},
    "e2e_logits": ("forward", "logits"),
    "loss": ("forward", "loss"),
}
STAGES: dict[str, tuple[str, ...]] = {
    "mel": ("mel_features",),
    "weights": ("weights",),
    "float64": (
        *(f"float64_{stage}" for stage in FLOAT64_STAGES),
        *(f"float32_error_{stage}" for stage in FLOAT64_STAGES),
    ),
    "encoder": ENCODER_STAGES,
    "decoder": DECODER_STAGES,
    "e2e": E2E_STAGES,
    "cached": ("cached_logits", "static_cache_logits"),
    "gradients": ("gradients",),
    "classification": ("classification_logits",),
    "generation": ("generate_greedy", "generate_beam4", "generate_timestamps"),
}
GENERATION_SETTINGS: dict[str, dict[str, Any]] = {
    "generate_greedy": {},
    "generate_beam4": {"num_beams": 4},
    "generate_timestamps": {"return_timestamps": True},
}
HIDDEN_STATE_STAGES = ("encoder_last_hidden_state", "encoder_hidden_states", "decoder_hidden_states")
FLOAT64_TOLERANCE = 1e-9  # float64 pairs: far above float64 round-off, far below any float32 difference
# Added to the sum of two frameworks' float32 errors in a derived pair bound: it stands for the float64 pair
# difference (at most FLOAT64_TOLERANCE, checked by its own row) and the rounding of the differences themselves.
DERIVED_MARGIN = 1e-6

CACHED_POSITIONS = 8  # positions decoded step by step (every new shape compiles once in Flax and TF)
GENERATION_NEW_TOKENS = 24  # new tokens per generation, also for the token ids the decoder stages are fed
CLASSIFICATION_LABELS = 3
SAMPLE_RATE = 16000
DEFAULT_AUDIO = Path(__file__).resolve().parents[1] / "assets" / "speech_en_short.wav"

# Each framework's layout of a canonical (PyTorch-layout) tensor: the axis order per kind of parameter, identity
# where absent. Stated here independently of ``weights.table.LAYOUT_RULES`` so a wrong rule there shows up.
NATIVE_AXES: dict[str, dict[str, tuple[int, ...]]] = {
    "pt": {},
    "tf": {"linear_weight": (1, 0), "conv_weight": (2, 1, 0)},
    "flax": {"linear_weight": (1, 0), "conv_weight": (2, 1, 0)},
}

# Row statuses. Only "pass" passes; "not available" and "skipped" are listed apart and never counted as passed.
PASS, FAIL, ERROR, NOT_AVAILABLE, SKIPPED = "pass", "fail", "error", "not available", "skipped"
STATUS_ORDER = (PASS, FAIL, ERROR, NOT_AVAILABLE, SKIPPED)


# --- tolerances and results ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tolerances:
    """Bounds on the max abs difference per stage kind; ``target`` is the bound aimed for, reported beside.

    Where a float64 reference was measured, these bounds apply to each framework's float32 distance from its own
    float64 outputs (``float32_error_*`` rows), and a pair's float32 bound is derived from those distances;
    without one (``--stages`` leaving out ``float64``) they bound the pair differences themselves.
    """

    absolute: float = 1e-5  # logits, attention weights, loss
    hidden_states: float = 1e-5  # encoder and decoder hidden states
    # Hidden states: the bound of each state grows by this fraction of the largest magnitude the residual stream has
    # reached up to it (in the first framework), as float32 round-off does: a stream of magnitude 500 rounds at 3e-5
    # per operation, and what it carries reaches the later states (a layer norm rescales it, it does not remove it).
    hidden_states_relative: float = 0.0
    # Logits, attention weights and loss: the bound grows by this fraction of the output's own largest magnitude, as
    # float32 round-off does (it keeps 2**-24 of a value).
    relative: float = 0.0
    gradients: float = 1e-4  # relative to the largest magnitude of the reference gradient, per parameter
    target: float | None = None
    gradients_target: float | None = None

    def for_stage(self, stage: str) -> float:
        if stage in ("mel_features", "weights") or stage.startswith("generate_"):
            return 0.0  # identical arrays, identical token ids
        if stage.startswith("float64_"):
            return FLOAT64_TOLERANCE
        stage = stage.removeprefix("float32_error_")
        if stage == "gradients":
            return self.gradients
        if stage in HIDDEN_STATE_STAGES:
            return self.hidden_states
        return self.absolute

    def for_states(self, stage: str, states: Sequence[Any]) -> list[float]:
        """The bound of each of a stack of outputs (first to last): that of its stage, plus a share of a magnitude:
        for hidden states the largest one the residual stream has reached so far, for the others their own."""
        tolerance = self.for_stage(stage)
        hidden = stage.removeprefix("float32_error_") in HIDDEN_STATE_STAGES
        share = self.hidden_states_relative if hidden else self.relative
        if not share or tolerance == 0.0 or stage.startswith("float64_"):
            return [tolerance] * len(states)
        bounds, peak = [], 0.0
        for state in states:
            array = np.asarray(state, dtype=np.float64)
            largest = float(np.abs(array).max()) if array.size else 0.0
            peak = max(peak, largest) if hidden else largest
            bounds.append(tolerance + share * peak)
        return bounds


RANDOM_TOLERANCES = Tolerances()
# Real weights: float32 round-off grows through 4-12 layers and is amplified by the final layer norms, whose outputs
# reach ~100 (float32 spacing 8e-6 there); see conformance/REPORT.md for where it grows. The target stays 1e-5.
# With the float64 stage these bound each framework's own float32 error, and a pair may differ by the sum of its two
# frameworks' errors. Logits: 1e-4 + 1e-5 x their largest magnitude, room for the kernels of any instruction set
# (the measured errors are in conformance/REPORT.md), while a wrong operation moves logits by far more.
# Hidden states: base's encoder residual stream reaches 517, where each framework alone is 2e-3-4e-3 (up to 8.3e-6 of
# the magnitude) from float64: 1e-4 + 2e-5 x the state's largest magnitude.
# Gradients (relative to the largest of each parameter's): each framework is within 5e-5 (PT), 7e-5 (Flax), 1.6e-4 (TF)
# of PyTorch float64 on base; the relative bound is 1e-3, the target 1e-4.
REAL_TOLERANCES = Tolerances(
    absolute=1e-4,
    hidden_states=1e-4,
    hidden_states_relative=2e-5,
    relative=1e-5,
    gradients=1e-3,
    target=1e-5,
    gradients_target=1e-4,
)


@dataclass
class Row:
    """One comparison: a stage of one set of weights, between two frameworks (or within one)."""

    config: str
    source: str  # "direct" (weights handed over in memory) or the on-disk format the models were loaded from
    stage: str
    pair: str  # "pt-tf", ...; a single framework for comparisons within it; "np-pt", ... for the mel features
    max_abs: float | None
    mean_abs: float | None
    tolerance: float
    status: str
    measure: str = "abs"  # "abs", "relative" (gradients) or "tokens" (differing token positions)
    target: float | None = None
    note: str = ""
    layers: list[list[float]] | None = None  # per layer (or per hidden state): [max abs, mean abs]
    layer_tolerances: list[float] | None = None  # per hidden state when the bounds differ; ``tolerance`` is the largest
    derived: bool = False  # the bound is the sum of the two frameworks' float32 errors (``Float64Reference``)

    @property
    def passed(self) -> bool:
        return self.status == PASS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judged(row: Row) -> Row:
    """Set ``status`` from the measured difference (a row already marked error / not available / skipped stays)."""
    if row.status in (ERROR, NOT_AVAILABLE, SKIPPED):
        return row
    finite = row.max_abs is not None and np.isfinite(row.max_abs)
    passed = finite and row.max_abs <= row.tolerance  # type: ignore[operator]
    if row.layers is not None and row.layer_tolerances is not None:
        passed = finite and all(layer[0] <= bound for layer, bound in zip(row.layers, row.layer_tolerances))
    row.status = PASS if passed else FAIL
    return row


def differences(a: Any, b: Any) -> tuple[float, float]:
    """(max abs, mean abs) of ``a - b`` computed in float64; NaN anywhere gives NaN (which fails)."""
    first, second = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if first.shape != second.shape:
        raise InputError(f"cannot compare arrays of shapes {first.shape} and {second.shape}")
    if first.size == 0:
        return 0.0, 0.0
    delta = np.abs(first - second)
    return float(delta.max()), float(delta.mean())


def token_differences(a: Any, b: Any) -> tuple[float, float]:
    """(differing positions, their fraction) of two token id arrays; a length difference counts every extra id."""
    first, second = np.atleast_2d(np.asarray(a)), np.atleast_2d(np.asarray(b))
    if first.shape[0] != second.shape[0]:
        raise InputError(f"cannot compare {first.shape[0]} sequences with {second.shape[0]}")
    length = max(first.shape[1], second.shape[1])
    padded = [
        np.pad(x.astype(np.int64), ((0, 0), (0, length - x.shape[1])), constant_values=-1) for x in (first, second)
    ]
    differing = int((padded[0] != padded[1]).sum())
    return float(differing), differing / max(padded[0].size, 1)


def parse_names(text: str, allowed: Sequence[str], what: str) -> list[str]:
    """The comma-separated names of ``text`` (``--backends``, ``--stages``, ...); an unknown or missing one is an
    error naming it and what is allowed."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        found = f"unknown {', '.join(unknown)}" if unknown else "no name"
        raise InputError(f"{what} {text!r}: {found}; expected some of {', '.join(allowed)}")
    return names


def pairs(frameworks: Sequence[str]) -> list[tuple[str, str]]:
    """The framework pairs, in FRAMEWORKS order: pt-tf, pt-flax, tf-flax (those of ``frameworks`` only)."""
    ordered = [name for name in FRAMEWORKS if name in frameworks]
    return [(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :]]


def missing_framework(name: str) -> str | None:
    """Why ``name``'s backend cannot run here (a module not installed), or None."""
    absent = [module for module in FRAMEWORK_MODULES[name] if importlib.util.find_spec(module) is None]
    return f"{', '.join(absent)} not installed" if absent else None


def to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # tf
        return np.asarray(value.numpy())
    return np.asarray(value)  # numpy, jax


def native_layout(array: np.ndarray, kind: str, framework: str) -> np.ndarray:
    axes = NATIVE_AXES[framework].get(kind)
    return np.asarray(array) if axes is None else np.transpose(array, axes)


def canonical_layout(array: np.ndarray, kind: str, framework: str) -> np.ndarray:
    axes = NATIVE_AXES[framework].get(kind)
    return np.asarray(array) if axes is None else np.transpose(array, np.argsort(axes))


# --- backends: the tensor work of each framework ----------------------------------------------------------------------
class Backend:
    """Build, load and run one framework's models; every array in and out is numpy."""

    name = ""

    def model_class(self, head: str) -> Any:
        raise NotImplementedError

    def build(self, config: WhisperConfig, tensors: Mapping[str, np.ndarray], head: str) -> Any:
        """A model holding canonical ``tensors``, handed over through the weight layer (no file)."""
        raise NotImplementedError

    def load(self, path: str | os.PathLike[str], head: str = "conditional_generation") -> Any:
        """A model read from a checkpoint directory by its own ``from_pretrained``."""
        return self.model_class(head).from_pretrained(path)

    def build_float64(self, config: WhisperConfig, tensors: Mapping[str, np.ndarray]) -> Any:
        """The speech-to-text model computing in float64 (built and run inside ``float64_scope``)."""
        raise NotImplementedError

    def float64_scope(self) -> AbstractContextManager[Any]:
        """Where float64 arrays stay float64 (JAX truncates them to float32 outside it)."""
        return contextlib.nullcontext()

    def native_weights(self, model: Any) -> dict[str, np.ndarray]:
        """Canonical name -> the parameter as the model holds it (the framework's layout)."""
        raise NotImplementedError

    def tensor(self, array: np.ndarray) -> Any:
        raise NotImplementedError

    def run(self, model: Any, **inputs: Any) -> Any:
        """The model's forward pass on numpy inputs (converted); ``encoder_states`` becomes ``encoder_outputs``."""
        arguments = {name: self._convert(value) for name, value in inputs.items() if name != "encoder_states"}
        if "encoder_states" in inputs:
            arguments["encoder_outputs"] = (self.tensor(inputs["encoder_states"]),)
        return self._call(model, arguments)

    def _convert(self, value: Any) -> Any:
        return self.tensor(value) if isinstance(value, np.ndarray) else value

    def _call(self, model: Any, arguments: dict[str, Any]) -> Any:
        return model(**arguments)

    def init_cache(self, model: Any, batch_size: int, max_length: int) -> Any:
        return model.init_cache(batch_size, max_length=max_length)

    def loss_and_gradients(
        self, model: Any, features: np.ndarray, ids: np.ndarray, labels: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray]]:
        """The loss and its gradient per canonical name, in the framework's layout (parameters without one left
        out)."""
        raise NotImplementedError

    def generate(self, model: Any, features: np.ndarray, **kwargs: Any) -> np.ndarray:
        generate = getattr(model, "generate", None)
        if generate is None:
            raise NotImplementedError(f"{type(model).__name__} has no generate method yet")
        out = generate(self.tensor(features), **kwargs)
        sequences = getattr(out, "sequences", None)
        if sequences is None and isinstance(out, Mapping):
            sequences = out.get("sequences")
        return to_numpy(out if sequences is None else sequences)


class TorchBackend(Backend):
    name = "pt"

    def model_class(self, head: str) -> Any:
        from whisper_multi import pt

        return {
            "conditional_generation": pt.WhisperForConditionalGeneration,
            "audio_classification": pt.WhisperForAudioClassification,
            "base": pt.WhisperModel,
        }[head]

    def build(self, config: WhisperConfig, tensors: Mapping[str, np.ndarray], head: str) -> Any:
        from whisper_multi.pt.loading import load_tensors
        from whisper_multi.weights.pretrained import prepare_tensors

        model = self.model_class(head)(config).eval()
        load_tensors(model, prepare_tensors(tensors, head, config, "the canonical tensors"))
        return model

    def build_float64(self, config: WhisperConfig, tensors: Mapping[str, np.ndarray]) -> Any:
        import torch

        return self.build(config, tensors, "conditional_generation").to(torch.float64)

    def native_weights(self, model: Any) -> dict[str, np.ndarray]:
        return {name: to_numpy(tensor) for name, tensor in model.state_dict().items()}

    def tensor(self, array: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(np.ascontiguousarray(array))

    def _call(self, model: Any, arguments: dict[str, Any]) -> Any:
        import torch

        with torch.no_grad():
            return model(**arguments)

    def loss_and_gradients(
        self, model: Any, features: np.ndarray, ids: np.ndarray, labels: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray]]:
        import torch

        model.zero_grad(set_to_none=True)
        with torch.enable_grad():  # eval mode: the configs have no dropout, and eval mode is what every backend runs
            loss = model(self.tensor(features), decoder_input_ids=self.tensor(ids), labels=self.tensor(labels)).loss
            loss.backward()
        gradients = {n: to_numpy(p.grad) for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        return float(loss.detach()), gradients


class TFBackend(Backend):
    name = "tf"

    @staticmethod
    def _import() -> Any:
        # oneDNN's CPU kernels round differently from PyTorch's; off unless the environment says otherwise (only
        # effective before TensorFlow is first imported).
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        return tf

    def model_class(self, head: str) -> Any:
        self._import()
        from whisper_multi import tf as backend

        return {
            "conditional_generation": backend.TFWhisperForConditionalGeneration,
            "audio_classification": backend.TFWhisperForAudioClassification,
            "base": backend.TFWhisperModel,
        }[head]

    def build(self, config: WhisperConfig, tensors: Mapping[str, np.ndarray], head: str) -> Any:
        cls = self.model_class(head)
        from whisper_multi.tf.loading import load_tensors
        from whisper_multi.weights.pretrained import prepare_tensors

        model = cls(config)
        load_tensors(model, prepare_tensors(tensors, head, config, "the canonical tensors"))
        return model

    def build_float64(self, config: WhisperConfig, tensors: Mapping[str, np.ndarray]) -> Any:
        import keras

        # Keras gives every layer built without a dtype the global policy: float64 variables and computations.
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("float64")
        try:
            return self.build(config, tensors, "conditional_generation")
        finally:
            keras.config.set_dtype_policy(previous)

    def native_weights(self, model: Any) -> dict[str, np.ndarray]:
        from whisper_multi.tf.loading import model_variables

        return {name: np.asarray(variable.numpy()) for name, variable in model_variables(model).items()}

    def tensor(self, array: np.ndarray) -> Any:
        return self._import().constant(array)

    def loss_and_gradients(
        self, model: Any, features: np.ndarray, ids: np.ndarray, labels: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray]]:
        tf = self._import()
        from whisper_multi.tf.loading import model_variables

        variables = model_variables(model)
        with tf.GradientTape() as tape:
            loss = model(self.tensor(features), decoder_input_ids=self.tensor(ids), labels=self.tensor(labels)).loss
        gradients = tape.gradient(loss, list(variables.values()))
        found = {
            name: np.asarray(tf.convert_to_tensor(gradient).numpy())
            for name, gradient in zip(variables, gradients)
            if gradient is not None
        }
        return float(loss), found


class FlaxBackend(Backend):
    name = "flax"

    def model_class(self, head: str) -> Any:
        from whisper_multi import flax as backend

        return {
            "conditional_generation": backend.FlaxWhisperForConditionalGeneration,
            "audio_classification": backend.FlaxWhisperForAudioClassification,
            "base": backend.FlaxWhisperModel,
        }[head]

    def build(self, config: WhisperConfig, tensors: Mapping[str, np.ndarray], head: str) -> Any:
        return self.model_class(head).from_state_dict(config, dict(tensors), "the canonical tensors")

    def build_float64(self, config: WhisperConfig, tensors: Mapping[str, np.ndarray]) -> Any:
        import jax.numpy as jnp

        float64 = {name: np.asarray(array, dtype=np.float64) for name, array in tensors.items()}
        return self.model_class("conditional_generation").from_state_dict(
            config, float64, "the canonical tensors", dtype=jnp.float64, param_dtype=jnp.float64
        )

    def float64_scope(self) -> AbstractContextManager[Any]:
        import jax

        scope = getattr(jax, "enable_x64", None)  # jax >= 0.7; earlier releases have it in jax.experimental
        if scope is None:
            from jax.experimental import enable_x64

            return enable_x64()
        return scope(True)

    def _leaves(self, model: Any, tree: Any) -> dict[str, np.ndarray]:
        from whisper_multi.flax.loading import param_path
        from whisper_multi.weights.table import canonical_parameters

        found = {}
        for name in canonical_parameters(model.config, model.head):
            path, layer = param_path(name, model.config, model.head, model.scan_layers)
            node = tree
            for part in path.split("/"):
                node = node[part]
            found[name] = np.asarray(node if layer is None else node[layer])
        return found

    def native_weights(self, model: Any) -> dict[str, np.ndarray]:
        return self._leaves(model, model.params)

    def tensor(self, array: np.ndarray) -> Any:
        import jax.numpy as jnp

        return jnp.asarray(array)

    def loss_and_gradients(
        self, model: Any, features: np.ndarray, ids: np.ndarray, labels: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray]]:
        import jax

        inputs = {"decoder_input_ids": self.tensor(ids), "labels": self.tensor(labels)}

        def loss_of(params: Any) -> Any:
            return model(self.tensor(features), params=params, **inputs).loss

        loss, gradients = jax.jit(jax.value_and_grad(loss_of))(model.params)
        found = self._leaves(model, gradients)
        # The fixed sinusoidal encoder positions are held out of training (PyTorch: requires_grad=False).
        return float(loss), {name: array for name, array in found.items() if "encoder.embed_positions" not in name}


BACKENDS: dict[str, Callable[[], Backend]] = {"pt": TorchBackend, "tf": TFBackend, "flax": FlaxBackend}


# --- the models and inputs of one comparison -------------------------------------------------------------------------
@dataclass
class Inputs:
    """What every framework is fed: the same arrays."""

    features: np.ndarray  # (batch, num_mel_bins, frames) float32
    decoder_input_ids: np.ndarray  # (batch, length) int64, starting with the decoder start token
    labels: np.ndarray  # (batch, length) int64, -100 where ignored
    audio: np.ndarray | None = None  # 16 kHz float32 waveform, for the mel stage
    classification_labels: np.ndarray | None = None
    generation_features: np.ndarray | None = None  # defaults to ``features``
    generation_new_tokens: int = GENERATION_NEW_TOKENS


@dataclass
class Subject:
    """One set of weights (canonical ``tensors``) loaded into each framework's speech-to-text model."""

    config_name: str
    source: str
    config: WhisperConfig
    tensors: Mapping[str, np.ndarray]  # what every model should hold
    models: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # framework -> why it did not run (not installed)
    errors: dict[str, str] = field(default_factory=dict)  # framework -> why its model could not be built or loaded
    classifiers: dict[str, Any] = field(default_factory=dict)


def build_subject(
    config_name: str,
    source: str,
    config: WhisperConfig,
    tensors: Mapping[str, np.ndarray],
    frameworks: Sequence[str],
    loader: Callable[[Backend], Any] | None = None,
) -> Subject:
    """Every framework's model for ``tensors``: built from them (``loader`` None) or loaded by ``loader``."""
    subject = Subject(config_name, source, config, tensors)
    for name in frameworks:
        reason = missing_framework(name)
        if reason is not None:
            subject.skipped[name] = reason
            continue
        backend = BACKENDS[name]()
        try:
            subject.models[name] = (
                loader(backend) if loader else backend.build(config, tensors, "conditional_generation")
            )
        except Exception as error:  # a broken conversion must be reported, not crash the run
            subject.errors[name] = _describe_error(error)
    return subject


def _describe_error(error: BaseException) -> str:
    where = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    place = f" ({Path(where.filename).name}:{where.lineno})" if where else ""
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}{place}"[:400]


# --- the float64 reference -----------------------------------------------------------------------------------------
@dataclass
class Float64Reference:
    """Each framework's float32 distance from its own float64 run on the same inputs, per stage (max abs, one value per
    layer of a layered output): what the float32 pair bounds are derived from.

    For two frameworks a and b, elementwise |a32 - b32| <= |a32 - a64| + |a64 - b64| + |b64 - b32|, so a pair may differ
    by the two float32 errors plus the float64 difference, which its own row holds under ``FLOAT64_TOLERANCE``;
    ``margin`` covers that and the rounding of the differences. Filled by the ``float64`` stage group of the models
    built from the canonical tensors; handed to the comparisons of models loaded from files, which hold the same
    weights bit for bit (their ``weights`` row checks it).
    """

    errors: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (framework, stage) -> per layer
    margin: float = DERIVED_MARGIN

    def bounds(self, first: str, second: str, stage: str) -> list[float] | None:
        a, b = self.errors.get((first, stage)), self.errors.get((second, stage))
        if a is None or b is None or len(a) != len(b):
            return None
        return [x + y + self.margin for x, y in zip(a, b)]

    def describe(self, first: str, second: str, stage: str) -> str:
        a, b = (max(self.errors[(name, stage)], default=0.0) for name in (first, second))
        return f"bound: float32 errors {first} {format_value(a)} + {second} {format_value(b)} + {self.margin:g}"


# --- running the stages ----------------------------------------------------------------------------------------------
class _Run:
    """The stages of one subject; each framework's forward outputs are shared by the stages that need them.

    A framework's failure in a step ("forward", "decode", "cached", ...) is recorded once and reported as an error
    row by every stage that needs that step, so the first stage in pipeline order names where things went wrong.
    """

    def __init__(
        self,
        subject: Subject,
        inputs: Inputs,
        tolerances: Tolerances,
        groups: Iterable[str],
        reference64: Float64Reference | None = None,
        on_row: Callable[[Row], None] | None = None,
        on_stage: Callable[[str], None] | None = None,
    ):
        self.subject, self.inputs, self.tolerances = subject, inputs, tolerances
        self.on_row, self.on_stage = on_row, on_stage
        self.groups = [group for group in STAGE_GROUPS if group in set(groups)]
        self.reference64 = reference64 if reference64 is not None else Float64Reference()
        self.rows: list[Row] = []
        self.outputs: dict[str, dict[str, Any]] = {}  # framework -> numpy outputs of the end-to-end forward
        self.decoded: dict[str, dict[str, Any]] = {}  # framework -> numpy outputs of the decoder from shared states
        self.step_errors: dict[tuple[str, str], str] = {}  # (step, framework) -> error
        # Hidden states and attentions only when compared.
        self.details = bool({"encoder", "float64"} & set(self.groups))

    # -- rows
    def row(self, stage: str, pair: str, measured: tuple[float, float] | None, **extra: Any) -> Row:
        tolerance = extra.pop("tolerance", self.tolerances.for_stage(stage))
        row = Row(
            self.subject.config_name, self.subject.source, stage, pair,
            None if measured is None else measured[0], None if measured is None else measured[1],
            tolerance, extra.pop("status", ""), target=self._target(stage), **extra,
        )  # fmt: skip
        self.add(judged(row))
        return row

    def add(self, row: Row) -> None:
        self.rows.append(row)
        if self.on_row is not None:
            self.on_row(row)

    def _target(self, stage: str) -> float | None:
        tolerance = self.tolerances.for_stage(stage)
        target = self.tolerances.gradients_target if stage == "gradients" else self.tolerances.target
        return target if target is not None and tolerance > target else None

    def unavailable(self, stage: str, pair: str, status: str, note: str) -> None:
        self.row(stage, pair, None, status=status, note=note)

    @property
    def frameworks(self) -> list[str]:
        """The frameworks whose model was built."""
        return [name for name in FRAMEWORKS if name in self.subject.models]

    def wanted(self) -> list[str]:
        """The frameworks asked for: built, skipped (not installed) or failed to build."""
        asked = {*self.subject.models, *self.subject.skipped, *self.subject.errors}
        return [name for name in FRAMEWORKS if name in asked]

    def blocked(self, names: Sequence[str], *steps: str) -> tuple[str, str] | None:
        """(status, note) when a framework of ``names`` was skipped, failed to build, or failed one of ``steps``."""
        for name in names:
            if name in self.subject.skipped:
                return SKIPPED, f"{name}: {self.subject.skipped[name]}"
            if name in self.subject.errors:
                return ERROR, f"{name} model: {self.subject.errors[name]}"
            for step in steps:
                if (step, name) in self.step_errors:
                    return ERROR, f"{name} {step}: {self.step_errors[(step, name)]}"
        return None

    def guarded(self, step: str, name: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except Exception as error:
            self.step_errors[(step, name)] = _describe_error(error)
            return None

    @property
    def reference(self) -> str | None:
        """The framework whose encoder states every decoder is fed: PyTorch when it runs."""
        return next((name for name in self.frameworks if name in self.outputs), None)

    def run(self, timings: dict[str, float] | None = None) -> list[Row]:
        for group in self.groups:
            started = time.perf_counter()
            if self.on_stage is not None:
                self.on_stage(group)
            getattr(self, f"_{group}")()
            if timings is not None:
                timings[group] = timings.get(group, 0.0) + time.perf_counter() - started
        return self.rows

    # -- shared computations
    def _forward_all(self) -> None:
        """Each framework's full forward from the mel features, with labels (and details when compared)."""
        inputs = self.inputs
        for name in self.frameworks:
            if name in self.outputs or ("forward", name) in self.step_errors:
                continue
            backend, model = BACKENDS[name](), self.subject.models[name]

            def forward(backend: Backend = backend, model: Any = model) -> dict[str, Any]:
                out = backend.run(
                    model, input_features=inputs.features, decoder_input_ids=inputs.decoder_input_ids,
                    labels=inputs.labels, output_attentions=self.details, output_hidden_states=self.details,
                )  # fmt: skip
                return _numpy_outputs(out)

            found = self.guarded("forward", name, forward)
            if found is not None:
                self.outputs[name] = found

    def _decode_all(self) -> None:
        """Each framework's decoder on the reference framework's encoder states and the same token ids."""
        self._forward_all()
        reference = self.reference
        for name in self.frameworks:
            if name in self.decoded or ("decode", name) in self.step_errors:
                continue
            if reference is None:
                self.step_errors[("decode", name)] = "no framework produced encoder states"
                continue
            backend, model = BACKENDS[name](), self.subject.models[name]
            states = self.outputs[reference]["encoder_last_hidden_state"]

            def decode(backend: Backend = backend, model: Any = model, states: Any = states) -> dict[str, Any]:
                out = backend.run(
                    model, encoder_states=states, decoder_input_ids=self.inputs.decoder_input_ids,
                    output_attentions=True, output_hidden_states=True,
                )  # fmt: skip
                return _numpy_outputs(out)

            found = self.guarded("decode", name, decode)
            if found is not None:
                self.decoded[name] = found

    def _compare_outputs(
        self, stage: str, key: str, outputs: dict[str, dict[str, Any]], steps: tuple[str, ...], note: str = ""
    ) -> None:
        """One row per pair: max and mean abs of ``key``; per layer for tuples of layers. The bound is derived from
        the two frameworks' float32 errors where the float64 reference measured them, fixed otherwise."""
        for a, b in pairs(self.wanted()):
            pair = f"{a}-{b}"
            blocked = self.blocked([a, b], *steps)
            if blocked:
                self.unavailable(stage, pair, *blocked)
                continue
            first, second = outputs[a].get(key), outputs[b].get(key)
            derived = self.reference64.bounds(a, b, stage)
            if first is None or second is None:
                self.unavailable(stage, pair, ERROR, f"no {key} in the outputs")
            elif isinstance(first, list) and len(first) != len(second):
                self.unavailable(stage, pair, ERROR, f"{len(first)} vs {len(second)} {key}")
            else:
                row_note = "; ".join(n for n in (note, derived and self.reference64.describe(a, b, stage)) if n)
                bounds = derived or self._fixed_bounds(stage, key, outputs[a])
                self._difference_row(stage, pair, first, second, bounds, row_note, derived=derived is not None)

    def _fixed_bounds(self, stage: str, key: str, outputs: dict[str, Any]) -> list[float]:
        """The stage's tolerance for each layer (a single output: the last of the stack of states up to it)."""
        value = outputs[key]
        if isinstance(value, list):
            return self.tolerances.for_states(stage, value)
        stack = outputs.get(key.replace("last_hidden_state", "hidden_states"))  # the states up to it
        stack = stack if isinstance(stack, list) and stack else [value]
        return [self.tolerances.for_states(stage, stack)[-1]]

    def _difference_row(
        self, stage: str, pair: str, first: Any, second: Any, bounds: list[float], note: str, derived: bool = False
    ) -> Row:
        """A row of the max and mean abs difference; per layer, each against its own bound, for a list of layers."""
        if not isinstance(first, list):
            return self.row(stage, pair, differences(first, second), tolerance=bounds[-1], note=note, derived=derived)
        per_layer = [list(differences(x, y)) for x, y in zip(first, second)]
        notes = (note, _layer_note(per_layer, stage, bounds))
        return self.row(
            stage, pair, _worst(per_layer), layers=per_layer, note="; ".join(n for n in notes if n),
            tolerance=max(bounds, default=self.tolerances.for_stage(stage)),
            layer_tolerances=bounds if len(set(bounds)) > 1 else None, derived=derived,
        )  # fmt: skip

    # -- the stages, one method per group
    def _mel(self) -> None:
        if self.inputs.audio is None:
            return
        from whisper_multi.features import WhisperFeatureExtractor

        extractor = WhisperFeatureExtractor(feature_size=self.subject.config.num_mel_bins)
        expected = extractor(self.inputs.audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
        for name in self.wanted():
            kind = MEL_TENSOR_TYPES[name]
            if name in self.subject.skipped:
                self.unavailable("mel_features", f"np-{kind}", SKIPPED, f"{name}: {self.subject.skipped[name]}")
                continue
            try:
                found = extractor(self.inputs.audio, sampling_rate=SAMPLE_RATE, return_tensors=kind).input_features
                measured = differences(expected, to_numpy(found))
                self.row("mel_features", f"np-{kind}", measured, note=f"shape {expected.shape}")
            except Exception as error:
                self.unavailable("mel_features", f"np-{kind}", ERROR, _describe_error(error))

    def _weights(self) -> None:
        from whisper_multi.weights.table import canonical_parameters

        specs = canonical_parameters(self.subject.config)
        for name in self.wanted():
            blocked = self.blocked([name])
            if blocked:
                self.unavailable("weights", name, *blocked)
                continue
            held = BACKENDS[name]().native_weights(self.subject.models[name])
            worst, total, count, differing = 0.0, 0.0, 0, []
            for canonical, spec in specs.items():
                expected = native_layout(np.asarray(self.subject.tensors[canonical]), spec.kind, name)
                found = held.get(canonical)
                if found is None or found.shape != expected.shape:
                    shape = None if found is None else found.shape
                    differing.append(f"{canonical} (shape {shape}, expected {expected.shape})")
                    worst = float("inf")
                    continue
                largest, mean = differences(expected, found)
                if largest > 0:
                    differing.append(canonical)
                worst, total, count = max(worst, largest), total + mean * found.size, count + found.size
            note = f"{len(specs)} parameters, bit-exact" if not differing else (
                f"{len(differing)} of {len(specs)} parameters differ, first: {differing[0]}"
            )  # fmt: skip
            self.row("weights", name, (worst, total / max(count, 1)), note=note)

    def _float64(self) -> None:
        """Every framework's model in float64: each pair agrees to ``FLOAT64_TOLERANCE`` on every output, and each
        framework's float32 outputs are measured against its own float64 ones (``float32_error_*`` rows, judged
        against the stage's tolerance); the float32 pair bounds are derived from those measurements."""
        self._decode_all()
        float64: dict[str, dict[str, dict[str, Any]]] = {"forward": {}, "decode": {}}
        for name in self.frameworks:
            found = self.guarded("float64", name, functools.partial(self._run_float64, name))
            if found is not None:
                float64["forward"][name], float64["decode"][name] = found
        for stage, (run, key) in FLOAT64_STAGES.items():
            self._compare_outputs(f"float64_{stage}", key, float64[run], ("float64",), "every framework in float64")
        float32 = {"forward": self.outputs, "decode": self.decoded}
        for stage, (run, key) in FLOAT64_STAGES.items():
            for name in self.wanted():
                self._float32_error(stage, name, float32[run], float64[run], key)

    def _run_float64(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the full forward, the decoder) of ``name``'s float64 model, on its float32 model's inputs: the mel
        features, and for the decoder the reference framework's float32 encoder states (exact in float64)."""
        backend, inputs = BACKENDS[name](), self.inputs
        if self.reference is None:
            raise InputError("no framework produced float32 encoder states to feed the float64 decoders")
        states = self.outputs[self.reference]["encoder_last_hidden_state"].astype(np.float64)
        with backend.float64_scope():
            model = backend.build_float64(self.subject.config, self.subject.tensors)
            forward = _numpy_outputs(backend.run(
                model, input_features=inputs.features.astype(np.float64), decoder_input_ids=inputs.decoder_input_ids,
                labels=inputs.labels, output_attentions=True, output_hidden_states=True,
            ))  # fmt: skip
            decoded = _numpy_outputs(backend.run(
                model, encoder_states=states, decoder_input_ids=inputs.decoder_input_ids, output_attentions=True,
                output_hidden_states=True,
            ))  # fmt: skip
        return forward, decoded

    def _float32_error(
        self, stage: str, name: str, float32: dict[str, dict[str, Any]], float64: dict[str, dict[str, Any]], key: str
    ) -> None:
        """``name``'s float32 output against its own float64 one; recorded for the derived pair bounds."""
        error_stage = f"float32_error_{stage}"
        blocked = self.blocked([name], "forward", "decode", "float64")
        if blocked:
            self.unavailable(error_stage, name, *blocked)
            return
        first, second = float32[name].get(key), float64[name].get(key)
        if first is None or second is None:
            self.unavailable(error_stage, name, ERROR, f"no {key} in the outputs")
            return
        bounds = self._fixed_bounds(error_stage, key, float64[name])
        row = self._difference_row(error_stage, name, first, second, bounds, "float32 vs its own float64 run")
        per_layer = [layer[0] for layer in row.layers] if row.layers is not None else [row.max_abs or 0.0]
        self.reference64.errors[(name, stage)] = per_layer

    def _encoder(self) -> None:
        self._forward_all()
        for stage in STAGES["encoder"]:
            self._compare_outputs(stage, stage, self.outputs, ("forward",))

    def _decoder(self) -> None:
        self._decode_all()
        note = f"fed the {self.reference} encoder states" if self.reference else ""
        for stage in STAGES["decoder"]:
            self._compare_outputs(stage, stage, self.decoded, ("forward", "decode"), note)

    def _e2e(self) -> None:
        self._forward_all()
        self._compare_outputs("e2e_logits", "logits", self.outputs, ("forward",), "from the mel features")
        self._compare_outputs("loss", "loss", self.outputs, ("forward",), "from the mel features, with labels")

    def _cached(self) -> None:
        self._decode_all()
        stepped: dict[str, dict[str, Any]] = {}
        ids = self.inputs.decoder_input_ids
        states: Any = self.outputs[self.reference]["encoder_last_hidden_state"] if self.reference else None
        for name in self.wanted():
            blocked = self.blocked([name], "forward", "decode")
            if blocked is None:
                backend, model = BACKENDS[name](), self.subject.models[name]
                found = self.guarded("cached", name, functools.partial(_stepwise_logits, backend, model, states, ids))
                blocked = self.blocked([name], "cached")
            for stage, kind in (("cached_logits", "dynamic"), ("static_cache_logits", "static")):
                if blocked:
                    self.unavailable(stage, name, *blocked)
                    continue
                stepped.setdefault(name, {})[stage] = found[kind]
                full = self.decoded[name]["logits"][:, : found[kind].shape[1]]
                self.row(stage, name, differences(found[kind], full), note=f"{kind} cache, step by step, vs full")
        for stage in STAGES["cached"]:
            self._compare_outputs(stage, stage, stepped, ("forward", "decode", "cached"))

    def _gradients(self) -> None:
        from whisper_multi.weights.table import canonical_parameters

        specs = canonical_parameters(self.subject.config)
        found: dict[str, dict[str, np.ndarray]] = {}
        inputs = self.inputs
        for name in self.frameworks:
            backend, model = BACKENDS[name](), self.subject.models[name]

            def gradients(backend: Backend = backend, model: Any = model) -> Any:
                return backend.loss_and_gradients(model, inputs.features, inputs.decoder_input_ids, inputs.labels)

            result = self.guarded("gradients", name, gradients)
            if result is not None:
                found[name] = {n: canonical_layout(g, specs[n].kind, name) for n, g in result[1].items()}
        for a, b in pairs(self.wanted()):
            blocked = self.blocked([a, b], "gradients")
            if blocked:
                self.unavailable("gradients", f"{a}-{b}", *blocked)
            else:
                self.add(judged(self._gradient_row(f"{a}-{b}", found[a], found[b])))

    def _gradient_row(self, pair: str, first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> Row:
        """The worst relative difference over the parameters: max abs / the largest magnitude of the first."""
        names = [name for name in first if name in second]
        worst_name, worst, relative_means = "", 0.0, []
        for name in names:
            largest, mean = differences(first[name], second[name])
            scale = max(float(np.abs(first[name]).max()), 1e-12)
            if not largest / scale <= worst:  # a NaN stays the worst
                worst_name, worst = name, largest / scale
            relative_means.append(mean / scale)
        note = f"{len(names)} parameters; worst {worst_name}"
        only = sorted(set(first) ^ set(second))
        if only:
            note += f"; without a gradient in one of them: {', '.join(only)}"
        mean = float(np.mean(relative_means)) if relative_means else 0.0
        return Row(
            self.subject.config_name, self.subject.source, "gradients", pair, worst, mean,
            self.tolerances.for_stage("gradients"), "", measure="relative", target=self._target("gradients"), note=note,
        )  # fmt: skip

    def _classification(self) -> None:
        config, tensors = classification_weights(self.subject.config, self.subject.tensors)
        features = self.inputs.features
        logits: dict[str, dict[str, Any]] = {}
        for name in self.frameworks:
            backend = BACKENDS[name]()

            def classify(backend: Backend = backend) -> dict[str, Any]:
                model = backend.build(config, tensors, "audio_classification")
                return {"logits": to_numpy(backend.run(model, input_features=features).logits)}

            found = self.guarded("classification", name, classify)
            if found is not None:
                logits[name] = found
        note = "encoder weights + seeded head, weighted layer sum"
        self._compare_outputs("classification_logits", "logits", logits, ("classification",), note)

    def _generation(self) -> None:
        features = self.inputs.generation_features
        features = self.inputs.features if features is None else features
        for stage, settings in GENERATION_SETTINGS.items():
            tokens: dict[str, dict[str, Any]] = {}
            missing = []
            for name in self.frameworks:
                backend, model = BACKENDS[name](), self.subject.models[name]
                if getattr(model, "generate", None) is None:
                    missing.append(f"{type(model).__name__}.generate")
                    continue
                kwargs = {"max_new_tokens": self.inputs.generation_new_tokens, **settings}
                found = self.guarded(stage, name, functools.partial(backend.generate, model, features, **kwargs))
                if found is not None:
                    tokens[name] = {"ids": found}
            for a, b in pairs(self.wanted()):
                pair = f"{a}-{b}"
                blocked = self.blocked([a, b], stage)
                if blocked:
                    self.unavailable(stage, pair, *blocked)
                elif a not in tokens or b not in tokens:
                    self.unavailable(stage, pair, NOT_AVAILABLE, f"not implemented yet: {', '.join(missing)}")
                else:
                    length = np.atleast_2d(tokens[a]["ids"]).shape[-1]
                    measured = token_differences(tokens[a]["ids"], tokens[b]["ids"])
                    self.row(stage, pair, measured, measure="tokens", note=f"{length} ids; {settings or 'greedy'}")


def _numpy_outputs(out: Any) -> dict[str, Any]:
    """The comparable fields of a model output as numpy (tuples of layers as lists)."""
    found: dict[str, Any] = {}
    for key in (
        "logits", "loss", "encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions",
        "decoder_hidden_states", "decoder_attentions", "cross_attentions",
    ):  # fmt: skip
        value = getattr(out, key, None)
        if value is not None:
            found[key] = [to_numpy(item) for item in value] if isinstance(value, (tuple, list)) else to_numpy(value)
    return found


def _worst(per_layer: list[list[float]]) -> tuple[float, float]:
    """(max over layers, mean over layers); NaN when any layer has one."""
    if not per_layer:
        return 0.0, 0.0
    maxima = [pair[0] for pair in per_layer]
    largest = float("nan") if not all(np.isfinite(maxima)) else max(maxima)
    return largest, float(np.mean([pair[1] for pair in per_layer]))


def _layer_note(per_layer: list[list[float]], stage: str, bounds: Sequence[float]) -> str:
    """Where a layered output is worst and the first layer above its bound: where the frameworks part."""
    unit = "state" if "hidden" in stage else "layer"
    maxima = [pair[0] if np.isfinite(pair[0]) else np.inf for pair in per_layer]
    note = f"worst {unit} {int(np.argmax(maxima))} of {len(per_layer)}" if per_layer else ""
    first = next((i for i, (largest, bound) in enumerate(zip(maxima, bounds)) if not largest <= bound), None)
    return note + (f"; first above tolerance: {unit} {first}" if first is not None else "")


def _stepwise_logits(backend: Backend, model: Any, states: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Logits of the first ``CACHED_POSITIONS`` positions decoded two tokens then one at a time, with the dynamic
    cache and with a static one."""
    results = {}
    length = min(ids.shape[1], CACHED_POSITIONS)
    for kind in ("dynamic", "static"):
        cache = backend.init_cache(model, ids.shape[0], length) if kind == "static" else None
        start, steps = 0, []
        for stop in [min(2, length), *range(min(2, length) + 1, length + 1)]:
            inputs: dict[str, Any] = {"encoder_states": states, "decoder_input_ids": ids[:, start:stop]}
            if cache is not None:
                inputs["past_key_values"] = cache
            if kind == "static":
                inputs["cache_position"] = backend.tensor(np.arange(start, stop))
            out = backend.run(model, use_cache=True, **inputs)
            steps.append(to_numpy(out.logits))
            cache, start = out.past_key_values, stop
        results[kind] = np.concatenate(steps, axis=1)
    return results


def classification_weights(
    config: WhisperConfig, tensors: Mapping[str, np.ndarray], seed: int = 7
) -> tuple[WhisperConfig, dict[str, np.ndarray]]:
    """An audio classifier on ``tensors``' encoder: weighted layer sum and a seeded random head."""
    from whisper_multi.weights.table import canonical_parameters

    classifier_config = WhisperConfig.from_dict(
        config.to_dict(), use_weighted_layer_sum=True, num_labels=CLASSIFICATION_LABELS, id2label=None, label2id=None
    )
    rng = np.random.default_rng(seed)
    found = {}
    for name, spec in canonical_parameters(classifier_config, "audio_classification").items():
        if name.startswith("encoder."):
            found[name] = np.asarray(tensors[f"model.{name}"])
        elif spec.kind == "layer_weights":
            found[name] = rng.standard_normal(spec.shape).astype(np.float32)
        else:
            found[name] = (0.05 * rng.standard_normal(spec.shape)).astype(np.float32)
    return classifier_config, found


def compare(
    subject: Subject,
    inputs: Inputs,
    tolerances: Tolerances,
    groups: Iterable[str] = STAGE_GROUPS,
    timings: dict[str, float] | None = None,
    reference64: Float64Reference | None = None,
    on_row: Callable[[Row], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> list[Row]:
    """Every selected stage of ``subject``, one row per framework pair (or per framework); the seconds each stage
    group took are added to ``timings``. The ``float64`` group fills ``reference64``; without that group, the
    float32 errors already in it (those of the same weights) give the derived pair bounds. ``on_row`` is called
    with each row as it is measured, ``on_stage`` with each stage group's name before it runs."""
    return _Run(subject, inputs, tolerances, groups, reference64, on_row, on_stage).run(timings)


# --- inputs from audio -----------------------------------------------------------------------------------------------
def read_wav(path: str | os.PathLike[str]) -> np.ndarray:
    """A 16 kHz mono 16-bit PCM wav file as float32 in [-1, 1), with the standard library only."""
    with wave.open(str(path), "rb") as file:
        layout = (file.getframerate(), file.getnchannels(), file.getsampwidth())
        if layout != (SAMPLE_RATE, 1, 2):
            raise InputError(
                f"{path}: (rate, channels, bytes per sample) is {layout}; expected ({SAMPLE_RATE}, 1, 2), or install "
                "the audio extra to read any file"
            )
        pcm = np.frombuffer(file.readframes(file.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def read_audio(path: str | os.PathLike[str]) -> np.ndarray:
    """Any audio file the audio extra reads, resampled to 16 kHz mono; a 16 kHz 16-bit wav without it."""
    try:
        from whisper_multi.audio import load_audio
    except ImportError:
        return read_wav(path)
    try:
        return np.asarray(load_audio(path), dtype=np.float32)
    except ImportError:  # soundfile / av not installed
        return read_wav(path)


def greedy_ids(backend: Backend, model: Any, states: np.ndarray, config: WhisperConfig, count: int) -> np.ndarray:
    """Greedy token ids from the decoder start token, with the dynamic cache (at most ``count`` new ids)."""
    tokens = [int(config.decoder_start_token_id)]
    cache = None
    step = np.array([tokens], dtype=np.int64)
    limit = min(count, config.max_target_positions - 1)
    for _ in range(limit):
        out = backend.run(model, encoder_states=states, decoder_input_ids=step, past_key_values=cache, use_cache=True)
        tokens.append(int(to_numpy(out.logits)[0, -1].argmax()))
        cache = out.past_key_values
        step = np.array([[tokens[-1]]], dtype=np.int64)
        if tokens[-1] == config.eos_token_id:
            break
    return np.array([tokens], dtype=np.int64)


def audio_inputs(
    audio: np.ndarray, config: WhisperConfig, subject: Subject, count: int = GENERATION_NEW_TOKENS
) -> Inputs:
    """The clip's mel features, and token ids the reference framework decodes greedily from them (teacher-forced in
    every framework afterwards: the same ids for all)."""
    from whisper_multi.features import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    features = extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features.astype(np.float32)
    reference = next((name for name in FRAMEWORKS if name in subject.models), None)
    if reference is None:
        ids = np.array([[config.decoder_start_token_id, config.eos_token_id]], dtype=np.int64)
    else:
        backend, model = BACKENDS[reference](), subject.models[reference]
        states = to_numpy(backend.run(model.get_encoder(), input_features=features).last_hidden_state)
        ids = greedy_ids(backend, model, states, config, count)
    if ids.shape[1] < 3:  # at least two positions to decode, so the cached stage steps once
        ids = np.concatenate([ids, np.full((1, 3 - ids.shape[1]), config.eos_token_id)], axis=1)
    return Inputs(features, ids[:, :-1], ids[:, 1:], audio=audio, classification_labels=np.array([1]))


# --- whisper-multi check ---------------------------------------------------------------------------------------------
CHECK_GROUPS = STAGE_GROUPS  # every stage of the real-weight matrix


@dataclass
class CheckReport:
    model: str
    backends: list[str]
    rows: list[Row]
    skipped: dict[str, str]
    wall_s: float

    @property
    def failures(self) -> list[Row]:
        return [row for row in self.rows if row.status in (FAIL, ERROR)]

    @property
    def not_available(self) -> list[Row]:
        return [row for row in self.rows if row.status == NOT_AVAILABLE]

    @property
    def exit_code(self) -> int:
        """``exit_code`` of the rows, and 4 (nothing compared) when fewer than two backends ran."""
        code = exit_code(self.rows)
        ran = [name for name in self.backends if name not in self.skipped]
        return 4 if code == 0 and len(ran) < 2 else code


def exit_code(rows: Sequence[Row]) -> int:
    """0 every row passed (skipped rows aside); 1 a row failed; 3 none failed but a stage is not available; 4
    nothing was compared."""
    if any(row.status in (FAIL, ERROR) for row in rows):
        return 1
    if any(row.status == NOT_AVAILABLE for row in rows):
        return 3
    return 0 if any(row.passed for row in rows) else 4


def run_check(
    model: str | None = None,
    backends: Sequence[str] = FRAMEWORKS,
    audio: str | os.PathLike[str] | None = None,
    tolerance: float | None = None,
    groups: Iterable[str] = CHECK_GROUPS,
    on_row: Callable[[Row], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> CheckReport:
    """The real-weight part of the conformance matrix on one checkpoint: every backend loads it with its own
    ``from_pretrained``; each stage is compared across the backends on the same clip."""
    from whisper_multi.weights.convert import read_checkpoint
    from whisper_multi.weights.packages import model_directory

    unknown = [name for name in backends if name not in FRAMEWORKS]
    if unknown:
        raise InputError(f"unknown backend(s) {', '.join(unknown)}; expected some of {', '.join(FRAMEWORKS)}")
    started = time.perf_counter()
    tolerances = REAL_TOLERANCES
    if tolerance is not None:
        tolerances = dataclasses.replace(
            REAL_TOLERANCES, absolute=tolerance, relative=0.0,
            hidden_states=max(tolerance, REAL_TOLERANCES.hidden_states),
        )  # fmt: skip
    with model_directory(model) as (directory, label):
        checkpoint = read_checkpoint(directory)
        tensors = {name: np.asarray(array, dtype=np.float32) for name, array in checkpoint.tensors.items()}
        subject = build_subject(
            label, checkpoint.format, checkpoint.config, tensors, backends, loader=lambda b: b.load(directory)
        )
        clip = read_audio(audio) if audio is not None else read_wav(DEFAULT_AUDIO)
        inputs = audio_inputs(clip, checkpoint.config, subject)
        rows = compare(subject, inputs, tolerances, groups, on_row=on_row, on_stage=on_stage)
    return CheckReport(label, list(backends), rows, dict(subject.skipped), time.perf_counter() - started)


# --- tables ----------------------------------------------------------------------------------------------------------
def format_value(value: float | None, measure: str = "abs") -> str:
    if value is None:
        return "—"
    if measure == "tokens":
        return f"{value:g}" if value >= 1 or value == 0 else f"{value:.2%}"
    if value == 0:
        return "0"
    return f"{value:.2e}" if np.isfinite(value) else str(value)


def format_tolerance(row: Row) -> str:
    text = "exact" if row.tolerance == 0 else f"{row.tolerance:.3g}" + (" rel" if row.measure == "relative" else "")
    if row.layer_tolerances is not None:
        text = f"per {'state' if 'hidden' in row.stage else 'layer'}, up to " + text
    if row.derived:
        text = "derived, " + text
    return text + (f" (target {row.target:g})" if row.target is not None else "")


TOLERANCE_LEGEND = (
    "tolerance column: 'exact' must be identical; a number is the largest max abs difference allowed; 'derived' "
    "bounds a float32 pair by the sum of its two backends' float32 errors (their float32_error rows, each measured "
    f"against the same backend's float64 run) plus {DERIVED_MARGIN:g}; 'per state' / 'per layer' judges each hidden "
    "state or layer against its own bound and shows the largest; on real weights a fixed bound is 1e-4 plus 1e-5 "
    "of the output's largest magnitude (hidden states: plus 2e-5 of the largest magnitude the stream has reached); "
    "'rel' is relative to the largest gradient; '(target 1e-05)' is the bound aimed for."
)


def markdown_header(with_config: bool = True, with_source: bool = True) -> str:
    """The header and rule lines of ``markdown_table``."""
    header = (["config"] if with_config else []) + (["source"] if with_source else [])
    header += ["stage", "pair", "max abs", "mean abs", "tolerance", "result", "note"]
    return "| " + " | ".join(header) + " |\n|" + "|".join("---" for _ in header) + "|"


def markdown_row(row: Row, with_config: bool = True, with_source: bool = True) -> str:
    """One line of ``markdown_table``."""
    suffix = {"relative": " (rel)", "tokens": " (ids)"}
    cells = ([row.config] if with_config else []) + ([row.source] if with_source else [])
    cells += [
        row.stage + suffix.get(row.measure, ""),
        row.pair,
        format_value(row.max_abs, row.measure),
        format_value(row.mean_abs, row.measure),
        format_tolerance(row),
        "PASS" if row.passed else row.status.upper(),
        row.note.replace("|", "/"),
    ]
    return "| " + " | ".join(cells) + " |"


def markdown_table(rows: Sequence[Row], with_config: bool = True, with_source: bool = True) -> str:
    """``| config | source | stage | pair | max abs | mean abs | tolerance | result | note |``."""
    lines = [markdown_header(with_config, with_source)]
    lines += [markdown_row(row, with_config, with_source) for row in rows]
    return "\n".join(lines)


def summary_line(rows: Sequence[Row]) -> str:
    counts = {status: sum(row.status == status for row in rows) for status in STATUS_ORDER}
    return ", ".join(f"{count} {status}" for status, count in counts.items() if count or status == PASS)
