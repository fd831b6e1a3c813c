"""``lora-course eval MODEL [--adapter DIR ...] --task NAME``: the base and each adapter on one task,
with a paired significance test between each adapter and the base."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    from lora_course.evaluate import TASKS

    p = sub.add_parser("eval", help="evaluate a model and its adapters on a task",
                       description="Score the base model and each adapter on the same examples, and say whether "
                                   "each difference from the base is more than noise (McNemar, paired bootstrap).")
    p.add_argument("model", help="base model: hub name or local folder")
    p.add_argument("--adapter", action="append", default=[], metavar="DIR", help="adapter folder (repeatable)")
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--limit", type=int, default=None, help="only the first N eval examples")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--no-base", action="store_true", help="skip the base model")
    p.add_argument("--allow-base-mismatch", action="store_true")
    p.add_argument("--json", metavar="FILE", help="write all results (per example too) to FILE")
    p.set_defaults(func=run)


def run(args) -> int:
    from lora_course.cli import UserError
    from lora_course.lora import AdapterFormatError
    from lora_course.models import ModelNotAvailableError

    for adapter in args.adapter:
        if not Path(adapter).is_dir():
            raise UserError(f"Adapter folder {adapter} does not exist. Fix: pass the output_dir/adapter of a training run.")
    try:
        results = evaluate_models(args.model, args.adapter, args.task, args.limit, args.batch_size,
                                  include_base=not args.no_base, allow_mismatch=args.allow_base_mismatch)
    except (AdapterFormatError, ModelNotAvailableError) as e:
        raise UserError(str(e)) from e
    for name, result in results["runs"].items():
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in _headline(result["metrics"]).items()))
    for comparison in results["comparisons"]:
        print(comparison["summary"])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _headline(metrics: dict) -> dict:
    keys = ("exact_match", "parsed_match", "accuracy")
    out = {k: metrics[k] for k in keys if k in metrics}
    if "macro" in metrics:
        out["macro_f1"] = metrics["macro"]["f1"]
    return out


def evaluate_models(model_name: str, adapters: list[str], task: str, limit=None, batch_size: int = 16,
                    include_base: bool = True, allow_mismatch: bool = False) -> dict:
    from lora_course.adapters import AdapterSet
    from lora_course.evaluate import compare_predictions, evaluate_task
    from lora_course.models import load_model

    model, tokenizer = load_model(model_name)
    adapter_set = AdapterSet(model, tokenizer)
    runs = {}
    if include_base:
        runs["base"] = evaluate_task(model, tokenizer, task, limit, batch_size).to_dict()
    for i, adapter in enumerate(adapters):
        name = f"adapter{i}:{Path(adapter).name if Path(adapter).name != 'adapter' else Path(adapter).parent.name}"
        adapter_set.load(name, adapter, allow_mismatch=allow_mismatch)
        runs[name] = evaluate_task(adapter_set.model, tokenizer, task, limit, batch_size).to_dict()
    comparisons = []
    if include_base:
        for name in list(runs)[1:]:
            c = compare_predictions([r["correct"] for r in runs["base"]["records"]],
                                    [r["correct"] for r in runs[name]["records"]], "base", name)
            comparisons.append({**c.to_dict(), "summary": c.summary()})
    return {"model": model_name, "task": task, "runs": runs, "comparisons": comparisons}
