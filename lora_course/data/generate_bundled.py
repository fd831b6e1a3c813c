"""Generate the bundled offline data sets from a seed. The files in ``bundled/`` are this script's
output; tests/test_bundled_data.py regenerates them and compares bytes.

    python -m lora_course.data.generate_bundled            # rewrite lora_course/data/bundled/

instructions: short tasks with one checkable answer (arithmetic, word problems, string edits,
counting, sorting, unit conversion, calendar arithmetic, field extraction, sequences, capitals),
phrased several ways. The reply is the bare answer, so exact match measures both the skill and
the discipline of answering briefly, which an instruct model does not have before training.

sentiment: short product and film reviews with a positive or negative label, built from
phrases that include negation ("not bad"), contrast ("great cast, but a dull plot") and
intensifiers, so single keywords do not decide the label.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

BUNDLED = Path(__file__).resolve().parent / "bundled"
SEED = 20261122
SIZES = {"instructions": (2000, 200), "sentiment": (2000, 500)}

NAMES = ["Ana", "Ben", "Chloe", "Dev", "Elif", "Farah", "Goran", "Hana", "Ivan", "Jun", "Kemal", "Lena", "Mateo",
         "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara"]
THINGS = ["apples", "books", "marbles", "stickers", "pencils", "coins", "cards", "shells", "stamps", "cookies"]
WORDS = ["planet", "garden", "silver", "window", "rocket", "pencil", "forest", "bridge", "candle", "mirror", "falcon",
         "harbor", "lantern", "meadow", "orange", "puzzle", "quartz", "ribbon", "saddle", "tunnel", "velvet", "walnut",
         "yellow", "zephyr", "anchor", "button", "cactus", "dragon", "engine", "fabric", "glider", "hammer", "island",
         "jigsaw", "kettle", "ladder", "magnet", "needle", "oyster", "pepper", "rabbit", "spider", "turtle", "violin"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid", "Germany": "Berlin",
            "Canada": "Ottawa", "Australia": "Canberra", "Brazil": "Brasilia", "Egypt": "Cairo", "Kenya": "Nairobi",
            "Norway": "Oslo", "Sweden": "Stockholm", "Poland": "Warsaw", "Greece": "Athens", "Turkey": "Ankara",
            "India": "New Delhi", "China": "Beijing", "Peru": "Lima", "Chile": "Santiago", "Portugal": "Lisbon",
            "Ireland": "Dublin", "Austria": "Vienna", "Hungary": "Budapest", "Finland": "Helsinki", "Vietnam": "Hanoi",
            "Thailand": "Bangkok", "Morocco": "Rabat", "Argentina": "Buenos Aires", "Mexico": "Mexico City",
            "Nigeria": "Abuja", "Ghana": "Accra", "Cuba": "Havana", "Iceland": "Reykjavik", "Denmark": "Copenhagen"}
UNITS = [("kilometers", "meters", 1000), ("meters", "centimeters", 100), ("kilograms", "grams", 1000),
         ("hours", "minutes", 60), ("minutes", "seconds", 60), ("liters", "milliliters", 1000), ("days", "hours", 24),
         ("weeks", "days", 7), ("feet", "inches", 12), ("yards", "feet", 3)]
BRIEF = ["", " Reply with the answer only.", " Give just the answer.", " Answer briefly."]


def _arithmetic(r):
    a, b = r.randint(10, 99), r.randint(10, 99)
    op = r.choice(["+", "-", "*"])
    if op == "*":
        b = r.randint(2, 12)
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    word = {"+": "plus", "-": "minus", "*": "times"}[op]
    q = r.choice([f"What is {a} {op} {b}?", f"Compute {a} {word} {b}.", f"Calculate {a} {op} {b}.", f"{a} {op} {b} = ?"])
    return q, str(value)


def _word_problem(r):
    name, thing = r.choice(NAMES), r.choice(THINGS)
    a, b = r.randint(3, 40), r.randint(2, 25)
    if r.random() < 0.5:
        return f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?", str(a + b)
    a = a + b
    return f"{name} had {a} {thing} and gave away {b}. How many {thing} are left?", str(a - b)


def _reverse(r):
    w = r.choice(WORDS)
    return r.choice([f"Reverse the word '{w}'.", f"Spell '{w}' backwards.", f"Write the letters of '{w}' in reverse order."]), w[::-1]


def _uppercase(r):
    w = " ".join(r.sample(WORDS, r.randint(1, 3)))
    return r.choice([f"Write '{w}' in uppercase.", f"Convert to capital letters: {w}", f"Make this all caps: {w}"]), w.upper()


def _count_letter(r):
    w = r.choice(WORDS + ["banana", "mississippi", "balloon", "committee", "bookkeeper", "assessment"])
    letter = r.choice(sorted(set(w)))
    return r.choice([f"How many times does the letter '{letter}' appear in '{w}'?",
                     f"Count the letter '{letter}' in the word '{w}'."]), str(w.count(letter))


def _sort(r):
    nums = r.sample(range(1, 100), r.randint(3, 6))
    desc = r.random() < 0.3
    listed = ", ".join(map(str, nums))
    order = "descending" if desc else "ascending"
    return f"Sort these numbers in {order} order: {listed}", ", ".join(map(str, sorted(nums, reverse=desc)))


def _extreme(r):
    nums = r.sample(range(1, 500), r.randint(4, 7))
    big = r.random() < 0.5
    return f"Which is the {'largest' if big else 'smallest'} number in this list: {', '.join(map(str, nums))}?", str(max(nums) if big else min(nums))


def _convert(r):
    src, dst, factor = r.choice(UNITS)
    n = r.randint(2, 15)
    return r.choice([f"Convert {n} {src} to {dst}.", f"How many {dst} are in {n} {src}?"]), str(n * factor)


def _weekday(r):
    start, n = r.randrange(7), r.randint(1, 30)
    return f"If today is {DAYS[start]}, what day of the week will it be in {n} days?", DAYS[(start + n) % 7]


def _extract(r):
    name, age, city = r.choice(NAMES), r.randint(18, 80), r.choice(list(CAPITALS.values()))
    record = f"Name: {name}; Age: {age}; City: {city}"
    field = r.choice(["Name", "Age", "City"])
    return f"In the record \"{record}\", what is the {field}?", {"Name": name, "Age": str(age), "City": city}[field]


def _sequence(r):
    start, step = r.randint(1, 20), r.randint(2, 9)
    seq = [start + step * i for i in range(4)]
    return f"What number comes next: {', '.join(map(str, seq))}, ...?", str(start + step * 4)


def _capital(r):
    country = r.choice(list(CAPITALS))
    return r.choice([f"What is the capital of {country}?", f"Name the capital city of {country}."]), CAPITALS[country]


def _word_count(r):
    words = r.sample(WORDS, r.randint(3, 9))
    return f"How many words are in this sentence: \"{' '.join(words)}\"?", str(len(words))


def _first_letters(r):
    words = r.sample(WORDS, r.randint(3, 5))
    return f"Write the first letter of each word, joined together: {' '.join(words)}", "".join(w[0] for w in words)


TASKS = {
    "arithmetic": _arithmetic, "word_problem": _word_problem, "reverse": _reverse, "uppercase": _uppercase,
    "count_letter": _count_letter, "sort": _sort, "extreme": _extreme, "convert": _convert, "weekday": _weekday,
    "extract": _extract, "sequence": _sequence, "capital": _capital, "word_count": _word_count,
    "first_letters": _first_letters,
}


def instructions(seed: int = SEED) -> tuple[list[dict], list[dict]]:
    r = random.Random(seed)
    n_train, n_test = SIZES["instructions"]
    seen, records = set(), []
    families = sorted(TASKS)
    misses = {f: 0 for f in families}
    turn = 0
    while len(records) < n_train + n_test:
        if not families:
            raise RuntimeError("The task templates cannot produce enough distinct questions.")
        family = families[turn % len(families)]
        turn += 1
        question, answer = TASKS[family](r)
        if question in seen:  # no duplicates, and so no overlap between train and test
            misses[family] += 1
            if misses[family] > 200:  # a small family (capitals) is used up: the others fill in
                families.remove(family)
            continue
        misses[family] = 0
        seen.add(question)
        records.append({"messages": [{"role": "user", "content": question + r.choice(BRIEF)},
                                     {"role": "assistant", "content": answer}],
                        "answer": answer, "task": family})
    r.shuffle(records)
    return records[:n_train], records[n_train:]


SUBJECTS = ["The film", "This movie", "The sequel", "The documentary", "This blender", "The headphones", "This novel",
            "The restaurant", "The hotel", "This phone", "The game", "The album", "The show", "This laptop"]
POSITIVE = ["was a delight", "exceeded my expectations", "is worth every penny", "kept me hooked", "works perfectly",
            "is beautifully made", "made my week", "is genuinely moving", "is a joy to use", "was a pleasant surprise"]
NEGATIVE = ["was a letdown", "fell apart quickly", "is a waste of money", "bored me to tears", "stopped working",
            "feels cheap", "was painfully slow", "is badly written", "never lived up to the hype", "was a mess"]
NEG_NEGATED = ["was not bad at all", "is not a waste of time", "did not disappoint", "never felt dull"]
POS_NEGATED = ["was not worth it", "is not as good as they say", "did not work as promised", "was never enjoyable"]
PLUS_DETAIL = ["the acting is superb", "the battery lasts for days", "the staff were kind", "the soundtrack is lovely",
               "setup took two minutes", "the ending landed"]
MINUS_DETAIL = ["the plot drags", "the screen scratches easily", "the room was dirty", "the dialogue is clumsy",
                "support never answered", "the ending made no sense"]
INTENSIFY = ["", "really ", "honestly ", "truly ", "absolutely "]


def _review(r) -> dict:
    subject = r.choice(SUBJECTS)
    label = r.choice(["positive", "negative"])
    kind = r.choice(["plain", "negated", "contrast", "detail"])
    good, bad = (POSITIVE, NEGATIVE) if kind != "negated" else (NEG_NEGATED, POS_NEGATED)
    core = r.choice(good if label == "positive" else bad)
    adverb = r.choice(INTENSIFY)
    if kind == "contrast":  # the clause after "but" carries the verdict
        first = r.choice(MINUS_DETAIL if label == "positive" else PLUS_DETAIL)
        text = f"{first.capitalize()}, but {subject.lower()} {adverb}{core}."
    elif kind == "detail":
        detail = r.choice(PLUS_DETAIL if label == "positive" else MINUS_DETAIL)
        text = f"{subject} {adverb}{core}; {detail}."
    else:
        text = f"{subject} {adverb}{core}."
    return {"text": text, "label": label}


def sentiment(seed: int = SEED) -> tuple[list[dict], list[dict]]:
    r = random.Random(seed + 1)
    n_train, n_test = SIZES["sentiment"]
    seen, records = set(), []
    attempts = 0
    while len(records) < n_train + n_test and attempts < 100_000:
        attempts += 1
        review = _review(r)
        if review["text"] not in seen:
            seen.add(review["text"])
            records.append(review)
    if len(records) < n_train + n_test:
        raise RuntimeError("The review grammar cannot produce enough distinct reviews.")
    return records[:n_train], records[n_train:]


def write(out: Path = BUNDLED) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in (("instructions", instructions), ("sentiment", sentiment)):
        for split, records in zip(("train", "test"), make()):
            path = out / f"{name}_{split}.jsonl"
            path.write_text("".join(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n" for rec in records))
            written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        print(f"wrote {path} ({sum(1 for _ in path.open())} records)")
