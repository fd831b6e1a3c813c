"""``lora-course eval MODEL [--adapter DIR ...] --task NAME``: argument parsing around
``lora_course.recipes.evaluate_models``."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    from lora_course.evaluate import TASKS

    p = sub.add_parser("eval", help="evaluate a model and its adapters on a task",
                       description="Score the base model and each adapter on the same examples, and say whether "
                                   "each difference from the base is more than noise (McNemar, paired bootstrap). "
                                   "Each adapter runs on its base as it was trained (a QLoRA adapter on the NF4 base).")
    p.add_argument("model", help="base model: hub name or local folder")
    p.add_argument("--adapter", action="append", default=[], metavar="DIR", help="adapter folder (repeatable)")
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--limit", type=int, default=None, help="only the first N eval examples")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--no-base", action="store_true", help="skip the base model")
    p.add_argument("--allow-base-mismatch", action="store_true")
    p.add_argument("--previous", metavar="DIR", help="the adapter the new ones would replace: compare each with it "
                   "on the same examples and exit with 1 if one regressed (a CI gate)")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="with --previous: the accuracy drop accepted, e.g. 0.02 for two points (default 0)")
    p.add_argument("--strict", action="store_true",
                   help="with --previous: also fail a drop beyond the tolerance that is within noise")
    p.add_argument("--json", metavar="FILE", help="write all results (per example too) to FILE")
    p.set_defaults(func=run)


def run(args) -> int:
    from lora_course.recipes import evaluate_models

    results = evaluate_models(args.model, args.adapter, args.task, args.limit, args.batch_size,
                              include_base=not args.no_base, allow_mismatch=args.allow_base_mismatch,
                              previous=args.previous, tolerance=args.tolerance, strict=args.strict)
    for name, result in results["runs"].items():
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in _headline(result["metrics"]).items()))
    for comparison in results["comparisons"]:
        print(comparison["summary"])
    for gate in results["regressions"]:
        print(gate["summary"])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if any(not gate["passed"] for gate in results["regressions"]) else 0


def _headline(metrics: dict) -> dict:
    keys = ("exact_match", "parsed_match", "accuracy")
    out = {k: metrics[k] for k in keys if k in metrics}
    if "macro" in metrics:
        out["macro_f1"] = metrics["macro"]["f1"]
    return out
