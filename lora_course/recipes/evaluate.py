"""Evaluate a base model and its adapters on one task: what ``lora-course eval`` runs.

Each adapter is scored on the base it was trained on, loaded as its metadata records (a QLoRA
adapter on the NF4 base); the base model itself is scored as it is published. Each adapter's
per-example results are compared with the base's by a paired test (McNemar, paired bootstrap).
With ``previous`` (the adapter the new ones would replace), each new adapter is also compared with
it, example by example, and a regression gate decides whether it may replace it
(``lora_course.evaluate.regression``).
"""

from __future__ import annotations

from pathlib import Path

from lora_course.adapters import AdapterSet, load_base_for_adapter, read_metadata
from lora_course.errors import AdapterFormatError
from lora_course.evaluate import compare_predictions, evaluate_task, regression_gate
from lora_course.evaluate.regression import check_gate_settings
from lora_course.models import load_model


def _adapter_name(i: int, adapter, previous: bool = False) -> str:
    path = Path(adapter)
    folder = path.name if path.name != 'adapter' else path.parent.name
    return f"previous:{folder}" if previous and i == 0 else f"adapter{i - previous}:{folder}"


def _base_key(adapter) -> tuple:
    metadata = read_metadata(adapter) or {}
    return metadata.get("quantization"), metadata.get("dtype")


def _free_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def evaluate_models(model_name: str, adapters: list[str], task: str, limit=None, batch_size: int = 16,
                    include_base: bool = True, allow_mismatch: bool = False, log=print, previous: str | None = None,
                    tolerance: float = 0.0, strict: bool = False) -> dict:
    """``{"model", "task", "runs": {name: result}, "comparisons": [...], "regressions": [...]}`` for the base
    and each adapter. ``previous``: the adapter the others would replace; it is scored too (named
    ``previous:FOLDER``), and ``regressions`` holds one gate per other adapter (``tolerance``: the accuracy
    drop accepted; ``strict``: a drop within noise fails too)."""
    if previous is not None:
        check_gate_settings(tolerance)  # before any model loads
        adapters = [previous, *[a for a in adapters if a != previous]]
    for adapter in adapters:
        if not Path(adapter).is_dir():
            raise AdapterFormatError(f"Adapter folder {adapter} does not exist. Fix: pass the output_dir/adapter "
                                     "of a training run.")
    runs = {}
    if include_base:
        model, tokenizer = load_model(model_name, log=log)
        runs["base"] = evaluate_task(model, tokenizer, task, limit, batch_size).to_dict()
        del model
    # adapters trained on the same kind of base share one loaded base (AdapterSet switches between them)
    groups: dict[tuple, list[int]] = {}
    for i, adapter in enumerate(adapters):
        groups.setdefault(_base_key(adapter), []).append(i)
    for indices in groups.values():
        model, tokenizer, _ = load_base_for_adapter(adapters[indices[0]], model_name, log=log)
        adapter_set = AdapterSet(model, tokenizer)
        for i in indices:
            name = _adapter_name(i, adapters[i], previous is not None)
            adapter_set.load(name, adapters[i], allow_mismatch=allow_mismatch)
            runs[name] = evaluate_task(adapter_set.model, tokenizer, task, limit, batch_size).to_dict()
        del model, adapter_set  # one base in memory at a time
        _free_cuda_cache()
    names = [_adapter_name(i, a, previous is not None) for i, a in enumerate(adapters)]
    runs = {k: runs[k] for k in (["base"] if include_base else []) + names}
    comparisons = []
    if include_base:
        for name in list(runs)[1:]:
            c = compare_predictions([r["correct"] for r in runs["base"]["records"]],
                                    [r["correct"] for r in runs[name]["records"]], "base", name)
            comparisons.append({**c.to_dict(), "summary": c.summary()})
    regressions = []
    if previous is not None:
        def correct(name):
            return [r["correct"] for r in runs[name]["records"]]

        regressions = [regression_gate(correct(names[0]), correct(name), tolerance, names[0], name,
                                       strict=strict).to_dict() for name in names[1:]]
    return {"model": model_name, "task": task, "runs": runs, "comparisons": comparisons, "regressions": regressions}
