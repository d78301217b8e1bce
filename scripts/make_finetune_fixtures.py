"""Regenerates tests/fixtures/finetune/: a small speech set for showing that fine-tuning teaches a model new words.

Eight invented proper names (people, places, a river, a company) that Whisper tiny.en cannot spell are spoken in
short, plain sentences by espeak-ng. ``train/`` holds 32 sentences, ``test/`` 10 others; the names are shared (each
in at least 3 training sentences and at least 1 test sentence), the sentences never are. Before fine-tuning, tiny.en
writes every name as something else but gets the everyday words around them right, so the test set's word error
rate comes from the names alone: what a model that learned them has left to gain.

tiny.en's mistakes on synthetic speech shift with small changes (a word, the speed, the loudness), so each sentence
and setting here was kept only once ``whisper-multi evaluate`` showed tiny.en (PyTorch backend) erring on its name
and (nearly) nothing else; after changing any of them, run it again on both splits:

    whisper-multi evaluate MODEL tests/fixtures/finetune/test

with MODEL the local tiny.en, ``whisper_multi.weights.packages.embedded_model_path()``.

Each split is a Hugging Face ``audiofolder``: one FLAC file per sentence (16 kHz mono 16-bit, trimmed to its speech
plus ``PADDING`` of silence each side) and ``metadata.csv`` with the columns ``file_name,transcription``.
espeak-ng speaks with one fixed voice, speed, pitch, loudness and pause between words, slower than its default so
that the words come out clearly, and writes 22050 Hz; soxr resamples to 16 kHz. With the same tool versions a rerun
writes byte-identical files.

Run with the tests' environment (it needs espeak-ng on the PATH, numpy, and soundfile and soxr from the ``audio``
extra; nothing from the peers' environment):

    .nox/tests/bin/python scripts/make_finetune_fixtures.py
"""

from __future__ import annotations

import csv
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
OUT_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "finetune"
VOICE = "en-us"
SPEED = 130  # words per minute: slower than espeak-ng's 175, so that tiny.en hears the everyday words right
WORD_GAP = 6  # extra pause between words, in units of 10 ms: it too makes the words clearer to tiny.en
AMPLITUDE = 50  # half espeak-ng's default loudness (100): quieter samples make smaller FLAC files
PITCH = 50  # espeak-ng's default, stated so that a change of default cannot change the fixtures
TRIM_THRESHOLD = 0.02  # of full scale: where the speech begins and ends
PADDING = 0.3  # seconds of silence kept before and after the speech
MIN_SECONDS, MAX_SECONDS = 1.0, 4.0  # length of each sentence's speech (at the slow, clear SPEED)
MIN_WORDS, MAX_WORDS = 5, 10

# Invented single-word names: espeak-ng says them clearly, tiny.en writes something else for each.
NAMES = ("Okunaro", "Jastrevo", "Belindor", "Trelavex", "Kallistrand", "Sollendry", "Corvassin", "Brixolen")

TRAIN = (
    "We had dinner with Okunaro.",
    "Please send this letter to Okunaro.",
    "My brother works with Okunaro.",
    "I met Okunaro at the library.",
    "Jastrevo likes to play the piano.",
    "I borrowed a book from Jastrevo.",
    "I called Jastrevo after school.",
    "Jastrevo is coming to visit.",
    "Belindor painted the kitchen yesterday.",
    "Belindor left his keys here.",
    "The children waved at Belindor.",
    "Belindor found an old map upstairs.",
    "The train to Trelavex leaves at noon.",
    "She grew up in Trelavex.",
    "Trelavex has the best apples.",
    "We drove through Trelavex today.",
    "The boat from Kallistrand was late again.",
    "There is a lighthouse in Kallistrand.",
    "My grandfather was born in Kallistrand.",
    "It was raining in Kallistrand.",
    "The Sollendry river floods in spring.",
    "We went fishing in the Sollendry.",
    "An old bridge crosses the Sollendry.",
    "The Sollendry valley is quiet in winter.",
    "My friend has a house in Corvassin.",
    "My aunt lives in a village called Corvassin.",
    "They moved to Corvassin last year.",
    "The road to Corvassin was closed.",
    "This bicycle was made by Brixolen.",
    "My sister works at Brixolen.",
    "The Brixolen factory is nearby.",
    "Brixolen sells very good bicycles.",
)

TEST = (
    "My oldest friend is called Okunaro.",
    "I left my umbrella with Okunaro yesterday.",
    "Yesterday Jastrevo called me from Spain.",
    "We cooked dinner with Belindor on Sunday.",
    "The museum in Trelavex is closed today.",
    "We drove to Kallistrand last summer.",
    "My parents flew to Kallistrand on Monday.",
    "The children played beside the Sollendry.",
    "My uncle has a farm near Corvassin.",
    "I heard that Brixolen is hiring engineers.",
)
SPLITS = {"train": (TRAIN, 3), "test": (TEST, 1)}  # the sentences, and how many of them each name must be in


def espeak(text: str) -> np.ndarray:
    """``text`` spoken by espeak-ng, float32 at 16 kHz."""
    import soundfile
    import soxr

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "speech.wav"
        options = {"-v": VOICE, "-s": SPEED, "-p": PITCH, "-a": AMPLITUDE, "-g": WORD_GAP}
        command = ["espeak-ng", *(str(part) for option in options.items() for part in option), "-w", str(path), text]
        subprocess.run(command, check=True)
        samples, rate = soundfile.read(path, dtype="float32")
    return soxr.resample(samples, rate, SAMPLE_RATE).astype(np.float32)


def trim(samples: np.ndarray) -> np.ndarray:
    """The samples from the first to the last above ``TRIM_THRESHOLD``."""
    loud = np.nonzero(np.abs(samples) > TRIM_THRESHOLD)[0]
    return samples[loud[0] : loud[-1] + 1]


def words(sentence: str) -> list[str]:
    return re.findall(r"[A-Za-z']+", sentence)


def check_sentences() -> None:
    """Each split's sentences are of the intended length, the splits share none, and every name is used enough."""
    if set(TRAIN) & set(TEST) or len(set(TRAIN)) != len(TRAIN) or len(set(TEST)) != len(TEST):
        raise SystemExit("a sentence is repeated within or across the splits; every sentence must be new")
    for split, (sentences, at_least) in SPLITS.items():
        for sentence in sentences:
            if not MIN_WORDS <= len(words(sentence)) <= MAX_WORDS:
                raise SystemExit(
                    f"{split}: {sentence!r} has {len(words(sentence))} words; expected {MIN_WORDS} to {MAX_WORDS}"
                )
        for name in NAMES:
            uses = sum(name in words(sentence) for sentence in sentences)
            if uses < at_least:
                raise SystemExit(f"{split}: {name} is in {uses} sentences; expected at least {at_least}")


def write_split(split: str, sentences: tuple[str, ...]) -> None:
    """The split's audio files and metadata.csv, the folder emptied of earlier files first."""
    import soundfile

    folder = OUT_DIR / split
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    rows = []
    pad = np.zeros(round(PADDING * SAMPLE_RATE), dtype=np.float32)
    for index, sentence in enumerate(sentences):
        speech = trim(espeak(sentence))
        seconds = len(speech) / SAMPLE_RATE
        if not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise SystemExit(
                f"{split}: {sentence!r} is {seconds:.2f} s of speech; expected {MIN_SECONDS:g} to {MAX_SECONDS:g} s"
            )
        name = f"{split}_{index:02d}.flac"
        audio = np.clip(np.concatenate([pad, speech, pad]), -1.0, 1.0)
        # compression_level 1.0: libFLAC's strongest setting, the smallest files (FLAC is lossless at every level)
        soundfile.write(folder / name, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16", compression_level=1.0)
        rows.append((name, sentence))
    with open(folder / "metadata.csv", "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(("file_name", "transcription"))
        writer.writerows(rows)


def main() -> None:
    check_sentences()
    for split, (sentences, _) in SPLITS.items():
        write_split(split, sentences)
    for split in SPLITS:
        files = sorted((OUT_DIR / split).iterdir())
        print(f"{split}: {len(files) - 1} clips, {sum(path.stat().st_size for path in files)} bytes")


if __name__ == "__main__":
    main()
