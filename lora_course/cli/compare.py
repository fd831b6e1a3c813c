"""``lora-course compare CONFIG.yml``: full fine-tuning against LoRA (and partial fine-tuning and
QLoRA when asked) on the same data for the same steps — the course's first experiment as a table.

Each method trains in its own process: on a CPU the peak memory is the process's resident high
water mark, which only ever grows, so runs sharing a process would inherit each other's peak.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

COLUMNS = ["method", "trainable", "trainable_pct", "peak_memory_mb", "step_time_s", "tokens_per_s",
           "final_train_loss", "final_eval_loss", "checkpoint_mb"]


def register(sub) -> None:
    p = sub.add_parser("compare", help="full fine-tuning vs LoRA (vs QLoRA) on the same data and steps",
                       description="Train the configuration with each method and write compare.md / compare.json: "
                                   "parameters, peak memory, step time, tokens/s, losses, checkpoint size, and the "
                                   "same prompts answered by each.")
    p.add_argument("config", help="YAML configuration (its adapter setting is replaced per method)")
    p.add_argument("--qlora", action="store_true", help="also QLoRA (NF4 base)")
    p.add_argument("--partial", type=int, default=0, metavar="N",
                   help="also partial fine-tuning with the first N layers frozen")
    p.add_argument("--max-steps", type=int, default=None, help="override max_steps for every method")
    p.add_argument("--prompts", type=int, default=5, help="held-out prompts answered by each model")
    p.add_argument("--output-dir", default=None, help="default: <output_dir>-compare")
    p.add_argument("--quiet", action="store_true",
                   help="keep each run's own log out of the output (shown only if a run fails); for notebooks")
    p.set_defaults(func=run)


def methods(config, qlora: bool, partial: int) -> dict:
    """The configuration of each method: the same everything, only what is trained differs."""
    runs = {"full": dataclasses.replace(config, adapter=None, freeze_layers=0)}
    if partial:
        runs[f"partial-{partial}"] = dataclasses.replace(config, adapter=None, freeze_layers=partial)
    runs["lora"] = dataclasses.replace(config, adapter="lora", freeze_layers=0)
    if qlora:
        runs["qlora"] = dataclasses.replace(config, adapter="qlora", freeze_layers=0)
    return runs


def run(args) -> int:
    from lora_course.cli import UserError
    from lora_course.config import ConfigError, check_against_model, load_config

    overrides = {"max_steps": args.max_steps} if args.max_steps else {}
    try:
        config = load_config(args.config, overrides)
        runs = methods(config, args.qlora, args.partial)
        for run_config in runs.values():
            problems = check_against_model(run_config)
            if problems:
                raise ConfigError(args.config, problems)
    except ConfigError as e:
        raise UserError(str(e)) from e
    out = Path(args.output_dir or f"{config.output_dir.rstrip('/')}-compare")
    rows = {}
    for name, run_config in runs.items():
        run_dir = out / name
        rows[name] = train_in_subprocess(run_config, run_dir, quiet=args.quiet)
        print(f"{name}: {rows[name]['tokens_per_s']:.0f} tokens/s, final loss {rows[name]['final_train_loss']:.3f}")
    answers = answer_prompts(config, {name: out / name for name in runs}, args.prompts)
    write_comparison(out, rows, answers)
    print(f"written: {out / 'compare.md'}, {out / 'compare.json'}" if args.quiet else (out / "compare.md").read_text())
    return 0


def train_in_subprocess(config, run_dir: Path, quiet: bool = False) -> dict:
    import yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    raw = dataclasses.asdict(dataclasses.replace(config, output_dir=str(run_dir)))
    raw = {k: v for k, v in raw.items() if v is not None or k in ("adapter", "max_steps")}
    (run_dir / "config.yml").write_text(yaml.safe_dump(raw, sort_keys=False))
    command = [sys.executable, "-c", "import sys; from lora_course.cli import main; sys.exit(main(sys.argv[1:]))",
               "train", str(run_dir / "config.yml")]
    done = subprocess.run(command, capture_output=quiet, text=True)
    if done.returncode != 0:
        log = f"; its log ends:\n{done.stderr[-3000:]}" if quiet else "; its log is above"
        raise RuntimeError(f"training {run_dir.name} failed (exit {done.returncode}){log}")
    summary = json.loads((run_dir / "summary.json").read_text())
    counts = summary["parameters"]
    saved = run_dir / ("adapter" if config.adapter else "model")
    return {
        "method": run_dir.name, "trainable": counts["trainable"],
        "trainable_pct": 100 * counts["trainable"] / counts["total"],
        "peak_memory_mb": summary["peak_memory_bytes"] / 2**20,
        "step_time_s": summary["wall_time_s"] / max(summary["steps"], 1), "tokens_per_s": summary["tokens_per_s"],
        "final_train_loss": summary["final_train_loss"], "final_eval_loss": summary["final_eval_loss"],
        "checkpoint_mb": sum(f.stat().st_size for f in saved.rglob("*") if f.is_file()) / 2**20,
    }


def held_out_prompts(config, n: int) -> list[list[dict]]:
    """Prompts none of the methods trained on: a bundled set's test split, else the data's tail."""
    from lora_course.config.datasets import BUNDLED_PREFIX, load_records

    spec = config.datasets[0]
    if spec.path.startswith(BUNDLED_PREFIX):
        spec = dataclasses.replace(spec, split="test")
        records = load_records(spec)[:n]
    else:
        records = load_records(spec)[-n:]
    return [[m for m in r["messages"] if m["role"] != "assistant"] for r in records]


def answer_prompts(config, run_dirs: dict, n: int) -> dict:
    from lora_course.adapters import load_checked
    from lora_course.evaluate import generate
    from lora_course.models import load_model

    prompts = held_out_prompts(config, n)
    answers = {"prompts": [p[-1]["content"] for p in prompts]}
    base, tokenizer = load_model(config.base_model)
    answers["base"] = generate(base, tokenizer, prompts, max_new_tokens=32)
    for name, run_dir in run_dirs.items():
        if (run_dir / "adapter").is_dir():
            quantization = "nf4" if name == "qlora" else None
            model, tokenizer = load_model(config.base_model, quantization=quantization)
            load_checked(model, run_dir / "adapter", tokenizer)
        else:
            model, tokenizer = load_model(str(run_dir / "model"))
        answers[name] = generate(model, tokenizer, prompts, max_new_tokens=32)
    return answers


def write_comparison(out: Path, rows: dict, answers: dict) -> None:
    from lora_course.evaluate import side_by_side

    table = _markdown(list(rows.values()))
    replies = {k: v for k, v in answers.items() if k != "prompts"}
    text = (f"# Full fine-tuning vs LoRA\n\n{table}\n\n## The same held-out prompts\n\n"
            f"{side_by_side(answers['prompts'], replies)}\n")
    (out / "compare.md").write_text(text)
    (out / "compare.json").write_text(json.dumps({"methods": rows, "answers": answers}, indent=2) + "\n")


def _markdown(rows: list[dict]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)
