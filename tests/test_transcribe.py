"""Long-form transcription: the window rules against a scripted model, then tiny.en in PyTorch, TensorFlow and Flax
on the ~60 s multi-voice clip (identical segments and words), and the ``whisper-multi transcribe`` command."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import installed_backend
from whisper_multi.errors import InputError
from whisper_multi.longform.segments import split_segments
from whisper_multi.longform.transcribe import (
    compression_ratio,
    parse_clip_timestamps,
    transcribe,
    transcribe_chunked,
)
from whisper_multi.text.special_tokens import special_tokens_for_vocab
from whisper_multi.weights.packages import embedded_model_path

LONGFORM = Path(__file__).parent / "fixtures" / "longform"
SPECIAL = special_tokens_for_vocab(51864)  # tiny.en
TS = SPECIAL.timestamp_begin


def ts(seconds: float) -> int:
    return TS + round(seconds / 0.02)


# ---------------------------------------------------------------------------------------------------------------------
# Segments of one window
# ---------------------------------------------------------------------------------------------------------------------
def test_segments_split_at_timestamp_pairs_and_seek_to_the_last_one() -> None:
    tokens = [ts(0), 1, 2, ts(1), ts(1), 3, ts(2.5), ts(2.5)]
    segments, steps = split_segments(tokens, TS, 10.0, 30.0)
    assert [(start, end, piece) for start, end, piece in segments] == [
        (10.0, 11.0, [ts(0), 1, 2, ts(1)]),
        (11.0, 12.5, [ts(1), 3, ts(2.5)]),
    ]
    assert steps == 125  # 2.5 s: the next window starts at the last complete timestamp


def test_a_single_timestamp_ending_consumes_the_window() -> None:
    segments, steps = split_segments([ts(0), 1, ts(2), ts(2), 3, ts(4)], TS, 0.0, 30.0)
    assert [(s, e) for s, e, _ in segments] == [(0.0, 2.0), (2.0, 4.0)]
    assert steps is None


def test_text_without_timestamp_pairs_is_one_segment() -> None:
    segments, steps = split_segments([ts(0), 1, 2, ts(7)], TS, 30.0, 30.0)
    assert [(s, e) for s, e, _ in segments] == [(30.0, 37.0)]
    assert steps is None


def test_compression_ratio_and_clip_timestamps() -> None:
    assert compression_ratio("the same words " * 20) > 2.4 > compression_ratio("It is a truth universally known.")
    assert parse_clip_timestamps("5,10,20", 40.0) == [(5.0, 10.0), (20.0, 40.0)]
    assert parse_clip_timestamps(None, 40.0) == [(0.0, 40.0)]


# ---------------------------------------------------------------------------------------------------------------------
# The window loop against a scripted model
# ---------------------------------------------------------------------------------------------------------------------
class ScriptedModel:
    """Answers ``generate`` from ``script(call_index, temperature, prompt)`` -> (tokens, avg_logprob, no_speech)."""

    config = SimpleNamespace(vocab_size=51864, max_target_positions=448, num_mel_bins=80)

    def __init__(self, script):
        self.script, self.calls = script, []

    def generate(self, features, *, prompt_ids=None, temperature=0.0, **kwargs):
        prompt = [] if prompt_ids is None else [int(t) for t in prompt_ids]
        self.calls.append({"temperature": temperature, "prompt": prompt, "features": features})
        tokens, avg_logprob, no_speech = self.script(len(self.calls) - 1, temperature, prompt)
        batch = len(features)
        return SimpleNamespace(
            sequences=np.asarray([[*prompt, SPECIAL.sot, *tokens, SPECIAL.eot]] * batch),
            avg_logprobs=np.asarray([avg_logprob] * batch, np.float32),
            no_speech_probs=np.asarray([no_speech] * batch, np.float32),
        )


@pytest.fixture(scope="module")
def tokenizer():
    from whisper_multi.text.tokenization_fast import WhisperTokenizerFast

    return WhisperTokenizerFast.from_pretrained(embedded_model_path())


def _words(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def test_fallback_to_the_next_temperature_on_repetition(tokenizer) -> None:
    repeated = [ts(0), *_words(tokenizer, " the same words" * 30), ts(20)]
    good = [ts(0), *_words(tokenizer, " A fine sentence."), ts(3)]
    model = ScriptedModel(lambda call, t, prompt: (repeated if t == 0.0 else good, -0.3, 0.01))
    result = transcribe(model, np.zeros(16000 * 5, np.float32), tokenizer)
    assert [c["temperature"] for c in model.calls] == [0.0, 0.2]
    assert [(s.text, s.temperature, s.start, s.end) for s in result.segments] == [(" A fine sentence.", 0.2, 0.0, 3.0)]


def test_low_logprob_falls_back_and_silence_is_skipped(tokenizer) -> None:
    text = [ts(0), *_words(tokenizer, " Hello."), ts(1)]

    # Window 1 is unlikely text (fallback through every temperature); window 2 is silence (skipped, no retry).
    def script(call, t, prompt):
        return (text, -1.5, 0.1) if call < 6 else (text, -1.5, 0.9)

    model = ScriptedModel(script)
    done = []
    result = transcribe(
        model, np.zeros(16000 * 45, np.float32), tokenizer, progress=lambda d, total: done.append((d, total))
    )
    assert [c["temperature"] for c in model.calls] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.0]
    assert len(result.segments) == 1 and result.segments[0].temperature == 1.0
    assert done[-1] == (45.0, 45.0)


def test_previous_text_is_the_prompt_unless_disabled(tokenizer) -> None:
    first = [ts(0), *_words(tokenizer, " One."), ts(2), ts(2), *_words(tokenizer, " Two."), ts(4), ts(4)]
    model = ScriptedModel(lambda call, t, prompt: (first, -0.2, 0.01))
    transcribe(model, np.zeros(16000 * 6, np.float32), tokenizer, initial_prompt="Names: Ada.")
    prompt_tokens = _words(tokenizer, " Names: Ada.")
    assert model.calls[0]["prompt"] == [SPECIAL.sot_prev, *prompt_tokens]
    assert model.calls[1]["prompt"] == [SPECIAL.sot_prev, *prompt_tokens, *first[:-1]]
    model = ScriptedModel(lambda call, t, prompt: (first, -0.2, 0.01))
    transcribe(model, np.zeros(16000 * 6, np.float32), tokenizer, condition_on_previous_text=False)
    assert [c["prompt"] for c in model.calls] == [[], []]


def test_speech_after_a_lone_timestamp_ending_is_not_skipped(tokenizer) -> None:
    """The first window's text stops at 4 s on a lone timestamp although sound (broadband, as speech) plays at 10-14 s: the
    next window starts at 4 s, not at 30 s; with the rule off (openai-whisper's), at 30 s."""
    rng = np.random.default_rng(0)
    audio = (1e-4 * rng.standard_normal(16000 * 40)).astype(np.float32)
    audio[16000 * 10 : 16000 * 14] += (0.1 * rng.standard_normal(16000 * 4)).astype(np.float32)
    stops_early = [ts(0), *_words(tokenizer, " First part."), ts(4)]
    for resume, second_window in ((True, 400), (False, 3000)):
        model = ScriptedModel(lambda call, t, prompt: (stops_early, -0.2, 0.01))
        result = transcribe(model, audio, tokenizer, condition_on_previous_text=False, resume_after_early_stop=resume)
        assert [s.seek for s in result.segments][:2] == [0, second_window]
    # Without sound after it, the lone timestamp consumes the window as before.
    model = ScriptedModel(lambda call, t, prompt: (stops_early, -0.2, 0.01))
    quiet = (1e-4 * rng.standard_normal(16000 * 40)).astype(np.float32)  # background noise: 4 dB from low to high
    result = transcribe(model, quiet, tokenizer, condition_on_previous_text=False)
    assert [s.seek for s in result.segments] == [0, 3000]


def test_clip_timestamps_limit_the_windows(tokenizer) -> None:
    text = [ts(0), *_words(tokenizer, " Hi."), ts(1)]
    model = ScriptedModel(lambda call, t, prompt: (text, -0.2, 0.01))
    result = transcribe(model, np.zeros(16000 * 60, np.float32), tokenizer, clip_timestamps="5,10,40,42")
    assert [(s.seek, s.start) for s in result.segments] == [(500, 5.0), (4000, 40.0)]


def test_options_as_an_object_or_keywords_are_the_same(tokenizer) -> None:
    from whisper_multi.longform.transcribe import TranscribeOptions

    text = [ts(0), *_words(tokenizer, " Hi."), ts(1)]
    runs = []
    for options, keywords in ((TranscribeOptions(temperature=0.4, initial_prompt="Ada."), {}),
                              (None, {"temperature": 0.4, "initial_prompt": "Ada."}),
                              (TranscribeOptions(temperature=0.0), {"temperature": 0.4, "initial_prompt": "Ada."})):  # fmt: skip
        model = ScriptedModel(lambda call, t, prompt: (text, -0.2, 0.01))
        result = transcribe(model, np.zeros(16000 * 5, np.float32), tokenizer, options, **keywords)
        runs.append((result.to_dict(), model.calls[0]["temperature"], model.calls[0]["prompt"]))
    assert runs[0] == runs[1] == runs[2] and runs[0][1] == 0.4
    with pytest.raises(TypeError, match="clip_timestamps"):  # a sequential-only option
        transcribe_chunked(ScriptedModel(None), np.zeros(16000, np.float32), tokenizer, clip_timestamps="0,1")
    with pytest.raises(InputError, match="temperature must be"):
        transcribe(ScriptedModel(None), np.zeros(16000, np.float32), tokenizer, temperature=[-1.0])


def _bursts(seconds: float, pauses: list[tuple[float, float]], seed: int = 0) -> np.ndarray:
    """Loud noise with silent ``pauses`` (start, end seconds): speech and pauses as the loudness sees them."""
    audio = 0.3 * np.random.default_rng(seed).standard_normal(round(seconds * 16000)).astype(np.float32)
    for start, end in pauses:
        audio[round(start * 16000) : round(end * 16000)] = 0.0
    return audio


def test_chunks_are_cut_in_the_middle_of_the_last_pause_before_24_s() -> None:
    from whisper_multi.features import N_SAMPLES, log_mel_spectrogram
    from whisper_multi.longform.transcribe import pause_cuts

    audio = _bursts(70.0, [(12.0, 13.0), (20.0, 21.0), (43.0, 44.0), (60.0, 60.5)])
    mel = log_mel_spectrogram(audio, 80, padding=N_SAMPLES)
    cuts = pause_cuts(mel, 7000)
    # 20.5: the later of two pauses before 24 s; 43.5 before 44.5; 60.25 before 67.5; the rest is under 24 s.
    found = [bound / 100 for cut in cuts for bound in cut]
    assert found == pytest.approx([0.0, 20.5, 20.5, 43.5, 43.5, 60.25, 60.25, 70.0], abs=0.11)
    noise = _bursts(70.0, [])  # no pause at all: cut at the quietest 0.2 s, still at most 24 s a chunk
    assert all(
        end - start <= 2400 for start, end in pause_cuts(log_mel_spectrogram(noise, 80, padding=N_SAMPLES), 7000)
    )


def test_chunks_are_decoded_in_batches_once_each_with_the_initial_prompt(tokenizer) -> None:
    words = _words(tokenizer, " Hi.")
    text = [ts(0), *words, ts(5), ts(5), *words, ts(9)]  # ends on a lone timestamp: the chunk is done
    model = ScriptedModel(lambda call, t, prompt: (text, -0.2, 0.01))
    audio = _bursts(70.0, [(20.0, 21.0), (43.0, 44.0), (60.0, 61.0)])
    result = transcribe_chunked(
        model, audio, tokenizer, batch_size=2, initial_prompt="Names: Ada.", resume_after_early_stop=False
    )
    assert [len(c["features"]) for c in model.calls] == [2, 2]  # four chunks, two batches, one window each
    prompt = [SPECIAL.sot_prev, *_words(tokenizer, " Names: Ada.")]
    assert all(call["prompt"] == prompt for call in model.calls)
    starts = [0.0, 20.5, 43.5, 60.5]
    expected = [(start + offset, start + end) for start in starts for offset, end in ((0, 5), (5, 9))]
    found = [bound for segment in result.segments for bound in (segment.start, segment.end)]
    assert found == pytest.approx([bound for pair in expected for bound in pair], abs=0.11)
    assert [s.id for s in result.segments] == list(range(8))


# ---------------------------------------------------------------------------------------------------------------------
# tiny.en in three frameworks on the ~60 s clip
# ---------------------------------------------------------------------------------------------------------------------
_RESULTS: dict[tuple[str, str], dict] = {}


def _tiny_en(key: str):
    """tiny.en's conditional-generation model in backend ``key``."""
    return installed_backend(key).model_class().from_pretrained(embedded_model_path())


def _transcribe_60s(backend: str, tokenizer, mode: str = "sequential") -> dict:
    """The ~60 s clip with word timestamps, sequentially or as chunks decoded in one batch of 3; kept per run.
    Greedy only: a sampled fallback draws the same numbers in every framework, but a token whose score is a near-tie
    at the last float32 digits can go either way, and which does depends on the CPU."""
    if (backend, mode) not in _RESULTS:
        model = _tiny_en(backend)
        run, options = (transcribe, {}) if mode == "sequential" else (transcribe_chunked, {"batch_size": 3})
        result = run(model, LONGFORM / "longform_60s.wav", tokenizer, word_timestamps=True, temperature=0.0,
                     model_dir=embedded_model_path(), **options)  # fmt: skip
        _RESULTS[backend, mode] = result.to_dict()
    return _RESULTS[backend, mode]


def _exact(result: dict) -> list:
    return [
        (s["seek"], s["start"], s["end"], s["text"], s["tokens"], s["temperature"],
         [(w["word"], w["start"], w["end"]) for w in s["words"]])
        for s in result["segments"]
    ]  # fmt: skip


@pytest.mark.slow
def test_pytorch_transcribes_the_60s_clip(tokenizer) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ lives at the repository root
    from whisper_multi.longform.evaluate import word_error_rate

    result = _transcribe_60s("pt", tokenizer)
    reference = (LONGFORM / "longform_60s.txt").read_text()
    assert word_error_rate(reference, result["text"]) < 0.3
    assert result["duration"] == pytest.approx(59.9, abs=1.0)
    segments = result["segments"]
    assert [s["id"] for s in segments] == list(range(len(segments))) and len(segments) >= 6
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in itertools.pairwise(segments))
    assert all(s["words"] for s in segments)
    # The 3 s pause after the second paragraph (which ends near 38.6 s) holds no segment.
    assert not any(39.0 < (s["start"] + s["end"]) / 2 < 40.5 for s in segments)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tf", "flax"])
def test_segments_and_words_identical_across_frameworks(backend: str, tokenizer) -> None:
    reference = _transcribe_60s("pt", tokenizer)
    result = _transcribe_60s(backend, tokenizer)
    assert _exact(result) == _exact(reference)
    for ours, theirs in zip(result["segments"], reference["segments"]):
        assert ours["avg_logprob"] == pytest.approx(theirs["avg_logprob"], abs=1e-4)
        assert ours["no_speech_prob"] == pytest.approx(theirs["no_speech_prob"], abs=1e-4)
        probabilities = [(a["probability"], b["probability"]) for a, b in zip(ours["words"], theirs["words"])]
        np.testing.assert_allclose(*zip(*probabilities), atol=1e-4)


@pytest.mark.slow
def test_chunked_batches_transcribe_the_60s_clip_as_well_as_the_sequential_mode(tokenizer) -> None:
    """The clip cut at pauses into chunks of at most 24 s, decoded as batches of 3, within the sequential mode's word
    error rate bound (English normalizer)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from whisper_multi.longform.evaluate import word_error_rate

    result = _transcribe_60s("pt", tokenizer, "chunked")
    reference = (LONGFORM / "longform_60s.txt").read_text()
    assert word_error_rate(reference, result["text"]) < 0.3
    segments = result["segments"]
    assert len(segments) >= 6 and all(s["words"] for s in segments)
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in itertools.pairwise(segments))
    assert not any(39.0 < (s["start"] + s["end"]) / 2 < 40.5 for s in segments)  # the 3 s pause
    words = [w["word"].strip(" ,.").lower() for s in segments for w in s["words"]]
    # Said once each, near the old overlaps of fixed 30 s chunks (25-30 s, 50-55 s): no chunk decodes them twice.
    assert " ".join(words).count("age of wisdom") == 1 and " ".join(words).count("part of the world") == 1


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tf", "flax"])
def test_chunked_segments_and_words_identical_across_frameworks(backend: str, tokenizer) -> None:
    assert _exact(_transcribe_60s(backend, tokenizer, "chunked")) == _exact(_transcribe_60s("pt", tokenizer, "chunked"))


# ---------------------------------------------------------------------------------------------------------------------
# Real speech with pauses at chunk and window edges: ten sentences, each followed by 1 s of silence
# ---------------------------------------------------------------------------------------------------------------------
SENTENCES = json.loads((LONGFORM / "sentences_with_pauses.json").read_text())["sentences"]
_SENTENCE_RESULTS: dict[tuple[str, bool], dict] = {}


def _transcribe_sentences(mode: str, word_timestamps: bool, tokenizer) -> dict:
    if (mode, word_timestamps) not in _SENTENCE_RESULTS:
        pytest.importorskip("soundfile", reason="the FLAC fixture needs the `audio` extra")
        model = _tiny_en("pt")
        run, options = (transcribe, {}) if mode == "sequential" else (transcribe_chunked, {"batch_size": 4})
        result = run(model, LONGFORM / "sentences_with_pauses.flac", tokenizer, word_timestamps=word_timestamps,
                     model_dir=embedded_model_path(), **options)  # fmt: skip
        _SENTENCE_RESULTS[mode, word_timestamps] = result.to_dict()
    return _SENTENCE_RESULTS[mode, word_timestamps]


def _normalized_words(text: str) -> list[str]:
    from whisper_multi.text.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()(text).split()


def _assert_cues_follow_the_speech(segments: list[dict]) -> None:
    """Cues strictly ordered, not overlapping, each starting and ending within 0.5 s of the speech it covers."""
    assert all(a["start"] < b["start"] and a["end"] <= b["start"] for a, b in itertools.pairwise(segments))
    for segment in segments:
        first = next(s for s in SENTENCES if s["end"] > segment["start"])  # the first sentence the cue reaches
        last = [s for s in SENTENCES if s["start"] < segment["end"]][-1]  # the last one
        assert first["start"] - 0.5 <= segment["start"] and segment["end"] <= last["end"] + 0.5, segment


@pytest.mark.slow
@pytest.mark.parametrize("word_timestamps", [False, True])
def test_batched_transcription_transcribes_every_sentence_once(word_timestamps: bool, tokenizer) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from whisper_multi.longform.evaluate import word_error_rate

    segments = _transcribe_sentences("batched", word_timestamps, tokenizer)["segments"]
    _assert_cues_follow_the_speech(segments)
    for sentence in SENTENCES:  # each said once: its cues read like it (a lost sentence scores 1.0)
        said = "".join(
            s["text"] for s in segments if sentence["start"] - 0.5 < (s["start"] + s["end"]) / 2 < sentence["end"] + 0.5
        )
        assert word_error_rate(sentence["text"], said) <= 0.5, (sentence["text"], said)
    words = _normalized_words("".join(s["text"] for s in segments))
    truth = _normalized_words(" ".join(s["text"] for s in SENTENCES))
    assert abs(len(words) - len(truth)) <= 0.05 * len(truth)  # nothing dropped, nothing said twice
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    assert len(set(grams)) == len(grams), "a repeated 4-gram the speech does not repeat"
    assert all(bool(s.get("words")) == word_timestamps for s in segments)


@pytest.mark.slow
def test_sequential_words_after_a_pause_start_where_the_speech_does(tokenizer) -> None:
    """The first word of a window that starts in a pause, right after the previous sentence's last sound, keeps out
    of the pause (openai-whisper's rule for the first word after a pause, then snapped to the speech)."""
    result = _transcribe_sentences("sequential", True, tokenizer)
    _assert_cues_follow_the_speech(result["segments"])
    for sentence in SENTENCES:
        first_word = next(w for s in result["segments"] for w in s["words"] if w["end"] > sentence["start"])
        assert abs(first_word["start"] - sentence["start"]) <= 0.3, (sentence["text"], first_word)


# ---------------------------------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_writes_parseable_outputs_and_reports_bad_files(tmp_path, capsys) -> None:
    installed_backend("pt")
    soundfile = pytest.importorskip("soundfile", reason="audio files need the `audio` extra")

    from test_writers import parse_srt, parse_vtt
    from whisper_multi.tools.cli import main

    clip, rate = soundfile.read(LONGFORM / "longform_60s.wav", dtype="float32")
    two_minutes = tmp_path / "talk.wav"
    soundfile.write(two_minutes, np.concatenate([clip, clip]), rate)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt not really audio")
    out = tmp_path / "out"

    code = main(
        ["transcribe", str(broken), str(two_minutes), "--output-format", "srt,vtt,json", "--output-dir", str(out)]
    )
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1 and str(broken) in errors[0], captured.err
    assert f"{two_minutes}: wrote talk.srt, talk.vtt, talk.json to {out}" in captured.err  # no bar: not a terminal
    assert sorted(p.name for p in out.iterdir()) == ["talk.json", "talk.srt", "talk.vtt"]

    data = json.loads((out / "talk.json").read_text())
    srt = parse_srt((out / "talk.srt").read_text())
    vtt = parse_vtt((out / "talk.vtt").read_text())
    assert data["language"] == "en" and len(srt) == len(vtt) == len(data["segments"]) >= 12
    assert [cue[0] for cue in srt] == list(range(1, len(srt) + 1))
    for cue, (start, end, text), segment in zip(srt, vtt, data["segments"]):
        assert cue[1] == start == pytest.approx(segment["start"], abs=1e-3)
        assert cue[2] == end == pytest.approx(segment["end"], abs=1e-3)
        assert cue[3] == text == " ".join(segment["text"].split())
    assert srt[-1][2] > 100.0  # the second minute was transcribed too
