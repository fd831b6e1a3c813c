"""Full fine-tuning against LoRA (and partial fine-tuning and QLoRA when asked) on the same data for
the same steps: what ``lora-course compare`` runs, the course's first experiment as a table.

Each method trains in its own process: on a CPU the peak memory is the process's resident high
water mark, which only ever grows, so runs sharing a process would inherit each other's peak.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from lora_course.adapters import load_base_for_adapter, load_checked
from lora_course.config import check_config, load_config
from lora_course.config.datasets import BUNDLED_PREFIX, load_records
from lora_course.errors import CourseError
from lora_course.evaluate import generate, side_by_side
from lora_course.models import load_model

COLUMNS = ["method", "trainable", "trainable_pct", "peak_memory_mb", "step_time_s", "tokens_per_s",
           "final_train_loss", "final_eval_loss", "checkpoint_mb"]
# One method's run, in a fresh interpreter: a user's mistake is its one-line message and exit 2, an
# interruption exit 130, as the command's own.
_TRAIN = [sys.executable, "-c", """
import sys
from lora_course.errors import CourseError
from lora_course.recipes.train import train_from_yaml
try:
    sys.exit(130 if train_from_yaml(sys.argv[1])["interrupted"] else 0)
except CourseError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
"""]


class RunFailed(CourseError, RuntimeError):
    """One method's training run ended with an error; its log says why."""


def methods(config, qlora: bool, partial: int) -> dict:
    """The configuration of each method: the same everything, only what is trained differs."""
    runs = {"full": dataclasses.replace(config, adapter=None, freeze_layers=0)}
    if partial:
        runs[f"partial-{partial}"] = dataclasses.replace(config, adapter=None, freeze_layers=partial)
    runs["lora"] = dataclasses.replace(config, adapter="lora", freeze_layers=0)
    if qlora:
        runs["qlora"] = dataclasses.replace(config, adapter="qlora", freeze_layers=0)
    return runs


def compare_from_yaml(path, qlora: bool = False, partial: int = 0, max_steps: int | None = None, prompts: int = 5,
                      output_dir: str | None = None, quiet: bool = False, log=print) -> Path:
    """Train each method, answer held-out prompts with each, write compare.md and compare.json; returns the folder."""
    config = load_config(path, {"max_steps": max_steps} if max_steps else {})
    runs = methods(config, qlora, partial)
    for run_config in runs.values():  # every method's config is checked before the first one trains
        check_config(run_config, str(path))
    for spec in config.datasets:  # and the data is read: a missing file fails here, not in the first run
        load_records(spec)
    out = Path(output_dir or f"{config.output_dir.rstrip('/')}-compare")
    rows = {}
    for name, run_config in runs.items():
        rows[name] = train_in_subprocess(run_config, out / name, quiet=quiet)
        log(f"{name}: {rows[name]['tokens_per_s']:.0f} tokens/s, final loss {rows[name]['final_train_loss']:.3f}")
    answers = answer_prompts(config, {name: out / name for name in runs}, prompts)
    write_comparison(out, rows, answers)
    return out


def train_in_subprocess(config, run_dir: Path, quiet: bool = False) -> dict:
    import yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    raw = dataclasses.asdict(dataclasses.replace(config, output_dir=str(run_dir)))  # None stays null (max_grad_norm)
    (run_dir / "config.yml").write_text(yaml.safe_dump(raw, sort_keys=False))
    done = subprocess.run([*_TRAIN, str(run_dir / "config.yml")], capture_output=quiet, text=True)
    if done.returncode != 0:
        log = f"; its log ends:\n{done.stderr[-3000:]}" if quiet else "; its log is above"
        raise RunFailed(f"training {run_dir.name} failed (exit {done.returncode}){log}")
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
    spec = config.datasets[0]
    if spec.path.startswith(BUNDLED_PREFIX):
        spec = dataclasses.replace(spec, split="test")
        records = load_records(spec)[:n]
    else:
        records = load_records(spec)[-n:]
    return [[m for m in r["messages"] if m["role"] != "assistant"] for r in records]


def answer_prompts(config, run_dirs: dict, n: int) -> dict:
    """The same held-out prompts answered by the base and by each method's result."""
    prompts = held_out_prompts(config, n)
    answers = {"prompts": [p[-1]["content"] for p in prompts]}
    base, tokenizer = load_model(config.base_model)
    answers["base"] = generate(base, tokenizer, prompts, max_new_tokens=32)
    del base
    for name, run_dir in run_dirs.items():
        if (run_dir / "adapter").is_dir():
            model, tokenizer, _ = load_base_for_adapter(run_dir / "adapter", config.base_model)
            load_checked(model, run_dir / "adapter", tokenizer)
        else:
            model, tokenizer = load_model(str(run_dir / "model"))
        answers[name] = generate(model, tokenizer, prompts, max_new_tokens=32)
        del model  # one model in memory at a time
    return answers


def write_comparison(out: Path, rows: dict, answers: dict) -> None:
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
