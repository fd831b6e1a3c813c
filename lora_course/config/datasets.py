"""Load the records a configuration names: bundled sets offline, hub data sets where reachable."""

from __future__ import annotations

from pathlib import Path

from lora_course.config.schema import DatasetSpec
from lora_course.data import load_bundled

BUNDLED_PREFIX = "bundled:"


def alpaca_to_messages(row: dict) -> dict:
    """yahma/alpaca-cleaned's instruction / input / output as one user turn and the answer."""
    prompt = row["instruction"] if not row.get("input") else f"{row['instruction']}\n\n{row['input']}"
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]}


def load_records(spec: DatasetSpec) -> list[dict]:
    if spec.path.startswith(BUNDLED_PREFIX):
        return load_bundled(spec.path[len(BUNDLED_PREFIX):], spec.split)
    from lora_course.models.hub import hub_reachable

    if not Path(spec.path).exists() and not hub_reachable():
        raise ValueError(f"Data set {spec.path!r} is on the hub, which this machine cannot reach. "
                         "Fix: use a bundled set (path: bundled:instructions) or a local file.")
    import datasets

    local = Path(spec.path)
    if local.is_file():
        kind = "json" if local.suffix in (".json", ".jsonl") else local.suffix.lstrip(".")
        rows = datasets.load_dataset(kind, data_files=str(local), split="train")
    else:
        rows = datasets.load_dataset(spec.path, split=spec.split)
    records = []
    for i, row in enumerate(rows):
        if spec.type == "alpaca":
            missing = {"instruction", "output"} - set(row)
            if missing:
                raise ValueError(f"{spec.path} row {i} lacks {sorted(missing)} for type alpaca. Fix: set the right type.")
            records.append(alpaca_to_messages(row))
        else:
            if spec.field_messages not in row:
                raise ValueError(f"{spec.path} row {i} has no '{spec.field_messages}' field (it has {sorted(row)}). "
                                 "Fix: set field_messages, or type: alpaca.")
            records.append({"messages": row[spec.field_messages]})
    return records
