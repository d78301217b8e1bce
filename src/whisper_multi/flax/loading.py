"""``from_pretrained`` / ``save_pretrained`` for the Flax models, and parameter trees to and from canonical tensors.

Reading any checkpoint format, adapting names between model classes and checking the whole set against the table
is the weight layer's (``weights.pretrained``, shared by the three backends), so a checkpoint loads whole or not at
all and the error lists the offending names; this file builds parameter trees from the checked arrays.

Conversion is data: a canonical name becomes its Flax path by the table's name rule (``framework_name``) and its
array takes the Flax layout by the table's rule for its kind (``to_framework_layout``). Linen names the N-th module
of a list ``layers_N`` (Transformers nests ``layers/N``); with ``scan_layers`` the N-th layer is slice N of one
stacked ``layers`` module. ``save_pretrained`` writes the canonical directory, which the PyTorch models read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import CheckpointError
from whisper_multi.weights import pretrained
from whisper_multi.weights.loading import CheckpointLoadingMixin, architecture_name, warn_fresh_parameters
from whisper_multi.weights.table import (
    canonical_parameters,
    check_state_dict,
    framework_name,
    from_framework_layout,
    to_framework_layout,
)

FRAMEWORK = "flax"
DEFAULT_MAX_SHARD_SIZE = pretrained.DEFAULT_MAX_SHARD_SIZE

_LAYER = re.compile(r"(^|/)layers/(\d+)/")

ModelT = TypeVar("ModelT", bound="FlaxPreTrainedModelMixin")
Params = dict[str, Any]


# --- names: the table's Flax path, then Linen's spelling of the layer lists -----------------------------------------
def param_path(
    canonical_name: str, config: WhisperConfig, head: str, scan_layers: bool = False
) -> tuple[str, int | None]:
    """The Linen parameter path of a canonical name, and the layer index when the layers are scanned (else None)."""
    spec = canonical_parameters(config, head)[canonical_name]
    path = framework_name(spec, FRAMEWORK)  # e.g. model/encoder/layers/0/self_attn/k_proj/kernel
    match = _LAYER.search(path)
    if match is None:
        return path, None
    if scan_layers:
        return _LAYER.sub(r"\1layers/", path, count=1), int(match.group(2))
    return _LAYER.sub(r"\1layers_\2/", path, count=1), None


def _set(tree: Params, path: str, value: Any) -> None:
    *parents, leaf = path.split("/")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def _get(tree: Params, path: str) -> Any:
    for key in path.split("/"):
        if not isinstance(tree, Mapping) or key not in tree:
            raise KeyError(path)
        tree = tree[key]
    return tree


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


# --- canonical tensors <-> parameter trees -------------------------------------------------------------------------
def params_from_state_dict(
    config: WhisperConfig,
    tensors: Mapping[str, Any],
    head: str = "conditional_generation",
    scan_layers: bool = False,
    source: str = "the state dict",
    dtype: Any = None,
) -> Params:
    """A Linen parameter tree from canonical tensors (checked first: names and shapes)."""
    check_state_dict(config, tensors, source, head=head)
    specs = canonical_parameters(config, head)
    params: Params = {}
    stacks: dict[str, dict[int, np.ndarray]] = {}
    for name, spec in specs.items():
        array = to_framework_layout(np.asarray(tensors[name]), spec.kind, FRAMEWORK)
        if dtype is not None:
            array = array.astype(dtype)
        path, layer = param_path(name, config, head, scan_layers)
        if layer is None:
            _set(params, path, jnp.asarray(array))
        else:
            stacks.setdefault(path, {})[layer] = array
    for path, layers in stacks.items():
        _set(params, path, jnp.asarray(np.stack([layers[i] for i in range(len(layers))])))  # (layers, ...)
    return params


def state_dict_from_params(
    config: WhisperConfig, params: Params, head: str = "conditional_generation", scan_layers: bool = False
) -> dict[str, np.ndarray]:
    """Canonical tensors (PyTorch names and layout, table order) from a Linen parameter tree."""
    tensors: dict[str, np.ndarray] = {}
    missing = []
    for name, spec in canonical_parameters(config, head).items():
        path, layer = param_path(name, config, head, scan_layers)
        try:
            array = np.asarray(_get(params, path))
        except KeyError:
            missing.append(path)
            continue
        if layer is not None:
            array = array[layer]
        tensors[name] = np.ascontiguousarray(from_framework_layout(array, spec.kind, FRAMEWORK))
    if missing:
        raise CheckpointError(f"the parameter tree lacks {len(missing)} Whisper {head} parameters: {missing[:10]}")
    return tensors


def check_params(params: Params, expected: Params, source: str) -> None:
    """Raise CheckpointError unless ``params`` has exactly the paths and shapes of ``expected``."""
    found = {name: tuple(np.shape(leaf)) for name, leaf in _flatten(params).items()}
    wanted = {name: tuple(leaf.shape) for name, leaf in _flatten(expected).items()}
    missing = sorted(set(wanted) - set(found))
    unexpected = sorted(set(found) - set(wanted))
    wrong = [f"{n}: expected {wanted[n]}, found {found[n]}" for n in found if n in wanted and found[n] != wanted[n]]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{source} does not match the model's parameters: missing {missing[:10]}, unexpected {unexpected[:10]}, "
            f"wrong shape {wrong[:10]}"
        )


# --- the mixin -----------------------------------------------------------------------------------------------------
class FlaxPreTrainedModelMixin(CheckpointLoadingMixin):
    """Loading and saving for ``FlaxWhisperPreTrainedModel`` subclasses (which set config, head and params);
    ``from_ct2`` is the shared one."""

    config: WhisperConfig
    head: str
    scan_layers: bool
    params: Params

    @classmethod
    def from_pretrained(
        cls: type[ModelT],
        path: str | os.PathLike[str],
        config: WhisperConfig | None = None,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        **kwargs: Any,
    ) -> ModelT:
        """Build the model from a checkpoint in any supported format and load its weights: a local directory, an
        installed model package or a Hub repository's name ("openai/whisper-tiny.en"), fetched into the Hub cache
        with ``revision``, ``cache_dir``, ``local_files_only``, ``token`` and ``subfolder`` (``whisper_multi.hub``).

        ``dtype`` is the computation dtype (float32, bfloat16, float16); ``param_dtype`` the dtype the parameters
        are stored in. Other keyword arguments (``scan_layers``, ``gradient_checkpointing``, ...) go to the model.
        """
        hub = pretrained.HubOptions.take(kwargs)
        weights = pretrained.load_pretrained(path, head=cls.head, config=config, hub=hub)
        return cls._from_weights(weights, dtype=dtype, param_dtype=param_dtype, **kwargs)

    @classmethod
    def from_state_dict(
        cls: type[ModelT],
        config: WhisperConfig,
        tensors: Mapping[str, Any],
        source: str = "the state dict",
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        **kwargs: Any,
    ) -> ModelT:
        """Build the model from canonical tensors (PyTorch names and layout, e.g. a PyTorch ``state_dict``)."""
        weights = pretrained.prepare_tensors(tensors, cls.head, config, source)
        return cls._from_weights(weights, dtype=dtype, param_dtype=param_dtype, **kwargs)

    @classmethod
    def _from_weights(
        cls: type[ModelT], weights: pretrained.PretrainedWeights, dtype: Any, param_dtype: Any, **kwargs: Any
    ) -> ModelT:
        fresh = bool(weights.not_in_checkpoint)
        model = cls(weights.config, dtype=dtype, param_dtype=param_dtype, _do_init=fresh, **kwargs)  # type: ignore[call-arg]
        tensors = dict(weights.tensors)
        if fresh:
            # A speech-to-text checkpoint brings only the encoder: the classifier starts from its initialisation.
            initial = state_dict_from_params(weights.config, model.params, cls.head, model.scan_layers)
            warn_fresh_parameters(weights, stacklevel=3)
            tensors.update({name: initial[name] for name in weights.not_in_checkpoint})
        model.load_state_dict(tensors, weights.source)
        return model

    def load_state_dict(self, tensors: Mapping[str, Any], source: str = "the state dict") -> None:
        """Replace the parameters by canonical tensors, after checking every name and shape."""
        params = params_from_state_dict(
            self.config, tensors, self.head, self.scan_layers, source, dtype=getattr(self, "param_dtype", None)
        )
        check_params(params, self.params_shapes(), source)  # type: ignore[attr-defined]
        self.params = params

    def state_dict(self, params: Params | None = None) -> dict[str, np.ndarray]:
        """The parameters as canonical tensors (PyTorch names and layout)."""
        return state_dict_from_params(
            self.config, self.params if params is None else params, self.head, self.scan_layers
        )

    def save_pretrained(
        self,
        path: str | os.PathLike[str],
        params: Params | None = None,
        max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    ) -> list[Path]:
        """Write ``config.json`` and the canonical ``model.safetensors`` (sharded above ``max_shard_size``)."""
        tensors = self.state_dict(params)
        config = self.config
        config.architectures = [architecture_name(self)]
        config.torch_dtype = str(next(iter(tensors.values())).dtype)
        return pretrained.save_pretrained(path, config, tensors, self.head, max_shard_size)


def to_dtype(params: Params, dtype: Any) -> Params:
    """Every floating parameter cast to ``dtype`` (e.g. ``jnp.bfloat16`` to halve memory)."""
    return jax.tree_util.tree_map(
        lambda leaf: leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf, params
    )
