"""PyTorch Whisper models: outputs, cache, attention paths, training, loading, input checks, real tiny.en weights.

The real-weight references (tests/fixtures/pt/) come from Transformers 4.57 and openai-whisper run on the same
canonical float32 tensors by scripts/make_pt_fixtures.py.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import save_file  # noqa: E402

from conftest import float32_pair_bound  # noqa: E402
from whisper_multi.configuration import WhisperConfig  # noqa: E402
from whisper_multi.errors import CheckpointError, InputError  # noqa: E402
from whisper_multi.modeling.utils import compute_mask_indices, shift_tokens_right, sinusoids  # noqa: E402
from whisper_multi.pt import (  # noqa: E402
    Seq2SeqLMOutput,
    WhisperDecoder,
    WhisperEncoder,
    WhisperForAudioClassification,
    WhisperForConditionalGeneration,
    WhisperModel,
)

FIXTURES = Path(__file__).parent / "fixtures" / "pt"
BATCH, LENGTH = 2, 5
D_MODEL, HEADS, LAYERS = 64, 4, 2
SOURCE_POSITIONS, TARGET_POSITIONS = 16, 32  # 32 mel frames keep the random models fast
VOCAB = 51865


def tiny_config(**overrides) -> WhisperConfig:
    fields = {
        "d_model": D_MODEL,
        "encoder_layers": LAYERS,
        "decoder_layers": LAYERS,
        "encoder_attention_heads": HEADS,
        "decoder_attention_heads": HEADS,
        "encoder_ffn_dim": 128,
        "decoder_ffn_dim": 128,
        "max_source_positions": SOURCE_POSITIONS,
        "max_target_positions": TARGET_POSITIONS,
        "vocab_size": VOCAB,
        "num_labels": 3,
    }
    return WhisperConfig(**{**fields, **overrides})


def new_model(cls=WhisperForConditionalGeneration, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return cls(tiny_config(**overrides)).eval()


def features(batch: int = BATCH, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 80, 2 * SOURCE_POSITIONS, generator=generator)


def token_ids(batch: int = BATCH, length: int = LENGTH, seed: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50000, (batch, length), generator=generator)
    ids[:, 0] = 50257
    return ids


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max())


@pytest.fixture(scope="module")
def model() -> WhisperForConditionalGeneration:
    return new_model()


# --- outputs -------------------------------------------------------------------------------------------------------
def test_every_documented_output_has_its_shape(model):
    with torch.no_grad():
        out = model(features(), decoder_input_ids=token_ids(), output_attentions=True, output_hidden_states=True)
    head_dim = D_MODEL // HEADS
    assert isinstance(out, Seq2SeqLMOutput) and out.loss is None
    assert out.logits.shape == (BATCH, LENGTH, VOCAB)
    assert len(out.past_key_values) == LAYERS
    for self_k, self_v, cross_k, cross_v in out.past_key_values:
        assert self_k.shape == self_v.shape == (BATCH, HEADS, LENGTH, head_dim)
        assert cross_k.shape == cross_v.shape == (BATCH, HEADS, SOURCE_POSITIONS, head_dim)
    assert [h.shape for h in out.decoder_hidden_states] == [(BATCH, LENGTH, D_MODEL)] * (LAYERS + 1)
    assert [a.shape for a in out.decoder_attentions] == [(BATCH, HEADS, LENGTH, LENGTH)] * LAYERS
    assert [a.shape for a in out.cross_attentions] == [(BATCH, HEADS, LENGTH, SOURCE_POSITIONS)] * LAYERS
    assert out.encoder_last_hidden_state.shape == (BATCH, SOURCE_POSITIONS, D_MODEL)
    assert [h.shape for h in out.encoder_hidden_states] == [(BATCH, SOURCE_POSITIONS, D_MODEL)] * (LAYERS + 1)
    assert [a.shape for a in out.encoder_attentions] == [(BATCH, HEADS, SOURCE_POSITIONS, SOURCE_POSITIONS)] * LAYERS
    # The last hidden state of each stack is the one after its final layer norm.
    assert torch.equal(out.encoder_hidden_states[-1], out.encoder_last_hidden_state)
    # Causal: no weight on later positions; every row sums to one.
    upper = torch.triu(torch.ones(LENGTH, LENGTH, dtype=torch.bool), diagonal=1)
    assert float(out.decoder_attentions[0][..., upper].abs().max()) == 0.0
    assert max_abs(out.cross_attentions[1].sum(-1), torch.ones(1)) < 1e-5


def test_base_model_encoder_and_decoder_alone_agree_with_the_full_model(model):
    with torch.no_grad():
        full = model(features(), decoder_input_ids=token_ids())
        base = WhisperModel(model.config).eval()
        base.load_state_dict(model.model.state_dict())
        hidden = base(features(), decoder_input_ids=token_ids()).last_hidden_state
        encoded = model.get_encoder()(features()).last_hidden_state
        decoded = model.get_decoder()(token_ids(), encoder_hidden_states=encoded).last_hidden_state
    assert hidden.shape == (BATCH, LENGTH, D_MODEL)
    assert max_abs(hidden, decoded) == 0.0
    assert max_abs(full.logits, decoded @ model.model.decoder.embed_tokens.weight.T) < 1e-5
    assert isinstance(model.get_encoder(), WhisperEncoder) and isinstance(model.get_decoder(), WhisperDecoder)


def test_return_dict_false_gives_the_tuple_in_transformers_order(model):
    labels = token_ids(seed=3)
    with torch.no_grad():
        out = model(features(), labels=labels, output_hidden_states=True)
        tup = model(features(), labels=labels, output_hidden_states=True, return_dict=False)
    names = [
        "loss",
        "logits",
        "past_key_values",
        "decoder_hidden_states",
        "encoder_last_hidden_state",
        "encoder_hidden_states",
    ]
    assert out.keys() == names and len(tup) == len(names)
    assert torch.equal(tup[0], out.loss) and torch.equal(tup[1], out.logits) and torch.equal(out[1], out["logits"])
    assert torch.equal(tup[4], out.encoder_last_hidden_state) and out.to_tuple()[4] is out[4]
    with torch.no_grad():
        base = model.model(features(), decoder_input_ids=token_ids(), use_cache=False, return_dict=False)
    assert len(base) == 2 and base[0].shape == (BATCH, LENGTH, D_MODEL) and base[1].shape[1] == SOURCE_POSITIONS


# --- cache ---------------------------------------------------------------------------------------------------------
def test_cached_step_by_step_decoding_gives_the_full_sequence_logits(model):
    ids = token_ids(length=7)
    with torch.no_grad():
        full = model(features(), decoder_input_ids=ids).logits
        encoder_outputs = model.get_encoder()(features())
        # A prefix of three tokens, then one token at a time.
        out = model(encoder_outputs=encoder_outputs, decoder_input_ids=ids[:, :3])
        steps, cache = [out.logits], out.past_key_values
        for t in range(3, 7):
            out = model(encoder_outputs=encoder_outputs, decoder_input_ids=ids[:, t : t + 1], past_key_values=cache)
            steps.append(out.logits)
            assert out.past_key_values[0][0].shape[2] == t + 1
            assert out.past_key_values[0][2] is cache[0][2]  # cross keys are computed once and reused
            cache = out.past_key_values
    assert max_abs(torch.cat(steps, dim=1), full) <= 1e-5


def test_static_cache_gives_the_dynamic_cache_logits(model):
    ids = token_ids(length=6)
    with torch.no_grad():
        full = model(features(), decoder_input_ids=ids).logits
        encoder_outputs = model.get_encoder()(features())
        cache = model.init_cache(BATCH, max_length=TARGET_POSITIONS)
        assert cache[0][0].shape == (BATCH, HEADS, TARGET_POSITIONS, D_MODEL // HEADS) and cache[0][2] is None
        out = model(
            encoder_outputs=encoder_outputs,
            decoder_input_ids=ids[:, :2],
            past_key_values=cache,
            cache_position=torch.arange(2),
        )
        steps, cache = [out.logits], out.past_key_values
        for t in range(2, 6):
            out = model(
                encoder_outputs=encoder_outputs,
                decoder_input_ids=ids[:, t : t + 1],
                past_key_values=cache,
                cache_position=torch.tensor([t]),
            )
            steps.append(out.logits)
            assert out.past_key_values[0][0].shape[2] == TARGET_POSITIONS  # fixed shape
            cache = out.past_key_values
    assert max_abs(torch.cat(steps, dim=1), full) <= 1e-5


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


def test_decoder_padding_mask_hides_padded_keys(model):
    ids = token_ids()
    mask = torch.ones(BATCH, LENGTH, dtype=torch.long)
    mask[0, 1] = 0
    with torch.no_grad():
        out = model(features(), decoder_input_ids=ids, decoder_attention_mask=mask, output_attentions=True)
    assert float(out.decoder_attentions[0][0, :, 2:, 1].abs().max()) == 0.0
    assert float(out.decoder_attentions[0][1, :, 2:, 1].abs().min()) > 0.0


def test_head_masks_zero_exactly_the_masked_heads(model):
    head_mask = torch.ones(LAYERS, HEADS)
    head_mask[0, 1] = 0
    decoder_head_mask = torch.ones(LAYERS, HEADS)
    decoder_head_mask[1, 3] = 0
    cross_attn_head_mask = torch.ones(LAYERS, HEADS)
    cross_attn_head_mask[0, 0] = 0
    cross_attn_head_mask[1, 2] = 0
    with torch.no_grad():
        out = model(
            features(),
            decoder_input_ids=token_ids(),
            head_mask=head_mask,
            decoder_head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask,
            output_attentions=True,
        )
        plain = model(features(), decoder_input_ids=token_ids())
    for attentions, mask in (
        (out.encoder_attentions, head_mask),
        (out.decoder_attentions, decoder_head_mask),
        (out.cross_attentions, cross_attn_head_mask),
    ):
        for layer, weights in enumerate(attentions):
            per_head = weights.abs().amax(dim=(0, 2, 3))  # (heads,)
            assert torch.equal(per_head > 0, mask[layer] > 0)
    assert max_abs(out.logits, plain.logits) > 1e-4


# --- training ------------------------------------------------------------------------------------------------------
def test_loss_is_the_mean_cross_entropy_over_kept_labels(model):
    labels = token_ids(seed=4)
    labels[0, 3:] = -100
    with torch.no_grad():
        out = model(features(), labels=labels)
        shifted = torch.from_numpy(shift_tokens_right(labels.numpy(), 50256, 50257))
        by_hand_inputs = model(features(), decoder_input_ids=shifted).logits
    assert torch.equal(shifted[:, 0], torch.full((BATCH,), 50257)) and int(shifted[0, 4]) == 50256
    assert max_abs(out.logits, by_hand_inputs) == 0.0
    log_probs = torch.log_softmax(out.logits.double(), dim=-1)
    kept = labels != -100
    picked = log_probs.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    assert abs(float(out.loss) - float(-(picked[kept]).mean())) < 1e-5


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
    small_vocab = {
        "vocab_size": 500,
        "decoder_start_token_id": 1,
        "pad_token_id": 0,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "begin_suppress_tokens": None,
    }
    model = new_model(**small_vocab).train()
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


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model = new_model().train()
        if checkpointing:
            model.gradient_checkpointing_enable()
            assert model.is_gradient_checkpointing
        model(features(), labels=token_ids(seed=6)).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 40
    assert max(max_abs(grads[0][n], grads[1][n]) for n in grads[0]) <= 1e-6


def test_freeze_encoder_stops_its_gradients():
    model = new_model().train()
    model.freeze_encoder()
    model(features(), labels=token_ids()).loss.backward()
    assert all(p.grad is None for p in model.model.encoder.parameters())
    assert model.model.decoder.layers[0].fc1.weight.grad is not None


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


def test_layerdrop_applies_only_in_training():
    dropping = new_model(encoder_layerdrop=1.0, decoder_layerdrop=1.0)
    plain = new_model()
    with torch.no_grad():
        assert (
            max_abs(
                dropping(features(), decoder_input_ids=token_ids()).logits,
                plain(features(), decoder_input_ids=token_ids()).logits,
            )
            == 0.0
        )
        out = dropping.train()(features(), decoder_input_ids=token_ids(), output_attentions=True)
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


# --- audio classification ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True])
def test_audio_classification_by_hand(weighted):
    model = new_model(WhisperForAudioClassification, use_weighted_layer_sum=weighted)
    if weighted:
        with torch.no_grad():
            model.layer_weights.copy_(torch.tensor([0.5, -1.0, 2.0]))
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        out = model(features(), labels=labels)
        states = model.encoder(features(), output_hidden_states=True).hidden_states
    weights = torch.softmax(torch.tensor([0.5, -1.0, 2.0]), 0) if weighted else torch.tensor([0.0, 0.0, 1.0])
    hidden = sum(w * h for w, h in zip(weights, states))
    with torch.no_grad():
        logits = model.classifier(model.projector(hidden).mean(dim=1))
    assert out.logits.shape == (BATCH, 3) and max_abs(out.logits, logits) < 1e-5
    assert abs(float(out.loss) - float(torch.nn.functional.cross_entropy(logits, labels))) < 1e-5
    assert (model.layer_weights is not None) == weighted and (out.hidden_states is not None) == weighted


# --- loading and saving --------------------------------------------------------------------------------------------
def state_without_tied(model) -> dict:
    return {n: t for n, t in model.state_dict().items() if n != "proj_out.weight"}


def test_save_then_load_round_trip(model, tmp_path):
    files = model.save_pretrained(tmp_path / "one")
    assert [f.name for f in files] == ["config.json", "model.safetensors"]
    loaded = WhisperForConditionalGeneration.from_pretrained(tmp_path / "one")
    assert loaded.config == model.config and not loaded.training
    assert all(torch.equal(t, loaded.state_dict()[n]) for n, t in model.state_dict().items())
    assert loaded.proj_out.weight is loaded.model.decoder.embed_tokens.weight
    # Shards, then Transformers' pickle format.
    files = model.save_pretrained(tmp_path / "sharded", max_shard_size="2MB")
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2 and "proj_out.weight" not in index["weight_map"]
    model.save_pretrained(tmp_path / "bin", safe_serialization=False)
    for directory in ("sharded", "bin"):
        again = WhisperForConditionalGeneration.from_pretrained(tmp_path / directory)
        assert all(torch.equal(t, again.state_dict()[n]) for n, t in model.state_dict().items())


def test_checkpoints_load_across_model_classes(model, tmp_path):
    model.model.save_pretrained(tmp_path / "base")  # names without the "model." prefix
    full = WhisperForConditionalGeneration.from_pretrained(tmp_path / "base")
    assert torch.equal(full.model.decoder.layers[1].fc2.weight, model.model.decoder.layers[1].fc2.weight)
    model.save_pretrained(tmp_path / "full")
    base = WhisperModel.from_pretrained(tmp_path / "full")
    assert torch.equal(base.encoder.conv1.weight, model.model.encoder.conv1.weight)
    with pytest.warns(UserWarning, match="classifier.weight"):
        classifier = WhisperForAudioClassification.from_pretrained(tmp_path / "full")
    assert torch.equal(classifier.encoder.layers[0].fc1.weight, model.model.encoder.layers[0].fc1.weight)


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


@pytest.mark.parametrize("change", ["extra", "missing", "shape"])
def test_transformers_layout_state_dict_with_a_wrong_key_is_refused(model, tmp_path, change):
    state = {n: t.clone() for n, t in state_without_tied(model).items()}
    name = "model.decoder.layers.1.encoder_attn.v_proj.bias"
    if change == "extra":
        state["model.decoder.layers.1.encoder_attn.k_proj.bias"] = torch.zeros(D_MODEL)
        name = "model.decoder.layers.1.encoder_attn.k_proj.bias"
    elif change == "missing":
        del state[name]
    else:
        state[name] = torch.zeros(D_MODEL + 1)
    model.config.save_pretrained(tmp_path)
    save_file(state, tmp_path / "model.safetensors")
    title = {"extra": "unexpected", "missing": "missing", "shape": "wrong shape"}[change]
    with pytest.raises(CheckpointError, match=r"(?s)" + title + ".*" + name.replace(".", r"\.")):
        WhisperForConditionalGeneration.from_pretrained(tmp_path)


# --- input checks --------------------------------------------------------------------------------------------------
def test_input_checks_name_the_expected_shape(model):
    with pytest.raises(InputError, match=r"\(batch, 80, 32\)"):
        model(torch.zeros(1, 128, 32), decoder_input_ids=token_ids(1))
    with pytest.raises(InputError, match=r"30 frames.*\(batch, 80, 32\)"):
        model(torch.zeros(1, 80, 30), decoder_input_ids=token_ids(1))
    with pytest.raises(InputError, match="rank 3"):
        model(torch.zeros(80, 32), decoder_input_ids=token_ids(1))
    with pytest.raises(InputError, match="max_target_positions=32"):
        model(features(1), decoder_input_ids=torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(InputError, match="labels"):
        model(features(1), labels=torch.zeros(1, 33, dtype=torch.long))
    with torch.no_grad():
        cache = model(features(1), decoder_input_ids=torch.zeros(1, 30, dtype=torch.long)).past_key_values
    with pytest.raises(InputError, match="after 30 cached positions"):
        model(features(1), decoder_input_ids=torch.zeros(1, 3, dtype=torch.long), past_key_values=cache)
    with pytest.raises(InputError, match=r"expected \(1, 31\)"):
        mask = torch.ones(1, 1, dtype=torch.long)  # covers the new position only, not the cached ones
        model(features(1), decoder_input_ids=token_ids(1, 1), past_key_values=cache, decoder_attention_mask=mask)
    with pytest.raises(InputError, match=r"\(2, 4\)"):
        model(features(1), decoder_input_ids=token_ids(1), head_mask=torch.ones(3, 4))


def test_shift_tokens_right_replaces_ignored_labels():
    labels = np.array([[5, 6, -100, -100], [7, -100, 8, 9]])
    assert shift_tokens_right(labels, 0, 1).tolist() == [[1, 5, 6, 0], [1, 7, 0, 8]]


# --- real weights: tiny.en -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_en():
    from whisper_multi.weights.packages import embedded_model_path

    try:
        path = embedded_model_path()
    except Exception as error:  # the package of real weights is an optional install
        pytest.skip(f"tiny.en weights not installed: {error}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float32 weights: no dequantization warning expected
        model = WhisperForConditionalGeneration.from_ct2(path)
    reference = dict(np.load(FIXTURES / "tiny_en_reference.npz"))
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
