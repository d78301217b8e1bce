"""What only the PyTorch models have: attention implementations, the decoder alone, the exact loss, torch
optimizers, SpecAugment and LayerDrop as torch draws them, torch dtypes and pickles, real tiny.en weights.

What the three backends share is tested once for all of them in tests/test_models.py. The real-weight references
(tests/fixtures/pt/) come from Transformers 4.57 and openai-whisper run on the same canonical float32 tensors by
scripts/make_pt_fixtures.py.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conformance.configs import SMALL_VOCABULARY, random_config, random_features, random_token_ids  # noqa: E402

from conftest import float32_pair_bound, load_tiny_en  # noqa: E402
from whisper_multi.errors import InputError  # noqa: E402
from whisper_multi.modeling.utils import compute_mask_indices, sinusoids  # noqa: E402
from whisper_multi.pt import WhisperDecoder, WhisperEncoder, WhisperForConditionalGeneration, WhisperModel  # noqa: E402

BATCH, LENGTH = 2, 5
CONFIG = random_config("tiny")
D_MODEL = CONFIG.d_model


def new_model(cls=WhisperForConditionalGeneration, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return cls(random_config("tiny", **overrides)).eval()


def features(batch: int = BATCH, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(random_features(CONFIG, batch, seed))


def token_ids(batch: int = BATCH, length: int = LENGTH, seed: int = 2) -> torch.Tensor:
    return torch.from_numpy(random_token_ids(CONFIG, batch, length, seed))


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max())


@pytest.fixture(scope="module")
def model() -> WhisperForConditionalGeneration:
    return new_model()


# --- the encoder and decoder alone ----------------------------------------------------------------------------------
def test_the_decoder_alone_gives_the_base_model_states(model):
    with torch.no_grad():
        base = WhisperModel(model.config).eval()
        base.load_state_dict(model.model.state_dict())
        hidden = base(features(), decoder_input_ids=token_ids()).last_hidden_state
        encoded = model.get_encoder()(features()).last_hidden_state
        decoded = model.get_decoder()(token_ids(), encoder_hidden_states=encoded).last_hidden_state
    assert hidden.shape == (BATCH, LENGTH, D_MODEL) and max_abs(hidden, decoded) == 0.0
    assert isinstance(model.get_encoder(), WhisperEncoder) and isinstance(model.get_decoder(), WhisperDecoder)


# --- attention paths -----------------------------------------------------------------------------------------------
def test_fused_and_explicit_attention_agree():
    sdpa = new_model()
    eager = new_model()
    eager.set_attn_implementation("eager")
    padding = torch.ones(BATCH, LENGTH, dtype=torch.long)
    padding[1, :2] = 0  # left padding in the second row
    with torch.no_grad():
        for mask in (None, padding):
            a = sdpa(features(), decoder_input_ids=token_ids(), decoder_attention_mask=mask)
            b = eager(features(), decoder_input_ids=token_ids(), decoder_attention_mask=mask)
            assert max_abs(a.logits, b.logits) <= 1e-5
            assert max_abs(a.encoder_last_hidden_state, b.encoder_last_hidden_state) <= 1e-5
        # Asking for the weights takes the explicit path and leaves the other outputs unchanged.
        c = sdpa(features(), decoder_input_ids=token_ids(), output_attentions=True)
        d = sdpa(features(), decoder_input_ids=token_ids())
    assert c.decoder_attentions is not None and max_abs(d.logits, c.logits) <= 1e-5


# --- training ------------------------------------------------------------------------------------------------------
def test_the_loss_over_a_whole_vocabulary_is_as_exact_as_float32_allows():
    """Confident logits over 51,865 tokens, as a trained model gives: F.cross_entropy's float32 CPU log_softmax is
    6.9e-6 off the float64 loss here (and 1.2e-5 on the real base checkpoint); logsumexp is within 1e-7."""
    from whisper_multi.pt.modeling_whisper import _cross_entropy

    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, (23, 51865)).astype(np.float32)
    labels = rng.integers(0, 51865, 23)
    logits[np.arange(23), labels] += 15.0
    labels[-2:] = -100
    wide, kept = logits.astype(np.float64), labels != -100
    log_sum = np.log(np.exp(wide - wide.max(-1, keepdims=True)).sum(-1)) + wide.max(-1)
    expected = np.mean((log_sum - wide[np.arange(23), np.where(kept, labels, 0)])[kept])
    found = _cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), ignore_index=-100)
    assert abs(float(found) - expected) < 2e-7
    assert torch.isnan(_cross_entropy(torch.from_numpy(logits[:2]), torch.full((2,), -100), ignore_index=-100))


def test_a_few_optimizer_steps_lower_the_loss():
    model = new_model(**SMALL_VOCABULARY).train()
    labels = token_ids(seed=5) % 500
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = model(features(), labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


def test_spec_augment_masks_features_only_when_training_and_enabled():
    spec = {
        "apply_spec_augment": True,
        "mask_time_prob": 0.5,
        "mask_time_length": 4,
        "mask_feature_prob": 0.2,
        "mask_feature_length": 8,
    }
    augmented = new_model(WhisperModel, **spec)
    plain = new_model(WhisperModel)
    x = features()
    assert torch.equal(augmented._mask_input_features(x), x)  # eval: untouched
    augmented.train()
    torch.manual_seed(7)
    masked = augmented._mask_input_features(x)
    zero_frames = (masked == 0).all(dim=1)  # (batch, frames)
    zero_bins = (masked == 0).all(dim=2)  # (batch, mels)
    assert zero_frames.any() and zero_bins.any() and torch.equal(x, features())  # the input is not modified
    assert torch.equal(masked[masked != 0], x[masked != 0])
    torch.manual_seed(7)
    assert torch.equal(augmented._mask_input_features(x), masked)  # torch's seed reproduces the masks
    assert torch.equal(plain.train()._mask_input_features(x), x)  # apply_spec_augment=False


def test_a_dropped_layer_leaves_no_attention_weights():
    dropping = new_model(encoder_layerdrop=1.0, decoder_layerdrop=1.0).train()
    with torch.no_grad():
        out = dropping(features(), decoder_input_ids=token_ids(), output_attentions=True)
    assert out.encoder_attentions == (None, None) and out.decoder_attentions == ()


def test_compute_mask_indices_spans():
    rng = np.random.default_rng(0)
    mask = compute_mask_indices((4, 100), mask_prob=0.3, mask_length=5, min_masks=2, rng=rng)
    assert mask.shape == (4, 100) and mask.dtype == bool
    assert all(10 <= row.sum() <= 35 for row in mask)  # 6 spans of 5, overlaps allowed
    short = compute_mask_indices(
        (2, 20), 0.0, 5, min_masks=2, attention_mask=np.array([[1] * 20, [1] * 8 + [0] * 12]), rng=rng
    )
    assert short[1, 8:].sum() == 0 and short[0].sum() >= 5
    with pytest.raises(InputError, match="mask_length"):
        compute_mask_indices((1, 3), 0.5, 5)


def test_sinusoids_follow_the_formula():
    table = sinusoids(16, 8)
    increment = np.log(10000) / 3
    assert table.shape == (16, 8)
    assert (
        abs(table[5, 1] - np.sin(5 * np.exp(-increment))) < 1e-6
        and abs(table[5, 6] - np.cos(5 * np.exp(-2 * increment))) < 1e-6
    )
    assert np.array_equal(new_model().model.encoder.embed_positions.weight.numpy(), sinusoids(16, D_MODEL))


# --- loading and saving --------------------------------------------------------------------------------------------
def test_loaded_models_are_tied_in_eval_mode_and_read_pickles(model, tmp_path):
    model.save_pretrained(tmp_path / "bin", safe_serialization=False)  # Transformers' pickle format
    loaded = WhisperForConditionalGeneration.from_pretrained(tmp_path / "bin")
    assert not loaded.training and loaded.proj_out.weight is loaded.model.decoder.embed_tokens.weight
    assert all(torch.equal(t, loaded.state_dict()[n]) for n, t in model.state_dict().items())


def test_dtypes(model, tmp_path):
    model.save_pretrained(tmp_path)
    half = WhisperForConditionalGeneration.from_pretrained(tmp_path, torch_dtype=torch.float16)
    assert half.dtype == torch.float16 and half.proj_out.weight is half.model.decoder.embed_tokens.weight
    bf16 = WhisperForConditionalGeneration.from_pretrained(tmp_path, torch_dtype="bfloat16")
    with torch.no_grad():
        reference = model(features(), decoder_input_ids=token_ids()).logits
        logits = bf16(features(), decoder_input_ids=token_ids()).logits
    assert logits.dtype == torch.bfloat16 and max_abs(logits, reference) < 0.05
    half_again = new_model().half()
    half_again.save_pretrained(tmp_path / "half")
    assert WhisperForConditionalGeneration.from_pretrained(tmp_path / "half", torch_dtype="auto").dtype == torch.float16


# --- real weights: tiny.en -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_en():
    _, model, reference = load_tiny_en(WhisperForConditionalGeneration.from_ct2)
    with torch.no_grad():
        encoder_outputs = model.get_encoder()(torch.from_numpy(reference["input_features"]))
    return model, reference, encoder_outputs


@pytest.mark.slow
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_tiny_en_teacher_forced_logits_match_transformers_within_float32_error(tiny_en, implementation):
    model, reference, encoder_outputs = tiny_en
    model.set_attn_implementation(implementation)
    try:
        with torch.no_grad():
            logits = model(
                encoder_outputs=encoder_outputs, decoder_input_ids=torch.from_numpy(reference["decoder_input_ids"])
            ).logits
    finally:
        model.set_attn_implementation("sdpa")
    difference = np.abs(logits[0].numpy()[:, reference["vocab_ids"]] - reference["logits"]).max()
    # The fixture was computed on another CPU: the two sides round differently.
    bound = float32_pair_bound(reference["logits"])
    assert difference <= bound, f"max abs logits difference {difference:.3g} > {bound:.3g}"


@pytest.mark.slow
@pytest.mark.parametrize("static", [False, True])
def test_tiny_en_greedy_decoding_with_the_cache_matches_the_reference_tokens(tiny_en, static):
    model, reference, encoder_outputs = tiny_en
    expected = reference["greedy_tokens"].tolist()
    tokens = [50257, 50362]  # <|startoftranscript|><|notimestamps|>
    cache = model.init_cache(1, max_length=len(expected) + 1) if static else None
    step_ids = torch.tensor([tokens])
    with torch.no_grad():
        while len(tokens) < len(expected):
            position = torch.arange(len(tokens) - step_ids.shape[1], len(tokens)) if static else None
            out = model(
                encoder_outputs=encoder_outputs,
                decoder_input_ids=step_ids,
                past_key_values=cache,
                cache_position=position,
            )
            cache = out.past_key_values
            tokens.append(int(out.logits[0, -1].argmax()))
            step_ids = torch.tensor([[tokens[-1]]])
            if tokens[-1] == 50256:
                break
    assert tokens == expected
