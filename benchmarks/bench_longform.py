"""Long-form evaluation: WER and time of ``transcribe`` in each backend against faster-whisper, same weights.

At least ten minutes of public-domain prose read by several espeak-ng voices (``scripts/make_longform_fixtures.py``;
the audio is cached in ``$WHISPER_MULTI_BENCH_CACHE``), transcribed with the same options by our PyTorch,
TensorFlow and Flax models and by faster-whisper (CTranslate2 float32) on the embedded tiny.en: greedy at
temperature 0 with fallback, condition on previous text, word timestamps. Reports the word error rate after the
English text normalizer, the wall time, and whether our three backends gave identical segments and words.

    python benchmarks/bench_longform.py [--seconds 600] [--backends pt,tf,flax] [--json out.json]

In the suite (``python -m benchmarks --only longform``, case 4 of benchmarks/README.md) ``cases()`` times five
minutes of that prose: our sequential ``transcribe`` and chunked ``transcribe_chunked`` (batches of 8) in each
backend (its default path: PyTorch eager, TF and Flax compiled) beside faster-whisper's sequential ``transcribe``
and its ``BatchedInferencePipeline`` (batches of 8), CTranslate2 float32, the same options (greedy, English, word
timestamps). Target: the fastest of our sequential cases at most 1.0x faster-whisper sequential, the fastest
batched case at most 1.0x faster-whisper batched; peak RSS is reported beside.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import Case, Peer, Run, Settings, Unavailable
from whisper_multi.backends import BACKENDS, model_class
from whisper_multi.longform.evaluate import word_error_rate

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"language": "en", "word_timestamps": True, "condition_on_previous_text": True}
SUITE_SECONDS = 300.0  # the suite's long-form audio: five minutes
SMOKE_AUDIO = ROOT / "tests" / "fixtures" / "longform" / "longform_60s.wav"
BATCH_SIZE = 8


def _fixtures_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "make_longform_fixtures", ROOT / "scripts" / "make_longform_fixtures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluation_audio(seconds: float) -> tuple[Path, str]:
    """The cached synthesized prose of at least ``seconds`` and its reference text."""
    cache = Path(os.environ.get("WHISPER_MULTI_BENCH_CACHE", Path(tempfile.gettempdir()) / "whisper-multi-bench"))
    cache.mkdir(parents=True, exist_ok=True)
    wav, txt = cache / f"longform_{int(seconds)}s.wav", cache / f"longform_{int(seconds)}s.txt"
    if not (wav.exists() and txt.exists()):
        fixtures = _fixtures_module()
        audio, text = fixtures.synthesize_prose(seconds)
        fixtures.write_wav(wav, audio)
        txt.write_text(text + "\n", encoding="utf-8")
    return wav, txt.read_text(encoding="utf-8").strip()


def load_ours(backend: str) -> tuple[Path, Any, Any]:
    """(the embedded tiny.en's directory, ``backend``'s speech-to-text model of it, its tokenizer)."""
    from whisper_multi.text.tokenization_fast import WhisperTokenizerFast
    from whisper_multi.weights.packages import embedded_model_path

    directory = embedded_model_path()
    return directory, model_class(backend).from_pretrained(directory), WhisperTokenizerFast.from_pretrained(directory)


def run_ours(backend: str, wav: Path) -> tuple[dict[str, Any], float]:
    from whisper_multi.longform.transcribe import transcribe

    directory, model, tokenizer = load_ours(backend)
    start = time.perf_counter()
    result = transcribe(model, wav, tokenizer, model_dir=directory, **OPTIONS)
    return result.to_dict(), time.perf_counter() - start


def run_faster_whisper(wav: Path) -> tuple[dict[str, Any], float]:
    from faster_whisper import WhisperModel

    from whisper_multi.weights.packages import embedded_model_path

    model = WhisperModel(str(embedded_model_path()), device="cpu", compute_type="float32")
    start = time.perf_counter()
    segments, _ = model.transcribe(str(wav), beam_size=1, best_of=1, **OPTIONS)
    items = [
        {"start": s.start, "end": s.end, "text": s.text, "words": [dataclasses.asdict(w) for w in (s.words or [])]}
        for s in segments
    ]
    return {"text": "".join(s["text"] for s in items), "segments": items}, time.perf_counter() - start


def _comparable(result: dict[str, Any]) -> list[Any]:
    return [
        (s["start"], s["end"], s["text"], s["tokens"], [(w["word"], w["start"], w["end"]) for w in s.get("words", [])])
        for s in result["segments"]
    ]


# --- the suite's cases ---------------------------------------------------------------------------------------------
def _suite_audio(settings: Settings) -> Path:
    if settings.smoke:
        return SMOKE_AUDIO
    try:
        return evaluation_audio(SUITE_SECONDS)[0]
    except Exception as error:  # espeak-ng missing and nothing cached
        raise Unavailable(f"no {SUITE_SECONDS:.0f} s of synthesized prose (needs espeak-ng): {error}") from error


def _ours(backend: str, batched: bool, settings: Settings) -> Any:
    from whisper_multi.audio import load_audio
    from whisper_multi.longform.transcribe import transcribe, transcribe_chunked

    directory, model, tokenizer = load_ours(backend)
    audio = load_audio(str(_suite_audio(settings)))
    if batched:
        options = {"language": "en", "word_timestamps": True, "batch_size": BATCH_SIZE}
        return lambda: transcribe_chunked(model, audio, tokenizer, model_dir=directory, **options)
    return lambda: transcribe(model, audio, tokenizer, model_dir=directory, **OPTIONS)


def _faster_whisper(batched: bool, settings: Settings) -> Any:
    try:
        from faster_whisper import BatchedInferencePipeline, WhisperModel, decode_audio
    except ImportError as error:
        raise Unavailable(f"faster-whisper is not installed: {error}") from error
    from whisper_multi.weights.packages import embedded_model_path

    model = WhisperModel(str(embedded_model_path()), device="cpu", compute_type="float32")
    audio = decode_audio(str(_suite_audio(settings)))
    if batched:
        pipeline = BatchedInferencePipeline(model)
        options = {"language": "en", "word_timestamps": True, "batch_size": BATCH_SIZE}
        return lambda: list(pipeline.transcribe(audio, beam_size=1, **options)[0])
    return lambda: list(model.transcribe(audio, beam_size=1, best_of=1, **OPTIONS)[0])


def cases() -> list[Case]:
    from functools import partial

    result = []
    for batched, mode in ((False, "sequential"), (True, "batched")):
        peer = Peer(Run(f"faster-whisper {mode}", partial(_faster_whisper, batched)), target=1.0, fastest_only=True)
        for backend in BACKENDS:
            ours = Run(f"whisper_multi {backend} {mode}", partial(_ours, backend, batched))
            result.append(Case(f"longform/{backend}-{mode}", "longform", ours, (peer,), report_peak_rss=True))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--no-peer", action="store_true", help="skip faster-whisper")
    parser.add_argument("--json", help="write every transcript and number here")
    args = parser.parse_args(argv)
    wav, reference = evaluation_audio(args.seconds)
    import soundfile

    duration = soundfile.info(str(wav)).duration
    print(f"audio: {wav} ({duration:.1f} s, {len(reference.split())} words)")
    report: dict[str, Any] = {"audio_seconds": duration, "runs": {}}
    results = {}
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    runs = [(f"whisper_multi {name}", lambda name=name: run_ours(name, wav)) for name in names]
    if not args.no_peer:
        runs.append(("faster-whisper", lambda: run_faster_whisper(wav)))
    for label, run in runs:
        result, seconds = run()
        results[label] = result
        wer = word_error_rate(reference, result["text"])
        report["runs"][label] = {"wer": wer, "seconds": seconds, "segments": len(result["segments"])}
        print(f"{label:<22} WER {wer:6.2%}  {seconds:7.1f} s  ({len(result['segments'])} segments)", flush=True)
    ours = [label for label in results if label.startswith("whisper_multi")]
    if len(ours) > 1:
        first = _comparable(results[ours[0]])
        identical = {label: _comparable(results[label]) == first for label in ours[1:]}
        report["identical_to_" + ours[0].split()[-1]] = identical
        print(f"segments and words identical to {ours[0]}: {identical}")
    if args.json:
        Path(args.json).write_text(json.dumps({"report": report, "results": results}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
