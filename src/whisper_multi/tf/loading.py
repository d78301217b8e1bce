"""``from_pretrained`` / ``save_pretrained`` for the Keras models, and the SavedModel export for serving.

Weights move through the canonical table only (``weights.table``): a Keras variable's path, less the model's own
name, is its table TF name (``framework_names(config, "tf", head)``), and each kind has its layout rule. Reading any
checkpoint format, adapting names between model classes and checking them is the weight layer's
(``weights.pretrained``, shared by the three backends); this file only moves arrays into and out of Keras variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import tensorflow as tf

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import CheckpointError
from whisper_multi.modeling.utils import expected_num_frames
from whisper_multi.weights import pretrained
from whisper_multi.weights.loading import CheckpointLoadingMixin, architecture_name, warn_fresh_parameters
from whisper_multi.weights.table import (
    HEADS,
    ParamSpec,
    canonical_parameters,
    framework_name,
    from_framework_layout,
    to_framework_layout,
)

DEFAULT_MAX_SHARD_SIZE = pretrained.DEFAULT_MAX_SHARD_SIZE

ModelT = TypeVar("ModelT", bound="TFPreTrainedModelMixin")


# --- the model's parameters in the table ---------------------------------------------------------------------------
def _part_prefix(model: Any) -> str | None:
    """ "encoder" or "decoder" for a stack used alone (its names are the base model's, less the prefix)."""
    if getattr(model, "head", None) in HEADS and type(model).__name__ not in ("TFWhisperEncoder", "TFWhisperDecoder"):
        return None
    return "encoder" if hasattr(model, "conv1") else "decoder"


def model_parameters(model: Any) -> dict[str, ParamSpec]:
    """Canonical name -> spec for every stored parameter of ``model`` (a head, or an encoder or decoder alone)."""
    prefix = _part_prefix(model)
    if prefix is None:
        return canonical_parameters(model.config, model.head)
    specs = canonical_parameters(model.config, "base")
    return {
        name.removeprefix(f"{prefix}."): spec._replace(name=name.removeprefix(f"{prefix}."))
        for name, spec in specs.items()
        if name.startswith(f"{prefix}.")
    }


def _table_path(path: str, names: Mapping[str, str]) -> str:
    """The longest tail of a Keras variable path that is a table TF name.

    Keras roots a path at the outermost layer built at the time (the model's own name, or the nested ``model`` of
    ``TFWhisperForConditionalGeneration``, which its constructor builds), so the leading components vary.
    """
    parts = path.split("/")
    for start in range(len(parts)):
        candidate = "/".join(parts[start:]) + ":0"
        if candidate in names:
            return candidate
    return path


def model_variables(model: Any) -> dict[str, Any]:
    """Canonical name -> Keras variable: the tail of the variable path is the table's TF name."""
    specs = model_parameters(model)
    names = {framework_name(spec, "tf"): name for name, spec in specs.items()}
    by_path = {_table_path(variable.path, names): variable for variable in model.weights}
    if len(by_path) != len(model.weights):
        raise CheckpointError(f"{type(model).__name__} has two variables with the same table name")
    unknown = sorted(set(by_path) - set(names))
    absent = sorted(set(names) - set(by_path))
    if unknown or absent:
        raise CheckpointError(
            f"{type(model).__name__} variables do not match the table's TF names: not in the table {unknown[:10]}, "
            f"not built {absent[:10]}"
        )
    return {names[path]: variable for path, variable in by_path.items()}


# --- copying checked tensors in -----------------------------------------------------------------------------------
def load_tensors(model: Any, weights: pretrained.PretrainedWeights) -> None:
    """Copy checked canonical tensors into ``model``'s Keras variables; fresh head parameters are announced."""
    warn_fresh_parameters(weights, stacklevel=4)
    specs = model_parameters(model)
    for name, variable in model_variables(model).items():
        if name in weights.not_in_checkpoint:
            continue
        array = to_framework_layout(np.asarray(weights.tensors[name]), specs[name].kind, "tf")
        variable.assign(array.astype(variable.dtype, copy=False))


def canonical_tensor(model: Any, name: str, variable: Any) -> np.ndarray:
    """One variable in the canonical (PyTorch) layout."""
    array = from_framework_layout(np.asarray(variable.numpy()), model_parameters(model)[name].kind, "tf")
    return np.ascontiguousarray(array)


def canonical_state_dict(model: Any) -> dict[str, np.ndarray]:
    """Every stored parameter of ``model`` as canonical numpy tensors, in table order (tied copies left out)."""
    variables = model_variables(model)
    return {name: canonical_tensor(model, name, variables[name]) for name in model_parameters(model)}


# --- the mixin -----------------------------------------------------------------------------------------------------
class TFPreTrainedModelMixin(CheckpointLoadingMixin):
    """Loading and saving for ``TFWhisperPreTrainedModel`` subclasses (the weight layer does the files);
    ``from_ct2`` is the shared one."""

    head: str

    @classmethod
    def from_pretrained(
        cls: type[ModelT],
        path: str | os.PathLike[str],
        config: WhisperConfig | None = None,
        **kwargs: Any,
    ) -> ModelT:
        """Build the model from a checkpoint in any supported format and load its weights: a local directory, an
        installed model package or a Hub repository's name ("openai/whisper-tiny.en"), fetched into the Hub cache
        with ``revision``, ``cache_dir``, ``local_files_only``, ``token`` and ``subfolder`` (``whisper_multi.hub``).
        Other keyword arguments go to the model."""
        hub = pretrained.HubOptions.take(kwargs)
        weights = pretrained.load_pretrained(path, head=cls.head, config=config, hub=hub)
        model = cls(weights.config, **kwargs)  # type: ignore[call-arg]
        load_tensors(model, weights)
        return model

    def save_pretrained(
        self, path: str | os.PathLike[str], max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE
    ) -> list[Path]:
        """Write ``config.json`` and the canonical ``model.safetensors`` (PyTorch names and layout), sharded above
        ``max_shard_size``; the PyTorch and Flax backends read the directory unchanged."""
        config: WhisperConfig = self.config  # type: ignore[attr-defined]
        config.architectures = [architecture_name(self)]
        config.torch_dtype = "float32"  # Keras keeps float32 variables, also under a mixed-precision policy
        return pretrained.save_pretrained(path, config, canonical_state_dict(self), self.head, max_shard_size)


# --- serving -------------------------------------------------------------------------------------------------------
def _stack(cache: Any, index: int) -> tf.Tensor:
    return tf.stack([layer[index] for layer in cache])  # (layers, batch, heads, time, head_dim)


def _unstacked(self_k: tf.Tensor, self_v: tf.Tensor, cross_k: tf.Tensor, cross_v: tf.Tensor) -> tuple[Any, ...]:
    """Four (layers, ...) arrays as the model's per-layer ``(self_k, self_v, cross_k, cross_v)`` cache."""
    return tuple(zip(tf.unstack(self_k), tf.unstack(self_v), tf.unstack(cross_k), tf.unstack(cross_v)))


class _ServingShapes(NamedTuple):
    """The static shapes of the exported signatures."""

    features: tuple[int, ...]  # (batch, n_mels, frames)
    states: tuple[int, ...]  # (batch, positions, d_model)
    cache: tuple[int, ...]  # (layers, batch, heads, max_length, head_dim)
    cross: tuple[int, ...]  # (layers, batch, heads, positions, head_dim)
    dtype: tf.DType


def _serving_shapes(model: Any, batch_size: int, max_length: int) -> _ServingShapes:
    config: WhisperConfig = model.config
    positions, head_dim = config.max_source_positions, config.d_model // config.decoder_attention_heads
    heads_of = (config.decoder_layers, batch_size, config.decoder_attention_heads)
    return _ServingShapes(
        features=(batch_size, config.num_mel_bins, expected_num_frames(config)),
        states=(batch_size, positions, config.d_model),
        cache=(*heads_of, max_length, head_dim),
        cross=(*heads_of, positions, head_dim),
        dtype=tf.as_dtype(model.compute_dtype),
    )


def _encode_signature(model: Any, shapes: _ServingShapes, max_length: int) -> Any:
    """``encode(input_features)``: the encoder states and the initial cache. The cross pairs come from one decoder
    pass over a placeholder token at position 0; the self-attention entry it writes is overwritten by the first
    real step, which also writes position 0."""
    batch_size = shapes.features[0]

    @tf.function(input_signature=[tf.TensorSpec(shapes.features, tf.float32, "input_features")], jit_compile=True)
    def encode(input_features: tf.Tensor) -> dict[str, tf.Tensor]:
        states = model.get_encoder()(input_features).last_hidden_state
        out = model(
            encoder_outputs=(states,),
            decoder_input_ids=tf.fill((batch_size, 1), model.config.decoder_start_token_id),
            past_key_values=model.get_decoder().init_cache(batch_size, max_length),
            cache_position=tf.zeros((1,), tf.int32),
        )
        zeros = tf.zeros(shapes.cache, shapes.dtype)
        cache = out.past_key_values
        return {"encoder_hidden_states": states, "self_k": zeros, "self_v": zeros,
                "cross_k": _stack(cache, 2), "cross_v": _stack(cache, 3)}  # fmt: skip

    return encode


def _decode_step_signature(model: Any, shapes: _ServingShapes) -> Any:
    """``decode_step(decoder_input_ids, cache_position, encoder_hidden_states, self_k, self_v, cross_k, cross_v)``:
    the logits and the updated self-attention pairs."""
    cache_specs = [tf.TensorSpec(shapes.cache, shapes.dtype, name) for name in ("self_k", "self_v")]
    cross_specs = [tf.TensorSpec(shapes.cross, shapes.dtype, name) for name in ("cross_k", "cross_v")]
    signature = [
        tf.TensorSpec((shapes.features[0], 1), tf.int32, "decoder_input_ids"),
        tf.TensorSpec((1,), tf.int32, "cache_position"),
        tf.TensorSpec(shapes.states, shapes.dtype, "encoder_hidden_states"),
        *cache_specs,
        *cross_specs,
    ]

    @tf.function(input_signature=signature, jit_compile=True)
    def decode_step(
        decoder_input_ids: tf.Tensor, cache_position: tf.Tensor, encoder_hidden_states: tf.Tensor,
        self_k: tf.Tensor, self_v: tf.Tensor, cross_k: tf.Tensor, cross_v: tf.Tensor,
    ) -> dict[str, tf.Tensor]:  # fmt: skip
        out = model(
            encoder_outputs=(encoder_hidden_states,),
            decoder_input_ids=decoder_input_ids,
            past_key_values=_unstacked(self_k, self_v, cross_k, cross_v),
            cache_position=cache_position,
        )
        cache = out.past_key_values
        return {"logits": out.logits, "self_k": _stack(cache, 0), "self_v": _stack(cache, 1)}

    return decode_step


def export_saved_model(
    model: Any, directory: str | os.PathLike[str], batch_size: int = 1, max_length: int | None = None
) -> Path:
    """Save ``model`` (a ``TFWhisperForConditionalGeneration``) as a TensorFlow SavedModel with two signatures,
    both XLA-compiled with static shapes, for greedy or sampled decoding with a static cache:

    - ``encode(input_features)`` (batch, n_mels, frames) -> ``encoder_hidden_states`` and the initial cache
      ``self_k, self_v`` (zeros) and ``cross_k, cross_v`` (the audio's keys and values), each
      (layers, batch, heads, time, head_dim);
    - ``decode_step(decoder_input_ids (batch, 1), cache_position (1,), encoder_hidden_states, self_k, self_v,
      cross_k, cross_v)`` -> ``logits`` (batch, 1, vocab) and the updated ``self_k, self_v``.
    """
    max_length = model.config.max_target_positions if max_length is None else max_length
    shapes = _serving_shapes(model, batch_size, max_length)
    encode = _encode_signature(model, shapes, max_length)
    decode_step = _decode_step_signature(model, shapes)
    module = tf.Module()
    # The TensorFlow variables behind the Keras ones; the Keras model itself is left out, since TensorFlow would
    # trace Keras' default serving function for it, which needs input shapes our models build without.
    module.weights = [variable.value for variable in model.weights]
    module.encode = encode
    module.decode_step = decode_step
    directory = Path(directory)
    tf.saved_model.save(module, str(directory), signatures={"encode": encode, "decode_step": decode_step})
    return directory
