"""From a trained adapter to a shipped model, on a CPU with no hub (issue: evaluation and merging).

    .venv/bin/python scripts/adapter_lifecycle.py --adapter runs/smollm2-lora-instructions/adapter

1. the base and the adapter on the held-out instruction set (before / after, McNemar);
2. merge into a standalone folder;
3. reload that folder with transformers alone (no PEFT, no lora_course model code) and answer the
   same prompts: the answers must be the adapter's.
Writes report.md and report.json next to the merged model.
"""

import argparse
import json
import shutil
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

from lora_course import SMOLLM2
from lora_course.adapters import merge_to_directory
from lora_course.adapters.metadata import add_eval_results
from lora_course.recipes import evaluate_models
from lora_course.evaluate import evaluate_task, side_by_side


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=SMOLLM2)
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--out", default="runs/lifecycle")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    results = evaluate_models(args.base, [args.adapter], "instructions", args.limit)
    base_run, adapter_name = results["runs"]["base"], [n for n in results["runs"] if n != "base"][0]
    adapter_run = results["runs"][adapter_name]
    add_eval_results(args.adapter, {"instructions": {k: v for k, v in adapter_run["metrics"].items()}})

    report = merge_to_directory(args.base, args.adapter, out / "merged")
    plain = AutoModelForCausalLM.from_pretrained(out / "merged")
    tokenizer = AutoTokenizer.from_pretrained(out / "merged")
    merged_run = evaluate_task(plain, tokenizer, "instructions", args.limit).to_dict()
    same = sum(a["reply"] == m["reply"] for a, m in zip(adapter_run["records"], merged_run["records"]))

    rows = [("base", base_run), ("adapter (unmerged)", adapter_run), ("merged, plain transformers", merged_run)]
    table = "| model | exact match | parsed match |\n|---|---|---|\n" + "\n".join(
        f"| {name} | {r['metrics']['exact_match']:.1%} | {r['metrics']['parsed_match']:.1%} |" for name, r in rows)
    first = list(range(8))
    answers = side_by_side([base_run["records"][i]["prompt"] for i in first],
                           {name: [r["records"][i]["reply"] for i in first] for name, r in rows})
    summary = {
        "base_model": args.base, "adapter": args.adapter, "examples": len(adapter_run["records"]),
        "exact_match": {name: r["metrics"]["exact_match"] for name, r in rows},
        "parsed_match": {name: r["metrics"]["parsed_match"] for name, r in rows},
        "comparison": results["comparisons"][0]["summary"],
        "merge_max_abs_logit_difference": report.max_abs_logit_difference,
        "merged_replies_identical_to_adapter": f"{same}/{len(merged_run['records'])}",
    }
    (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "report.md").write_text(f"# Adapter lifecycle\n\n{table}\n\n{summary['comparison']}\n\n"
                                   f"Merged vs unmerged: max |logit difference| {report.max_abs_logit_difference:.3g}; "
                                   f"identical replies {summary['merged_replies_identical_to_adapter']}.\n\n{answers}\n")
    print((out / "report.md").read_text())


if __name__ == "__main__":
    main()
