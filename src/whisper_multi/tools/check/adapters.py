"""The tensor work of each framework for a check: build, load and run its models with numpy in and out.

One adapter per backend of ``whisper_multi.backends``; the model classes come from that registry. No framework is
imported until an adapter is used.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from whisper_multi.backends import BACKENDS, Backend, to_tensor
from whisper_multi.configuration import WhisperConfig
from whisper_multi.tools.check.frameworks import to_numpy

CANONICAL = "the canonical tensors"  # how the weight layer names the tensors handed over in memory


class Adapter:
    """Build, load and run one framework's models; every array in and out is numpy."""

    key = ""

    @property
    def spec(self) -> Backend:
        return BACKENDS[self.key]

    def model_class(self, head: str) -> Any:
        return self.spec.model_class(head)

    def build(self, config: WhisperConfig, tensors: Mapping[str, np.ndarray], head: str) -> Any:
        """A model holding canonical ``tensors``, handed over through the weight layer (no file)."""
        from whisper_multi.weights.pretrained import prepare_tensors

        model = self.model_class(head)(config)
        self.spec.module("loading").load_tensors(model, prepare_tensors(tensors, head, config, CANONICAL))
        return model

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
        return to_tensor(array, self.spec.return_tensors)

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


class TorchAdapter(Adapter):
    key = "pt"

    def build(self, config: WhisperConfig, tensors: Mapping[str, np.ndarray], head: str) -> Any:
        return super().build(config, tensors, head).eval()

    def build_float64(self, config: WhisperConfig, tensors: Mapping[str, np.ndarray]) -> Any:
        import torch

        return self.build(config, tensors, "conditional_generation").to(torch.float64)

    def native_weights(self, model: Any) -> dict[str, np.ndarray]:
        return {name: to_numpy(tensor) for name, tensor in model.state_dict().items()}

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


class TFAdapter(Adapter):
    key = "tf"

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
        return super().model_class(head)

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
        variables = self.spec.module("loading").model_variables(model)
        return {name: np.asarray(variable.numpy()) for name, variable in variables.items()}

    def tensor(self, array: np.ndarray) -> Any:
        self._import()
        return super().tensor(array)

    def loss_and_gradients(
        self, model: Any, features: np.ndarray, ids: np.ndarray, labels: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray]]:
        tf = self._import()
        variables = self.spec.module("loading").model_variables(model)
        with tf.GradientTape() as tape:
            loss = model(self.tensor(features), decoder_input_ids=self.tensor(ids), labels=self.tensor(labels)).loss
        gradients = tape.gradient(loss, list(variables.values()))
        found = {
            name: np.asarray(tf.convert_to_tensor(gradient).numpy())
            for name, gradient in zip(variables, gradients)
            if gradient is not None
        }
        return float(loss), found


class FlaxAdapter(Adapter):
    key = "flax"

    def build(self, config: WhisperConfig, tensors: Mapping[str, np.ndarray], head: str) -> Any:
        return self.model_class(head).from_state_dict(config, dict(tensors), CANONICAL)

    def build_float64(self, config: WhisperConfig, tensors: Mapping[str, np.ndarray]) -> Any:
        import jax.numpy as jnp

        float64 = {name: np.asarray(array, dtype=np.float64) for name, array in tensors.items()}
        return self.model_class("conditional_generation").from_state_dict(
            config, float64, CANONICAL, dtype=jnp.float64, param_dtype=jnp.float64
        )

    def float64_scope(self) -> AbstractContextManager[Any]:
        import jax

        scope = getattr(jax, "enable_x64", None)  # jax >= 0.7; earlier releases have it in jax.experimental
        if scope is None:
            from jax.experimental import enable_x64

            return enable_x64()
        return scope(True)

    def _leaves(self, model: Any, tree: Any) -> dict[str, np.ndarray]:
        from whisper_multi.weights.table import canonical_parameters

        param_path = self.spec.module("loading").param_path
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


# Backend key -> its adapter; every backend of the registry has one.
ADAPTERS: dict[str, Adapter] = {adapter.key: adapter for adapter in (TorchAdapter(), TFAdapter(), FlaxAdapter())}
