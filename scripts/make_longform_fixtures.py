"""Regenerates the long-form fixtures in tests/fixtures/longform/ with espeak-ng (public-domain prose).

- ``longform_60s.wav`` / ``.txt``: about a minute of prose read by several voices, paragraphs joined by silences
  (one of them long, so a window holds no speech at its start); the ``.txt`` holds the exact words.
- ``word_timing.wav`` / ``.json``: single words synthesized one at a time, trimmed to where their samples rise above
  a threshold and joined by known silences; the ``.json`` holds each word with its true start and end (seconds).
- ``sentences_with_pauses.flac`` / ``.json``: ten sentences of 4 to 8 s (71 s in all), each trimmed and followed by 1 s of silence, so
  pauses fall near the edges of 30 s windows and chunks; the ``.json`` holds each sentence with its true start and
  end (seconds).

``synthesize_prose(seconds)`` makes the longer evaluation audio of ``benchmarks/bench_longform.py`` from the same
texts. espeak-ng writes 22050 Hz; soxr resamples to Whisper's 16 kHz; files are 16-bit PCM WAV.

    python scripts/make_longform_fixtures.py
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
OUT_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "longform"
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-x-rp", "en-us+m3", "en-gb-scotland")
SPEED = 160  # words per minute
TRIM_THRESHOLD = 0.02  # of full scale: where a synthesized word begins and ends

# Public-domain prose (Austen 1813, Dickens 1859, Melville 1851, Carroll 1865, Thoreau 1854, Doyle 1891, Lincoln 1865).
PROSE = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune must be in want of "
    "a wife. However little known the feelings or views of such a man may be on his first entering a neighbourhood, "
    "this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful "
    "property of some one or other of their daughters.",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, "
    "it was the epoch of belief, it was the epoch of incredulity, it was the season of light, it was the season of "
    "darkness, it was the spring of hope, it was the winter of despair.",
    "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, and "
    "nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of "
    "the world. It is a way I have of driving off the spleen and regulating the circulation.",
    "Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do. Once "
    "or twice she had peeped into the book her sister was reading, but it had no pictures or conversations in it, "
    "and what is the use of a book, thought Alice, without pictures or conversations?",
    "So she was considering in her own mind, as well as she could, for the hot day made her feel very sleepy and "
    "stupid, whether the pleasure of making a daisy chain would be worth the trouble of getting up and picking the "
    "daisies, when suddenly a white rabbit with pink eyes ran close by her.",
    "I went to the woods because I wished to live deliberately, to front only the essential facts of life, and see "
    "if I could not learn what it had to teach, and not, when I came to die, discover that I had not lived. I did "
    "not wish to live what was not life, living is so dear.",
    "To Sherlock Holmes she is always the woman. I have seldom heard him mention her under any other name. In his "
    "eyes she eclipses and predominates the whole of her sex. It was not that he felt any emotion akin to love for "
    "Irene Adler. All emotions, and that one particularly, were abhorrent to his cold, precise but admirably "
    "balanced mind.",
    "With malice toward none, with charity for all, with firmness in the right as God gives us to see the right, "
    "let us strive on to finish the work we are in, to bind up the nation's wounds, to care for him who shall have "
    "borne the battle and for his widow and his orphan, to do all which may achieve and cherish a just and lasting "
    "peace among ourselves and with all nations.",
    "The mass of men lead lives of quiet desperation. What is called resignation is confirmed desperation. From "
    "the desperate city you go into the desperate country, and have to console yourself with the bravery of minks "
    "and muskrats. A stereotyped but unconscious despair is concealed even under what are called the games and "
    "amusements of mankind.",
    "There was nothing so very remarkable in that; nor did Alice think it so very much out of the way to hear the "
    "rabbit say to itself, oh dear, oh dear, I shall be late. But when the rabbit actually took a watch out of its "
    "waistcoat pocket, and looked at it, and then hurried on, Alice started to her feet.",
    "Whenever I find myself growing grim about the mouth, whenever it is a damp, drizzly November in my soul, "
    "whenever I find myself involuntarily pausing before coffin warehouses, then I account it high time to get to "
    "sea as soon as I can. This is my substitute for pistol and ball.",
    "Mister Bennet was so odd a mixture of quick parts, sarcastic humour, reserve, and caprice, that the experience "
    "of three and twenty years had been insufficient to make his wife understand his character. Her mind was less "
    "difficult to develop. She was a woman of mean understanding, little information, and uncertain temper.",
)

# The sentences of sentences_with_pauses: no phrase repeats, so a repeated n-gram in a transcript is the decoder's.
SENTENCES = (
    "Speech recognition has changed a great deal over the last few decades, moving from small vocabularies to "
    "open conversation.",
    "Early systems could understand only a handful of words, spoken slowly and carefully by a single trained speaker.",
    "Marie Curie carried out her research on radioactivity in a small laboratory in Paris, with very little money.",
    "Modern models learn from thousands of hours of recorded audio, paired with the text that people wrote down.",
    "The first satellites were launched more than sixty years ago, showing that space travel was possible.",
    "Today a telephone in your pocket can transcribe a meeting while it is still taking place.",
    "Researchers continue to improve these systems every year, and the results are becoming more accurate and "
    "more useful.",
    "Engineers who build them must test every change carefully, because small mistakes can hide in long recordings.",
    "A quiet room helps, but good models also cope with noise, music, and people talking over each other.",
    "Thank you for listening to this short story about machines that learned to hear.",
)
SENTENCE_GAP = 1.0  # seconds of silence after each sentence

# Single words of the word-timing clip and the silences (seconds) after each, a repeating pattern.
TIMING_WORDS = tuple(
    (
        "morning river garden window yellow silver travel simple number mountain "
        "paper quiet forest happy market winter candle orange letter castle "
        "bottle summer pencil doctor basket rabbit thunder kitchen"
    ).split()
)
TIMING_GAPS = (0.25, 0.4, 0.15, 0.6, 0.3, 0.2, 0.5)


def espeak(text: str, voice: str, speed: int = SPEED) -> np.ndarray:
    """``text`` spoken by espeak-ng, float32 at 16 kHz."""
    import soundfile
    import soxr

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
        samples, rate = soundfile.read(path, dtype="float32")
    return soxr.resample(samples, rate, SAMPLE_RATE).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


def trim(samples: np.ndarray) -> np.ndarray:
    loud = np.nonzero(np.abs(samples) > TRIM_THRESHOLD)[0]
    return samples[loud[0] : loud[-1] + 1] if len(loud) else samples


def synthesize_paragraphs(paragraphs: tuple[str, ...], gaps: tuple[float, ...] = (0.6,)) -> np.ndarray:
    """Each paragraph in the next voice, joined by the silences of ``gaps`` in turn."""
    parts = []
    for index, text in enumerate(paragraphs):
        parts.append(espeak(text, VOICES[index % len(VOICES)]))
        parts.append(silence(gaps[index % len(gaps)]))
    return np.concatenate(parts)


def synthesize_prose(seconds: float) -> tuple[np.ndarray, str]:
    """At least ``seconds`` of the prose (repeated with other voices when the texts run out) and its words."""
    parts: list[np.ndarray] = []
    texts: list[str] = []
    total = 0.0
    index = 0
    while total < seconds:
        text = PROSE[index % len(PROSE)]
        voice = VOICES[(index + index // len(PROSE)) % len(VOICES)]
        speech = espeak(text, voice)
        parts += [speech, silence(0.7)]
        texts.append(text)
        total += len(speech) / SAMPLE_RATE + 0.7
        index += 1
    return np.concatenate(parts), " ".join(texts)


def synthesize_timed(
    texts: tuple[str, ...], voices: tuple[str, ...], gaps: tuple[float, ...], key: str
) -> tuple[np.ndarray, list[dict[str, float | str]]]:
    """Each text in the next voice, trimmed to where it is loud and followed by the next gap of silence, after 0.5 s
    of silence; with each text's true start and end (seconds) under ``key``."""
    parts = [silence(0.5)]
    position = 0.5
    truth: list[dict[str, float | str]] = []
    for index, text in enumerate(texts):
        speech = trim(espeak(text, voices[index % len(voices)]))
        duration = len(speech) / SAMPLE_RATE
        truth.append({key: text, "start": round(position, 3), "end": round(position + duration, 3)})
        gap = gaps[index % len(gaps)]
        parts += [speech, silence(gap)]
        position += duration + gap
    return np.concatenate(parts), truth


def synthesize_word_timing() -> tuple[np.ndarray, list[dict[str, float | str]]]:
    return synthesize_timed(TIMING_WORDS, VOICES[:2], TIMING_GAPS, "word")


def synthesize_sentences() -> tuple[np.ndarray, list[dict[str, float | str]]]:
    """The sentences in the five clearest voices (tiny.en garbles the Scottish one), each followed by
    ``SENTENCE_GAP`` of silence."""
    return synthesize_timed(SENTENCES, VOICES[:5], (SENTENCE_GAP,), "text")


def write_wav(path: Path, samples: np.ndarray) -> None:
    import soundfile

    soundfile.write(path, np.clip(samples, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    paragraphs = PROSE[:3]
    audio = synthesize_paragraphs(paragraphs, gaps=(0.6, 3.0))
    write_wav(OUT_DIR / "longform_60s.wav", audio)
    (OUT_DIR / "longform_60s.txt").write_text(" ".join(paragraphs) + "\n", encoding="utf-8")
    audio, truth = synthesize_word_timing()
    write_wav(OUT_DIR / "word_timing.wav", audio)
    (OUT_DIR / "word_timing.json").write_text(json.dumps({"words": truth}, indent=1) + "\n", encoding="utf-8")
    audio, truth = synthesize_sentences()
    import soundfile

    soundfile.write(OUT_DIR / "sentences_with_pauses.flac", np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    (OUT_DIR / "sentences_with_pauses.json").write_text(
        json.dumps({"sentences": truth}, indent=1) + "\n", encoding="utf-8"
    )
    for path in sorted(OUT_DIR.iterdir()):
        print(f"{path.name}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
