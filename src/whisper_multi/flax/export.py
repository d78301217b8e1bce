"""The Flax artifact of the whole greedy decoding: ``jax.export``'s serialized ``Exported`` (StableHLO).

The function exported is the encoder, then the core's greedy search (``decoding.search``) for the export's plan and
fixed prefix, then the sequences cut after ``<|endoftext|>`` (``search_sequences``): ``input_features`` float32
(batch, n_mels, 3000) -> sequences int32 (batch, max_length). The parameters are constants of the module, so
``jax.export.deserialize(data).call(features)`` needs jax alone: no flax, no whisper_multi.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from whisper_multi.decoding.options import DecodingPlan
from whisper_multi.decoding.search import search_sequences
from whisper_multi.errors import InputError
from whisper_multi.flax.generation import JaxSeam
from whisper_multi.modeling.utils import expected_num_frames

JAX_FILE = "model.jax"


def decoding_function(model: Any, plan: DecodingPlan, prefix: np.ndarray) -> Any:
    """``features -> sequences`` with the model's parameters closed over (constants once exported)."""
    seam = JaxSeam(model)
    params = model.params

    def decode(input_features: jax.Array) -> jax.Array:
        embedding = params["model"]["decoder"]["embed_tokens"]["embedding"]
        # The seam's traced parameters; the projection transposed in the graph, so the file holds the embedding once.
        seam.params, seam.projection = params, jnp.transpose(embedding)
        try:
            states = model.module.apply({"params": params}, input_features, method=model.module.encode)
            return search_sequences(seam, plan, jnp.asarray(prefix), states.last_hidden_state, jax.random.PRNGKey(0))
        finally:
            seam.params = seam.projection = None

    return decode


def exported_bytes(model: Any, plan: DecodingPlan, prefix: np.ndarray) -> bytes:
    shape = (prefix.shape[0], model.config.num_mel_bins, expected_num_frames(model.config))
    exported = jax.export.export(jax.jit(decoding_function(model, plan, prefix)))(
        jax.ShapeDtypeStruct(shape, jnp.float32)
    )
    return bytes(exported.serialize())


def write(model: Any, plan: DecodingPlan, prefix: np.ndarray, options: Any, directory: Path) -> None:
    """Write the artifact of ``options.format`` into ``directory`` (the export's staging folder)."""
    if options.format != "jax":
        raise InputError(f"format {options.format!r} is not written by Flax; expected jax")
    (directory / JAX_FILE).write_bytes(exported_bytes(model, plan, prefix))
