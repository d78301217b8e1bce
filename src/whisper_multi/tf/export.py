"""TensorFlow artifacts of the whole greedy decoding: a SavedModel and a TFLite file.

The function traced into the artifact is the encoder, then the core's greedy search (``decoding.search``) for the
export's plan and fixed prefix, then the sequences cut after ``<|endoftext|>`` (``search_sequences``): one
signature, ``serving_default(input_features: float32[batch, n_mels, 3000]) -> {"sequences": int32[batch,
max_length]}``, each row the prefix, the generated tokens and ``<|endoftext|>``, padded with ``pad_token_id``. The
module holds the model's variables and not the Keras model, so loading needs TensorFlow only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from whisper_multi.decoding.options import DecodingPlan
from whisper_multi.decoding.search import search_sequences
from whisper_multi.errors import InputError
from whisper_multi.modeling.utils import expected_num_frames
from whisper_multi.tf.generation import TFSeam

TFLITE_FILE = "model.tflite"


class SharedTableSeam(TFSeam):
    """The seam of the int8 TFLite file: the token lookup and the vocabulary projection read one constant table.

    The converter quantizes a constant per use: a Gather table per tensor, FullyConnected weights per output channel,
    so the tied embedding would be stored twice. Here the table is the embedding with every row divided by its largest
    magnitude, and the row scales multiply the looked-up rows and the logits; the projection is a batched matmul with
    a rank-3 table (a rank-2 one becomes a FullyConnected), which the converter quantizes per tensor like the Gather,
    so both read one int8 buffer, and each vocabulary row still keeps its own scale, as per-channel weights would.
    """

    def __init__(self, model: Any):
        super().__init__(model)
        embeddings = np.asarray(model.model.decoder.embed_tokens.embeddings, dtype=np.float32)
        scales = np.abs(embeddings).max(axis=1)
        scales = np.where(scales > 0, scales, 1.0).astype(np.float32)  # an all-zero row stays zero
        self.table = tf.constant(embeddings / scales[:, None])  # (vocab, d_model), each row's largest magnitude 1
        self.scales = tf.constant(scales)

    def _token_inputs(self, tokens: Any) -> dict[str, Any]:
        rows = tf.gather(self.table, tokens) * tf.gather(self.scales, tokens)[..., None]
        return {"inputs_embeds": tf.cast(rows, self.model.compute_dtype)}

    def _logits(self, hidden: Any) -> Any:
        hidden = tf.cast(hidden, tf.float32)  # (batch, time, d_model)
        return tf.matmul(hidden, self.table[None], transpose_b=True) * self.scales  # rank 3: a BatchMatMul


def decoding_function(
    model: Any, plan: DecodingPlan, prefix: np.ndarray, jit_compile: bool, seam: TFSeam | None = None
) -> tf.types.experimental.GenericFunction:
    """``features -> {"sequences": ...}`` as a ``tf.function`` with the artifact's input signature; the decoder
    steps through ``seam`` (a ``TFSeam`` of ``model`` by default)."""
    seam = TFSeam(model) if seam is None else seam
    batch = prefix.shape[0]

    def decode(input_features: tf.Tensor) -> dict[str, tf.Tensor]:
        states = model.model.encoder(input_features, return_dict=True).last_hidden_state
        return {"sequences": search_sequences(seam, plan, tf.constant(prefix), states, tf.constant(0, tf.int32))}

    signature = [
        tf.TensorSpec(
            (batch, model.config.num_mel_bins, expected_num_frames(model.config)), tf.float32, name="input_features"
        )
    ]
    return tf.function(decode, input_signature=signature, jit_compile=jit_compile)


def _module(model: Any, function: Any) -> tf.Module:
    """A module that tracks the model's variables (the tf.Variables under Keras' variables) and the function."""
    module = tf.Module()
    module.model_variables = [variable.value for variable in model.weights]
    module.serving_default = function
    return module


def write_savedmodel(model: Any, plan: DecodingPlan, prefix: np.ndarray, directory: Path) -> None:
    function = decoding_function(model, plan, prefix, jit_compile=True)
    module = _module(model, function)
    tf.saved_model.save(module, str(directory), signatures={"serving_default": function})


def tflite_bytes(model: Any, plan: DecodingPlan, prefix: np.ndarray, quantize: str | None) -> bytes:
    """The decoding function converted by TensorFlow's TFLite converter (built-in ops only, so LiteRT runs it):
    float32; with ``quantize="float16"`` float16 weights; with ``"int8"`` dynamic-range int8 weights, the tied token
    embedding stored once (``SharedTableSeam``)."""
    seam = SharedTableSeam(model) if quantize == "int8" else TFSeam(model)
    function = decoding_function(model, plan, prefix, jit_compile=False, seam=seam)  # the converter reads the graph
    module = _module(model, function)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # alone: dynamic-range int8 weights
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def write(model: Any, plan: DecodingPlan, prefix: np.ndarray, options: Any, directory: Path) -> None:
    """Write the artifact of ``options.format`` into ``directory`` (the export's staging folder)."""
    if options.format == "savedmodel":
        write_savedmodel(model, plan, prefix, directory)
    elif options.format == "tflite":
        (directory / TFLITE_FILE).write_bytes(tflite_bytes(model, plan, prefix, options.quantize))
    else:
        raise InputError(f"format {options.format!r} is not written by TensorFlow; expected savedmodel or tflite")
