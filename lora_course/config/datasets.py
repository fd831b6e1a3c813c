"""Load the records a configuration names: bundled sets offline, hub data sets where reachable."""

from __future__ import annotations

import json
from pathlib import Path

from lora_course.config.schema import DatasetSpec
from lora_course.data import SENTIMENT_LABELS, load_bundled, review_messages
from lora_course.data.hub import alpaca_to_messages
from lora_course.errors import DataError

BUNDLED_PREFIX = "bundled:"


def load_records(spec: DatasetSpec) -> list[dict]:
    """Chat records ({"messages": [...]}) from a bundled set, a local file or a hub data set."""
    if spec.path.startswith(BUNDLED_PREFIX):
        rows = load_bundled(spec.path[len(BUNDLED_PREFIX):], spec.split)
    else:
        rows = _load_rows(spec)
    return [_to_messages(spec, i, row) for i, row in enumerate(rows)]


LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def looks_local(path: str) -> bool:
    """A data path meant as a file: it exists, names a file type, or is written as a path (./x, ../x, /x,
    ~/x, a/b/c). Anything else of the form owner/name is a hub id."""
    if Path(path).expanduser().exists() or Path(path).suffix.lower() in LOCAL_FORMATS:
        return True
    drive = len(path) > 2 and path[1] == ":" and path[0].isalpha() and path[2] in "/\\"  # C:/data, C:\\data
    return drive or path.startswith((".", "/", "~")) or path.count("/") > 1 or "\\" in path


def check_data_path(spec: DatasetSpec) -> None:
    """Fail at once, naming the path, for a local file that is not there or not a format we read."""
    if spec.path.startswith(BUNDLED_PREFIX) or not looks_local(spec.path):
        return
    local = Path(spec.path).expanduser()
    if not local.exists():
        raise DataError(f"Data file {spec.path} does not exist (relative paths start from {Path.cwd()}). "
                        "Fix: check the path in 'datasets', or use a bundled set (path: bundled:instructions).")
    if local.is_file() and local.suffix.lower() not in LOCAL_FORMATS:
        raise DataError(f"Data file {spec.path} has the suffix {local.suffix or '(none)'!r}, which is not a format "
                        f"the trainer reads. Fix: save it as JSONL (one JSON object per line, .jsonl) or as "
                        f"{', '.join(sorted(LOCAL_FORMATS))}.")


def _read_jsonl(path: Path) -> list[dict]:
    """JSON Lines, or one JSON array of objects; every bad line is named with its number."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")  # -sig: a byte-order mark (Excel, Notepad) is no error
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} is not valid JSON (line {e.lineno}: {e.msg}). Fix: write one JSON object per "
                            "line (JSONL), or a valid JSON array of objects.") from None
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path} line {number} is not JSON ({e.msg}): {line[:60]!r}. Fix: the file must be "
                                "JSONL, one JSON object per line.") from None
    bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
    if bad is not None:
        raise DataError(f"{path} record {bad} is a {type(rows[bad]).__name__}, not an object with fields. Fix: one "
                        'JSON object per record, e.g. {"messages": [...]}.')
    if not rows:
        raise DataError(f"{path} holds no records. Fix: add examples, one JSON object per line.")
    return rows


def _load_rows(spec: DatasetSpec):
    from lora_course.models.hub import hub_reachable

    check_data_path(spec)
    local = Path(spec.path).expanduser()
    if local.is_file() and LOCAL_FORMATS[local.suffix.lower()] == "json":
        return _read_jsonl(local)
    if not local.exists() and not hub_reachable():
        raise DataError(f"Data set {spec.path!r} is on the hub, which this machine cannot reach. "
                        "Fix: use a bundled set (path: bundled:instructions) or a local file.")
    import datasets

    try:
        if local.is_file():
            return datasets.load_dataset(LOCAL_FORMATS[local.suffix.lower()], data_files=str(local), split="train")
        return datasets.load_dataset(str(local) if local.exists() else spec.path, split=spec.split)
    except Exception as e:  # noqa: BLE001 - the library's many error types all mean "cannot read this"
        raise DataError(f"Data set {spec.path!r} could not be read: {type(e).__name__}: {str(e)[:300]}. "
                        "Fix: check the path, the split and the file's format.") from e


def _to_messages(spec: DatasetSpec, i: int, row: dict) -> dict:
    if spec.type == "alpaca":
        missing = {"instruction", "output"} - set(row)
        if missing:
            raise DataError(f"{spec.path} row {i} lacks {sorted(missing)} for type alpaca. Fix: set the right type.")
        return alpaca_to_messages(row)
    if spec.type == "classification":
        missing = {"text", "label"} - set(row)
        if missing:
            raise DataError(f"{spec.path} row {i} lacks {sorted(missing)} for type classification "
                             "(it needs text and label). Fix: rename the fields or set the right type.")
        label = SENTIMENT_LABELS[row["label"]] if isinstance(row["label"], int) else row["label"]
        return {"messages": review_messages({"text": row["text"], "label": label})}
    if spec.field_messages not in row:
        raise DataError(f"{spec.path} row {i} has no '{spec.field_messages}' field (it has {sorted(row)}). "
                         "Fix: set field_messages, or type: alpaca.")
    return {"messages": row[spec.field_messages]}
