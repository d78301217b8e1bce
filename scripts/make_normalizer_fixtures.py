"""Regenerate the text-normalizer reference data.

Run with the peers environment (openai-whisper and Transformers 4.57 installed):

    .venv-peers/bin/python scripts/make_normalizer_fixtures.py

It writes:
- src/whisper_multi/text/normalizers/english.json: the British-to-American spelling map, copied byte for byte from the
  installed openai-whisper package. That file is data from openai-whisper, Copyright (c) 2022 OpenAI, used under
  the MIT licence (see NOTICE).
- tests/fixtures/normalizers/english.json and basic.json: input strings with the output of both peer normalizers.
  openai-whisper's output is the expected value; Transformers' output is stored beside it only where it differs.

The case list is built here: the reference test phrases, hand-written sentences covering each rule, and seeded
random sequences of number words, which exercise the number parser's state machine far beyond hand-written cases.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import whisper.normalizers
from transformers.models.whisper import english_normalizer as hf
from whisper.normalizers import BasicTextNormalizer, EnglishTextNormalizer
from whisper.normalizers.english import EnglishNumberNormalizer, EnglishSpellingNormalizer

ROOT = Path(__file__).resolve().parents[1]
SPELLING_MAP_TARGET = ROOT / "src" / "whisper_multi" / "normalizers" / "english.json"
FIXTURE_DIR = ROOT / "tests" / "fixtures" / "normalizers"
SEED = 20240613
N_RANDOM_NUMBER_SEQUENCES = 600
N_RANDOM_SENTENCES = 300

# The phrases of openai-whisper's own normalizer tests (inputs only; the outputs are recomputed below).
REFERENCE_NUMBER_CASES = [
    "two", "thirty one", "five twenty four", "nineteen ninety nine", "twenty nineteen",
    "two point five million", "four point two billions", "200 thousand", "200 thousand dollars",
    "$20 million", "€52.4 million", "£77 thousands", "two double o eight", "three thousand twenty nine",
    "forty three thousand two hundred sixty", "forty three thousand two hundred and sixty", "nineteen fifties",
    "thirty first", "thirty three thousand and three hundred and thirty third", "three billion", "millions",
    "july third twenty twenty", "august twenty sixth twenty twenty one", "3 14", "3.14", "3 point 2",
    "3 point 14", "fourteen point 4", "two point two five dollars", "two hundred million dollars",
    "$20.1 million", "ninety percent", "seventy six per cent", "double oh seven", "double zero seven",
    "nine one one", "nine double one", "one triple oh one", "two thousandth", "thirty two thousandth",
    "minus 500", "positive twenty thousand", "two dollars and seventy cents", "3 cents", "$0.36",
    "three euros and sixty five cents", "three and a half million", "forty eight and a half dollars", "b747",
    "10 th", "10th",
]  # fmt: skip
REFERENCE_SPELLING_CASES = ["mobilisation", "cancelation"]
REFERENCE_TEXT_CASES = [
    "Let's", "he's like", "she's been like", "10km", "10mm", "RC232",
    "Mr. Park visited Assoc. Prof. Kim Jr.",
]  # fmt: skip

# One or more sentences per rule of the English normalizer.
HAND_WRITTEN_ENGLISH = [
    # hesitations and bracketed words
    "Hmm, I think, uh, we should um go.", "Mm-hmm, mhm, mmm yes.", "Umbrella and hummus are not hesitations.",
    "[MUSIC] Hello there <laughs> friend (inaudible) okay.", "He said (quietly and slowly) that it was fine.",
    "Empty () brackets [] and <> stay?", "Nested [outer [inner] text] remains?", "Unclosed (bracket here",
    # contractions
    "I won't, you can't, and they ain't going.", "Y'all wanna go? We gotta, we're gonna.", "I'ma do it, imma try.",
    "You woulda, coulda, shoulda done it, ma'am.", "He'd been there; she'd gone home; they'd done that.",
    "It's got a dog. He's gone. That's it.", "We'll see, I've seen, I'm here, you'd know, they're out.",
    "Isn't it? Doesn't matter. Wouldn't you? Can't stop, won't stop.", "Rock 'n' roll and 'quoted' words.",
    "the dog 's bone and the cat 'll come", "O'Brien's car isn't here.",
    # titles
    "Dr. Smith and Mrs. Jones met St. Peter.", "Capt. Hook, Gov. Brown, Gen. Lee, Sen. Warren.",
    "Rep. Adams, Pres. Lincoln, Rev. King, Hon. Judge.", "Asst. Manager, Lt. Dan, Col. Sanders, Sr. Smith, Esq.",
    "Ald. Burke and Sen Lee and Jr",
    # numbers, currencies, percents, ordinals, years
    "I have twenty-five apples and three hundred oranges.", "It costs $3.50, or three dollars fifty cents.",
    "The year was nineteen eighty four, then two thousand and twenty.", "About 1,234,567 people; 12,34 odd.",
    "We grew by fifteen percent, then 20 per cent, then 7%.", "He came first, she came second, I came twenty third.",
    "The 1960s and the nineteen nineties and the '80s.", "one point five", "zero point zero five",
    "Call nine one one or double oh seven.", "a hundred and one dalmatians", "one of the ones",
    "Those are ones and twos and sixes.", "It's minus ten degrees, plus or minus five.", "£5 and 50p",
    "€10.99 and ¥200 and ₹300", "$1,000,000 and 1.5 million dollars", "five thousand three hundred and twelve",
    "the 3rd of May, the 22nd and the 101st", "a quarter to three", "three and a half hours",
    "one hundred and twenty three point four five six", "IP address 192.168.0.1", "version 2.0.1 and 3.0",
    "It's 10:30 and 5/8 of an inch", "twelve twelfths", "nine ninth nineth", "a million millionths",
    "one thousand ones", "eleven hundred", "twenty twenty-one", "oh five", "o two o", "two o'clock",
    "the number 1 and the 1s", "1 2 3 4", "- 5 + 6", "minus", "point", "and", "double", "triple double",
    "per cent", "percent", "dollars", "$", "$ 5", "5 $", "¢50", "50¢", "£0.05", "$0.5", "€0.075",
    "twenty dollars and five cents", "two dollars and 7 cents", "$2 ¢7", "three point", "point five",
    "and a half", "half and a half", "two and a half and a half", "one hundred and a half",
    # spelling
    "The colour of the neighbour's favourite theatre.", "We organised a programme to analyse behaviour.",
    "travelled, cancelled, modelling", "Grey aluminium moustache, licence and defence.",
    # diacritics and symbols
    "Café naïve résumé façade coöperate", "Straße, Œuvre, smørrebrød, Łódź, þorn, Æsir, Ðe",
    "Hello, world! How's it going? (Fine.) #hashtag @mention & more * stars ~ tilde",
    "email me at someone@example.com or visit www.example.org.", "100% sure — absolutely… “quoted” ‘text’",
    "C++ and C# and F# languages", "temperature is 30°C or 86°F", "x² + y³ = z½",
    "    leading and   trailing   spaces   ", "tabs\tand\nnewlines\r\nhere", "",
    "ALL CAPS SENTENCE WITH NUMBERS TWENTY TWO", "Mixed123Alpha456Numeric", "A4 paper, MP3 player, 3D movie",
]  # fmt: skip

HAND_WRITTEN_BASIC = [
    "Hello, World! [noise] (cough) <unk> fine.", "Café naïve résumé façade", "Straße Œuvre smørrebrød Łódź þorn",
    "Привет, мир! Как дела?", "Γειά σου Κόσμε", "مرحبا بالعالم، كيف حالك؟", "שלום עולם", "नमस्ते दुनिया, कैसे हो?",
    "你好，世界！今天天气很好。", "こんにちは、世界。カタカナ ｶﾀｶﾅ ｶﾞｷﾞ", "안녕하세요 세계", "สวัสดีชาวโลก ทำ น้ำ",
    "Xin chào thế giới", "ﬁve ﬂowers ①②③ ＡＢＣ１２３", "Ⅻ o'clock, ½ cup, x²", "emoji 😀👍🏽 flags 🇫🇷 family 👨‍👩‍👧",
    "tabs\tand\nnewlines\r\nhere", "  spaces   everywhere  ", "", "mixed: a1b2c3 -- 'quotes' \"double\"",
    "zero\u200bwidth\u200cnon\u200djoiner", "soft\u00adhyphen", "Ελληνικά ΆΈΉ", "Ǆemal ǅ ǆ", "İstanbul ıi",
    "Ærøskøbing Đakovo Ðe", "ﷺ ﷽", "עִבְרִית", "Tiếng Việt có dấu", "각 각 한국어",
    "\u0600\u0661\u0662 \u06dd\u0663", "\u0d4e\u0d15 മലയാളം", "ｶﾞ ﾊﾟ", "tags\U000e0041\U000e0042 end",
]  # fmt: skip

# Vocabulary for random word sequences: every kind of word the number parser distinguishes, plus plain words.
NUMBER_VOCABULARY = (
    "o oh zero one two three four five six seven eight nine ten eleven twelve thirteen fifteen nineteen "
    "ones twos sixes twelves first second third fourth fifth eighth nineth ninth twelfth zeroth thirteenth "
    "twenty thirty forty fifty ninety twenties fifties twentieth ninetieth "
    "hundred thousand million billion trillion hundreds thousands millions hundredth thousandth millionth "
    "minus negative plus positive pound pounds euro euros dollar dollars cent cents per percent "
    "and double triple point a half "
    "0 00 1 2 5 7 10 12 19 20 36 99 100 1000 3.5 0.5 2.25 1.0 007 1s 10th 2nd 3rd 1960s "
    "$5 $0.36 £77 €52.4 ¢3 -5 +20 $ £ 5$ "
    "the cat of year in at one's b747 km"
).split()

SENTENCE_PARTS = {
    "subject": [
        "I", "We", "Dr. Brown", "Mrs. O'Neil", "The colour guard", "Our neighbour", "Y'all", "St. John's team",
        "The organisation", "Prof. Kim", "She", "They've", "He'd", "Lt. Col. Smith",
    ],
    "verb": [
        "paid", "won't pay", "can't afford", "bought", "travelled", "analysed", "counted", "gotta find",
        "is gonna sell", "has got", "'d been given", "cancelled", "realised", "measured",
    ],
    "amount": [
        "twenty five", "$20 million", "three hundred and twelve", "one point five", "£3.50", "1,250",
        "nineteen eighty four", "two thousand and twenty", "forty percent", "seven per cent", "a hundred",
        "eleven and a half", "double oh seven", "three euros and sixty cents", "the first", "twenty third",
        "the 1990s", "minus four", "6 thousand dollars", "0.75", "one", "ones", "nine ninety nine",
    ],
    "object": [
        "apples", "metres of aluminium", "favourite jewellery", "litres of yoghurt", "programmes",
        "grey cheques", "kilometres", "sceptical centres", "colours", "honour", "mum's cheques", "tyres",
    ],
    "tail": [
        ".", "!", "?", ", um, yesterday.", " [laughter]", " (approx.)", " on July fourth.", " at 10:30 a.m.",
        " — hmm — really?", ", didn't they?", " in the 80s.", " for Mr. Smith, Esq.", "", " café-style.",
    ],
}  # fmt: skip


def copy_spelling_map() -> dict[str, str]:
    # english.json is from openai-whisper: Copyright (c) 2022 OpenAI, MIT License. Attribution kept in NOTICE.
    source = Path(whisper.normalizers.__file__).with_name("english.json")
    shutil.copyfile(source, SPELLING_MAP_TARGET)
    return json.loads(source.read_text(encoding="utf-8"))


def random_number_sequences(rng: random.Random) -> list[str]:
    return [" ".join(rng.choices(NUMBER_VOCABULARY, k=rng.randint(1, 8))) for _ in range(N_RANDOM_NUMBER_SEQUENCES)]


def random_sentences(rng: random.Random) -> list[str]:
    sentences = []
    for _ in range(N_RANDOM_SENTENCES):
        parts = {name: rng.choice(options) for name, options in SENTENCE_PARTS.items()}
        sentence = f"{parts['subject']} {parts['verb']} {parts['amount']} {parts['object']}{parts['tail']}"
        sentences.append(sentence.upper() if rng.random() < 0.1 else sentence)
    return sentences


def outcome(normalize: Callable[[str], str], text: str) -> str:
    """The normalized text, or the exception's class name where the normalizer fails on this input."""
    try:
        return normalize(text)
    except Exception as error:  # the reference asserts on a few malformed inputs; record, don't stop
        return f"<{type(error).__name__}>"


def run_peers(
    cases: list[str], ours: Callable[[str], str], theirs: Callable[[str], str]
) -> tuple[list[dict[str, str]], int]:
    """Run both peers; openai-whisper's output is expected, Transformers' is kept only where it differs."""
    records, disagreements = [], 0
    for text in dict.fromkeys(cases):  # unique, order kept
        record = {"input": text, "expected": outcome(ours, text)}
        other = outcome(theirs, text)
        if other != record["expected"]:
            record["transformers"] = other
            disagreements += 1
        records.append(record)
    return records, disagreements


def write_fixture(name: str, payload: dict) -> None:
    path = FIXTURE_DIR / name
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}")


def english_fixture(mapping: dict[str, str], rng: random.Random) -> dict:
    spelling_words = [*sorted(mapping)[::97], "colour", "colours", "neighbour", "cancelation", "mobilisation"]
    numbers, n_disagree_numbers = run_peers(
        REFERENCE_NUMBER_CASES + random_number_sequences(rng), EnglishNumberNormalizer(), hf.EnglishNumberNormalizer()
    )
    spelling, n_disagree_spelling = run_peers(
        REFERENCE_SPELLING_CASES + spelling_words, EnglishSpellingNormalizer(), hf.EnglishSpellingNormalizer(mapping)
    )
    text, n_disagree_text = run_peers(
        REFERENCE_NUMBER_CASES + REFERENCE_TEXT_CASES + HAND_WRITTEN_ENGLISH + random_sentences(rng)
        + random_number_sequences(rng),
        EnglishTextNormalizer(),
        hf.EnglishTextNormalizer(mapping),
    )  # fmt: skip
    print(f"peer disagreements: numbers {n_disagree_numbers}, spelling {n_disagree_spelling}, text {n_disagree_text}")
    return {
        "reference_number_cases": REFERENCE_NUMBER_CASES,
        "reference_spelling_cases": REFERENCE_SPELLING_CASES,
        "reference_text_cases": REFERENCE_TEXT_CASES,
        "number": numbers,
        "spelling": spelling,
        "text": text,
    }


def basic_fixture() -> dict:
    cases = HAND_WRITTEN_BASIC + HAND_WRITTEN_ENGLISH
    fixture = {}
    for remove_diacritics in (False, True):
        for split_letters in (False, True):
            key = f"remove_diacritics={remove_diacritics},split_letters={split_letters}"
            records, n_disagree = run_peers(
                cases,
                BasicTextNormalizer(remove_diacritics=remove_diacritics, split_letters=split_letters),
                hf.BasicTextNormalizer(remove_diacritics=remove_diacritics, split_letters=split_letters),
            )
            print(f"peer disagreements, basic {key}: {n_disagree}")
            fixture[key] = records
    return fixture


def main() -> None:
    mapping = copy_spelling_map()
    FIXTURE_DIR.mkdir(parents=True, exist_ok=True)
    write_fixture("english.json", english_fixture(mapping, random.Random(SEED)))
    write_fixture("basic.json", basic_fixture())


if __name__ == "__main__":
    main()
