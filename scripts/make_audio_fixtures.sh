#!/usr/bin/env bash
# Regenerates the speech fixtures in tests/fixtures/audio/: English sentences synthesised by espeak-ng,
# converted by sox to 16 kHz mono 16-bit PCM (Whisper's input format), each with a .txt of the exact words.
# Dithering is off (-D) and sox runs repeatable (-R), so a rerun with the same tool versions gives
# byte-identical files.
set -euo pipefail

OUT_DIR="$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures/audio"
WORK_DIR="$(mktemp -d)"
trap 'rm -rf "$WORK_DIR"' EXIT
mkdir -p "$OUT_DIR"

SPEED=150  # words per minute: espeak-ng's default is 175, a little fast for a clear reference clip

# speak VOICE TEXT RAW_WAV: espeak-ng writes 22050 Hz, converted later.
speak() {
    espeak-ng -v "$1" -s "$SPEED" -w "$3" "$2"
}

# to_whisper_format IN... OUT: join the inputs with 0.3 s of silence and resample to 16 kHz mono 16-bit.
to_whisper_format() {
    local out="${*: -1}"
    local inputs=("${@:1:$#-1}")
    local joined=()
    for f in "${inputs[@]}"; do
        joined+=("$f")
        if [[ "$f" != "${inputs[-1]}" ]]; then
            sox -R -D -n -r 22050 -c 1 -b 16 "$WORK_DIR/gap.wav" trim 0 0.3
            joined+=("$WORK_DIR/gap.wav")
        fi
    done
    sox -R -D "${joined[@]}" -r 16000 -c 1 -b 16 -e signed-integer "$out"
}

# A short clip: one clear sentence, about 5 seconds.
SHORT_TEXT="The quick brown fox jumps over the lazy dog while the farmer watches from the gate."
speak en-us "$SHORT_TEXT" "$WORK_DIR/short.wav"
to_whisper_format "$WORK_DIR/short.wav" "$OUT_DIR/speech_en_short.wav"
printf '%s\n' "$SHORT_TEXT" > "$OUT_DIR/speech_en_short.txt"

# A long clip, under 30 seconds: the opening of the Gettysburg Address (public domain), two voices.
LONG_TEXT_1="Four score and seven years ago our fathers brought forth on this continent, a new nation, conceived in Liberty, and dedicated to the proposition that all men are created equal."
LONG_TEXT_2="Now we are engaged in a great civil war, testing whether that nation, or any nation so conceived and so dedicated, can long endure."
speak en-us "$LONG_TEXT_1" "$WORK_DIR/long1.wav"
speak en-gb "$LONG_TEXT_2" "$WORK_DIR/long2.wav"
to_whisper_format "$WORK_DIR/long1.wav" "$WORK_DIR/long2.wav" "$OUT_DIR/speech_en_25s.wav"
printf '%s %s\n' "$LONG_TEXT_1" "$LONG_TEXT_2" > "$OUT_DIR/speech_en_25s.txt"

for f in "$OUT_DIR"/*.wav; do
    printf '%s: %s s\n' "$(basename "$f")" "$(soxi -D "$f")"
done
