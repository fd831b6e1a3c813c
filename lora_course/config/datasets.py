"""Load the records a configuration names: bundled sets offline, hub data sets where reachable."""

from __future__ import annotations

from pathlib import Path

from lora_course.config.schema import DatasetSpec
from lora_course.data import SENTIMENT_LABELS, load_bundled, review_messages
from lora_course.data.hub import alpaca_to_messages

BUNDLED_PREFIX = "bundled:"


def load_records(spec: DatasetSpec) -> list[dict]:
    """Chat records ({"messages": [...]}) from a bundled set, a local file or a hub data set."""
    if spec.path.startswith(BUNDLED_PREFIX):
        rows = load_bundled(spec.path[len(BUNDLED_PREFIX):], spec.split)
    else:
        rows = _load_rows(spec)
    return [_to_messages(spec, i, row) for i, row in enumerate(rows)]


def _load_rows(spec: DatasetSpec):
    from lora_course.models.hub import hub_reachable

    local = Path(spec.path)
    if not local.exists() and not hub_reachable():
        raise ValueError(f"Data set {spec.path!r} is on the hub, which this machine cannot reach. "
                         "Fix: use a bundled set (path: bundled:instructions) or a local file.")
    import datasets

    if local.is_file():
        kind = "json" if local.suffix in (".json", ".jsonl") else local.suffix.lstrip(".")
        return datasets.load_dataset(kind, data_files=str(local), split="train")
    return datasets.load_dataset(spec.path, split=spec.split)


def _to_messages(spec: DatasetSpec, i: int, row: dict) -> dict:
    if spec.type == "alpaca":
        missing = {"instruction", "output"} - set(row)
        if missing:
            raise ValueError(f"{spec.path} row {i} lacks {sorted(missing)} for type alpaca. Fix: set the right type.")
        return alpaca_to_messages(row)
    if spec.type == "classification":
        missing = {"text", "label"} - set(row)
        if missing:
            raise ValueError(f"{spec.path} row {i} lacks {sorted(missing)} for type classification "
                             "(it needs text and label). Fix: rename the fields or set the right type.")
        label = SENTIMENT_LABELS[row["label"]] if isinstance(row["label"], int) else row["label"]
        return {"messages": review_messages({"text": row["text"], "label": label})}
    if spec.field_messages not in row:
        raise ValueError(f"{spec.path} row {i} has no '{spec.field_messages}' field (it has {sorted(row)}). "
                         "Fix: set field_messages, or type: alpaca.")
    return {"messages": row[spec.field_messages]}
