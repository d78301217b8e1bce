"""The packed one-token decoding step of the PyTorch ``generate`` loop (``whisper_multi.pt.decode_step``).

Its reference is the model's own ``forward`` over the same static cache: the same arithmetic in another layout, so
the two agree to float32 round-off (the products are summed in another order); bounds are stated per test.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from whisper_multi.configuration import WhisperConfig  # noqa: E402
from whisper_multi.pt import WhisperForConditionalGeneration  # noqa: E402
from whisper_multi.pt.decode_step import (  # noqa: E402
    PackedDecoder,
    apply_linear,
    contiguous_cross_pairs,
    pack_linear,
)

ROWS, PREFIX, STEPS = 3, 3, 5
VOCAB = 51865  # odd: the vocabulary matrix does not split into equal slices (the packing keeps one)


def small_model(seed: int = 0, **overrides) -> WhisperForConditionalGeneration:
    fields = dict(
        d_model=96,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=160,
        decoder_ffn_dim=160,
        max_source_positions=12,
        max_target_positions=24,
        vocab_size=VOCAB,
    )
    torch.manual_seed(seed)
    return WhisperForConditionalGeneration(WhisperConfig(**{**fields, **overrides})).eval()


@pytest.mark.parametrize("chunks", [1, 2, 3])
@pytest.mark.parametrize(("in_features", "out_features", "bias"), [(96, 96, True), (96, 1001, False), (160, 96, True)])
def test_a_packed_matrix_multiplies_as_linear_does(chunks, in_features, out_features, bias):
    generator = torch.Generator().manual_seed(chunks)
    weight = torch.randn(out_features, in_features, generator=generator)
    b = torch.randn(out_features, generator=generator) if bias else None
    x = torch.randn(ROWS, in_features, generator=generator)
    packed = pack_linear(weight, b, chunks)
    expected_chunks = chunks if out_features % chunks == 0 else 1
    assert packed[0].shape == (expected_chunks, in_features, out_features // expected_chunks)
    got = apply_linear(x, packed)
    reference = (x.double() @ weight.double().T + (0 if b is None else b.double())).float()
    # One float32 dot product of in_features terms: |error| <= in_features * 2^-24 * sum|x w|, well under 1e-4 here.
    np.testing.assert_allclose(got.numpy(), reference.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(got.numpy(), torch.nn.functional.linear(x, weight, b).numpy(), rtol=0, atol=1e-4)


def _prefill(model, tokens, audio):
    cache = model.init_cache(tokens.shape[0], max_length=PREFIX + STEPS)
    outputs = model(
        encoder_outputs=(audio,),
        decoder_input_ids=tokens,
        past_key_values=cache,
        cache_position=torch.arange(tokens.shape[1]),
        use_cache=True,
    )
    return outputs.past_key_values


@pytest.mark.parametrize("threads", [1, 2])
def test_packed_steps_give_the_forward_logits_and_cache(threads):
    model = small_model()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        packed = PackedDecoder.current(model, None)
    finally:
        torch.set_num_threads(previous)
    generator = torch.Generator().manual_seed(1)
    audio = torch.randn(ROWS, 12, 96, generator=generator)
    prefix = torch.randint(0, VOCAB, (ROWS, PREFIX), generator=generator)
    with torch.no_grad():
        reference_cache = _prefill(model, prefix, audio)
        packed_cache = contiguous_cross_pairs(_prefill(model, prefix, audio))
        for step in range(STEPS):
            position = PREFIX + step
            tokens = torch.randint(0, VOCAB, (ROWS, 1), generator=generator)
            expected = model(
                encoder_outputs=(audio,),
                decoder_input_ids=tokens,
                past_key_values=reference_cache,
                cache_position=torch.tensor([position]),
                use_cache=True,
            )
            reference_cache = expected.past_key_values
            logits, packed_cache = packed.step(tokens.to(torch.int32), packed_cache, position)
            assert logits.shape == (ROWS, 1, VOCAB)
            # float32 round-off of two summation orders through 2 layers; the logits are O(1) here.
            np.testing.assert_allclose(logits.numpy(), expected.logits.numpy(), rtol=0, atol=2e-5)
            for ours, theirs in zip(packed_cache, reference_cache):
                for ours_pair, theirs_pair in zip(ours, theirs):
                    np.testing.assert_allclose(ours_pair.numpy(), theirs_pair.numpy(), rtol=0, atol=2e-5)


def test_the_packing_follows_weights_changed_in_place():
    model = small_model()
    first = PackedDecoder.current(model, None)
    assert PackedDecoder.current(model, first) is first  # unchanged weights: the same packing is kept
    with torch.no_grad():
        model.model.decoder.layers[1].fc2.weight.mul_(2.0)
    second = PackedDecoder.current(model, first)
    assert second is not first
    fc2 = model.model.decoder.layers[1].fc2
    x = torch.randn(2, fc2.in_features)
    np.testing.assert_allclose(
        apply_linear(x, second.layers[1].fc2).numpy(), fc2(x).detach().numpy(), rtol=0, atol=1e-4
    )


def test_contiguous_cross_pairs_keep_values_and_leave_missing_pairs():
    k = torch.randn(1, 4, 6, 8).transpose(2, 3)  # a transposed view, as the prefill leaves it
    cache = ((torch.zeros(1), torch.zeros(1), k, k), (torch.zeros(1), torch.zeros(1), None, None))
    out = contiguous_cross_pairs(cache)
    assert out[0][2].is_contiguous() and torch.equal(out[0][2], k)
    assert out[1][2] is None


def test_generate_uses_the_packed_step_and_finds_the_forward_path_tokens():
    """Greedy and beam tokens of the packed eager loop equal those of a seam that runs the model's decoder at every
    step (the compiled path's arithmetic, here without torch.compile)."""
    from whisper_multi.decoding import generate as core
    from whisper_multi.pt.generation import TorchBackend

    model = small_model(seed=3)
    features = np.random.default_rng(4).standard_normal((2, 80, 24)).astype(np.float32)
    packed, forward = TorchBackend(model), TorchBackend(model)
    forward.seam.init_cache = model.init_cache  # never packs: every step runs the model's decoder
    for num_beams in (1, 3):
        with torch.no_grad():
            a = core.generate(packed, model, features, rng=0, num_beams=num_beams, max_new_tokens=8)
            b = core.generate(forward, model, features, rng=0, num_beams=num_beams, max_new_tokens=8)
        assert a.shape[1] > 0 and torch.equal(a, b)
    assert packed.seam._packed is not None and forward.seam._packed is None
