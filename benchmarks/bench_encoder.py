"""Encoder forward speed and peak memory (case 2): each backend against Transformers 4.57 in the same framework,
batch 1 and 8, on the real tiny.en weights in float32.

Input: the log-mel of tests/fixtures/audio/speech_en_25s.wav padded to 30 s, (batch, 80, 3000), computed by our
numpy extractor and handed to both sides already in memory as the framework's own tensor. The output is forced
(``.numpy()`` / ``block_until_ready``) inside the timed call.

- ``pt``: ``model.get_encoder()(features)`` under ``torch.inference_mode`` (eager), against Transformers' PyTorch
  model the same way;
- ``tf-xla``: the encoder inside ``tf.function(jit_compile=True)``, against Transformers' TF encoder the same way;
- ``tf-eager``: the encoder called eagerly, both sides;
- ``flax-jit``: our ``jit_encode(params, features)``, against ``jax.jit`` of Transformers' ``encode``.

Compilation happens in the warm-up call (bench_latency measures it). Peak RSS is the measured process's high-water
mark (framework, weights and activations), ours and Transformers' in separate processes. Target (issue 11): peak
memory no higher than Transformers' for the same case. Transformers runs in the peers' environment, whose
TensorFlow (2.20) and jax (0.5) are older than ours.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from benchmarks.harness import Case, Peer, Run, Settings, Unavailable, converted_model, model_dir, speech_features
from whisper_multi.backends import model_class

BATCHES = (1, 8)
SMOKE_BATCH = 2
VARIANTS = ("pt", "tf-xla", "tf-eager", "flax-jit")  # a backend and how its encoder runs


def _batch(batch: int, settings: Settings) -> int:
    return min(batch, SMOKE_BATCH) if settings.smoke else batch


def _transformers_dir() -> str:
    return str(converted_model("hf"))


# --- PyTorch ---------------------------------------------------------------------------------------------------------
def _pt_call(encoder: object, features: object) -> Callable[[], object]:
    import torch

    def call() -> object:
        with torch.inference_mode():
            return encoder(features).last_hidden_state  # type: ignore[operator]

    return call


def _ours_pt(batch: int, settings: Settings) -> Callable[[], object]:
    import torch

    model = model_class("pt").from_pretrained(model_dir()).eval()
    return _pt_call(model.get_encoder(), torch.from_numpy(speech_features(_batch(batch, settings))))


def _transformers_pt(batch: int, settings: Settings) -> Callable[[], object]:
    try:
        import torch
        from transformers import WhisperForConditionalGeneration
    except ImportError as error:
        raise Unavailable(f"Transformers (PyTorch) is not installed: {error}") from error
    model = WhisperForConditionalGeneration.from_pretrained(_transformers_dir()).eval()
    return _pt_call(model.get_encoder(), torch.from_numpy(speech_features(_batch(batch, settings))))


# --- TensorFlow ------------------------------------------------------------------------------------------------------
def _tf_call(encoder: object, features: object, xla: bool) -> Callable[[], object]:
    import tensorflow as tf

    def forward(x: tf.Tensor) -> tf.Tensor:
        return encoder(x).last_hidden_state  # type: ignore[operator]

    run = tf.function(forward, jit_compile=True) if xla else forward
    tensor = tf.constant(features)
    return lambda: run(tensor).numpy()


def _ours_tf(batch: int, xla: bool, settings: Settings) -> Callable[[], object]:
    model = model_class("tf").from_pretrained(model_dir())
    return _tf_call(model.get_encoder(), speech_features(_batch(batch, settings)), xla)


def _transformers_tf(batch: int, xla: bool, settings: Settings) -> Callable[[], object]:
    try:
        from transformers import TFWhisperForConditionalGeneration
    except ImportError as error:
        raise Unavailable(f"Transformers (TensorFlow) is not installed: {error}") from error
    model = TFWhisperForConditionalGeneration.from_pretrained(_transformers_dir())
    return _tf_call(model.get_encoder(), speech_features(_batch(batch, settings)), xla)


# --- Flax ------------------------------------------------------------------------------------------------------------
def _ours_flax(batch: int, settings: Settings) -> Callable[[], object]:
    import jax.numpy as jnp

    model = model_class("flax").from_pretrained(model_dir())
    features, encode, params = jnp.asarray(speech_features(_batch(batch, settings))), model.jit_encode, model.params
    return lambda: encode(params, features).block_until_ready()


def _transformers_flax(batch: int, settings: Settings) -> Callable[[], object]:
    try:
        import jax
        import jax.numpy as jnp
        from transformers import FlaxWhisperForConditionalGeneration
    except ImportError as error:
        raise Unavailable(f"Transformers (Flax) is not installed: {error}") from error
    model = FlaxWhisperForConditionalGeneration.from_pretrained(_transformers_dir())

    @jax.jit
    def encode(params: dict, features: jax.Array) -> jax.Array:
        return model.encode(input_features=features, params=params).last_hidden_state

    features, params = jnp.asarray(speech_features(_batch(batch, settings))), model.params
    return lambda: encode(params, features).block_until_ready()


def _runs(backend: str, batch: int) -> tuple[Run, Run]:
    """(ours, Transformers') for one backend and batch size."""
    if backend == "pt":
        ours, theirs = partial(_ours_pt, batch), partial(_transformers_pt, batch)
    elif backend.startswith("tf"):
        xla = backend == "tf-xla"
        ours, theirs = partial(_ours_tf, batch, xla), partial(_transformers_tf, batch, xla)
    else:
        ours, theirs = partial(_ours_flax, batch), partial(_transformers_flax, batch)
    return Run(f"whisper_multi {backend}", ours), Run(f"transformers {backend}", theirs, env="peers")


def cases() -> list[Case]:
    result = []
    for backend in VARIANTS:
        for batch in BATCHES:
            ours, theirs = _runs(backend, batch)
            peer = Peer(theirs, memory_target=1.0)
            result.append(Case(f"encoder/{backend}/b{batch}", "encoder", ours, (peer,), report_peak_rss=True))
    return result
