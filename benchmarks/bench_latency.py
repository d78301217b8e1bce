"""First-call latency of the compiled paths (case 6): the first call, compilation included, against the
steady-state call of the same function, batch 1, on the real tiny.en weights in float32.

- ``tf-xla/encoder``: the encoder inside ``tf.function(jit_compile=True)``;
- ``tf-xla/forward``: the whole model (encoder and decoder over the four start tokens) the same way;
- ``flax/jit_encode``: ``jit_encode(params, features)``;
- ``flax/jit_decode_step``: two decoding steps from a fresh static cache (position 0, which also fills the
  cross-attention pairs, then position 1); the first two calls compile once each.

The first call is timed in a fresh process after loading the model (its median over ``--runs`` processes); the
steady state is the median of calls after one warm-up, in another process. "ours/peer" is therefore first call /
steady state: how many steady calls the compilation costs. The package does not use ``torch.compile``, so PyTorch
has no case here. No target: the figures are reported so regressions show.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from benchmarks.harness import Case, Peer, Run, Settings, model_dir, speech_features
from whisper_multi.backends import model_class

START_TOKENS = [50257, 50362]  # tiny.en: <|startoftranscript|> <|notimestamps|>


def _tf(path: str, settings: Settings) -> Callable[[], object]:
    import tensorflow as tf

    model = model_class("tf").from_pretrained(model_dir())
    features = tf.constant(speech_features(1))
    if path == "encoder":
        encoder = model.get_encoder()
        run = tf.function(lambda x: encoder(x).last_hidden_state, jit_compile=True)
        return lambda: run(features).numpy()
    ids = tf.constant([START_TOKENS])
    forward = tf.function(lambda x, t: model(input_features=x, decoder_input_ids=t).logits, jit_compile=True)
    return lambda: forward(features, ids).numpy()


def _flax(path: str, settings: Settings) -> Callable[[], object]:
    import jax.numpy as jnp

    model = model_class("flax").from_pretrained(model_dir())
    features, params = jnp.asarray(speech_features(1)), model.params
    if path == "jit_encode":
        encode = model.jit_encode
        return lambda: encode(params, features).block_until_ready()
    states = model.encode(features).last_hidden_state  # eager: the decode step's compilation is what is measured
    cache, step = model.init_cache(1, 448), model.jit_decode_step
    first, second = (jnp.asarray([[token]], dtype=jnp.int32) for token in START_TOKENS)

    def two_steps() -> object:
        logits, filled = step(params, first, cache, states, jnp.asarray([0], dtype=jnp.int32))
        logits, _ = step(params, second, filled, states, jnp.asarray([1], dtype=jnp.int32))
        return logits.block_until_ready()

    return two_steps


def cases() -> list[Case]:
    result = []
    for name, setup in [
        ("tf-xla/encoder", partial(_tf, "encoder")),
        ("tf-xla/forward", partial(_tf, "forward")),
        ("flax/jit_encode", partial(_flax, "jit_encode")),
        ("flax/jit_decode_step", partial(_flax, "jit_decode_step")),
    ]:
        first = Run(f"whisper_multi {name} first call", setup, first_call=True)
        steady = Peer(Run("steady-state call (ours)", setup))
        result.append(Case(f"latency/{name}", "latency", first, (steady,)))
    return result
