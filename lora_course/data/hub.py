"""The course's hub data sets, where a hub is reachable (Colab, a workstation): the real
``datasets.load_dataset`` path, returning records in the shapes the bundled sets use, so a
chapter swaps one for the other by name. Offline, each fails at once with the fix."""

from __future__ import annotations

from lora_course.data.bundled import SENTIMENT_LABELS
from lora_course.errors import DataError

ALPACA = "yahma/alpaca-cleaned"
IMDB = "imdb"  # stanfordnlp/imdb: 25,000 train and 25,000 test reviews, labels 0 = neg, 1 = pos


class HubDataUnavailable(DataError, RuntimeError):
    """A hub data set asked for on a machine that cannot reach the hub."""


def _load(name: str, split: str):
    from lora_course.models.hub import hub_reachable

    if not hub_reachable():
        raise HubDataUnavailable(
            f"Data set {name!r} is on the Hugging Face hub, which this machine cannot reach. Fix: use the bundled "
            "offline set instead (load_bundled('instructions') or load_bundled('sentiment')), or run where the hub "
            "is reachable (e.g. Colab).")
    import datasets

    return datasets.load_dataset(name, split=split)


def alpaca_to_messages(row: dict) -> dict:
    """Alpaca's instruction / input / output as one user turn and the answer."""
    prompt = row["instruction"] if not row.get("input") else f"{row['instruction']}\n\n{row['input']}"
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]}


def load_alpaca(split: str = "train", limit: int | None = None) -> list[dict]:
    """yahma/alpaca-cleaned (about 51,800 examples; it has only a train split) as chat records."""
    rows = _load(ALPACA, split)
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    return [alpaca_to_messages(row) for row in rows]


def load_imdb(split: str = "train", limit: int | None = None, seed: int = 0) -> list[dict]:
    """IMDB reviews as {"text", "label"} with label names. The hub's splits are sorted by label,
    so a limited sample is drawn from a seeded shuffle, never the first N (all negative)."""
    rows = _load(IMDB, split).shuffle(seed=seed)
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    return [{"text": row["text"], "label": SENTIMENT_LABELS[row["label"]]} for row in rows]
