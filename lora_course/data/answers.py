"""Checking answers of the bundled instruction set: exact match, and a parser-based match.

Exact match compares the normalized reply with the canonical answer. The parser-based match is
lenient about form, not content: it takes the text after "Answer:" when there is one, compares
numbers as numbers (so "3000.0" matches "3000") and accepts the canonical answer as the reply's
first line; it never accepts an answer merely contained somewhere in a long reply.
"""

from __future__ import annotations

import re

_PUNCT = re.compile(r"[\s.!,;:'\"`]+$|^[\s'\"`]+")


def normalize(text: str) -> str:
    text = text.strip()
    text = _PUNCT.sub("", text)
    return re.sub(r"\s+", " ", text).lower()


def extract_answer(reply: str) -> str:
    """The part of a reply that states the answer: after the last 'Answer:', else the first line."""
    match = list(re.finditer(r"answer\s*(?:is)?\s*[:=]\s*", reply, flags=re.IGNORECASE))
    text = reply[match[-1].end():] if match else reply
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def _as_number(text: str):
    cleaned = text.replace(",", "").strip()
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value


def exact_match(reply: str, answer: str) -> bool:
    return normalize(reply) == normalize(answer)


def parsed_match(reply: str, answer: str) -> bool:
    stated = extract_answer(reply)
    if normalize(stated) == normalize(answer):
        return True
    a, b = _as_number(normalize(stated)), _as_number(normalize(answer))
    return a is not None and b is not None and abs(a - b) < 1e-9


def answer_matches(reply: str, record: dict, parser: bool = True) -> bool:
    """Does ``reply`` answer ``record`` (a bundled instruction record with an 'answer' field)?"""
    return (parsed_match if parser else exact_match)(reply, record["answer"])
