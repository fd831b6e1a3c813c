"""The data sets shipped inside the package, for work without a hub (see bundled/*.md)."""

from __future__ import annotations

import json
from pathlib import Path

from lora_course.errors import DataError

BUNDLED = Path(__file__).resolve().parent / "bundled"
NAMES = ("instructions", "sentiment")
SPLITS = ("train", "test")


def load_bundled(name: str, split: str = "train", limit: int | None = None) -> list[dict]:
    """Records of a bundled set: instructions -> {"messages", "answer", "task"}; sentiment -> {"text", "label"}."""
    if name not in NAMES or split not in SPLITS:
        raise DataError(f"No bundled data set {name!r} split {split!r}. Available: "
                         f"{', '.join(f'{n}/{s}' for n in NAMES for s in SPLITS)}.")
    path = BUNDLED / f"{name}_{split}.jsonl"
    with path.open(encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    return records[:limit] if limit is not None else records


def review_messages(review: dict | str, with_label: bool = True) -> list[dict]:
    """A review as a chat turn for instruction-style classification."""
    text = review if isinstance(review, str) else review["text"]
    messages = [{"role": "user", "content": f"Is this review positive or negative? Reply with one word.\n\nReview: {text}"}]
    if with_label and not isinstance(review, str):
        messages.append({"role": "assistant", "content": review["label"]})
    return messages


SENTIMENT_LABELS = ("negative", "positive")  # index = class id for sequence classification
