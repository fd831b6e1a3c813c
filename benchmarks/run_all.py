"""Every benchmark, one command: results as JSON and markdown per benchmark, a summary of every
ratio with its spread (summary.json, summary.md) and a plot of them (summary.png).

    .venv/bin/python benchmarks/run_all.py                # the real suite on SmolLM2 (long on a CPU)
    .venv/bin/python benchmarks/run_all.py --smoke        # one short repeat of each on the tiny model (CI)
    .venv/bin/python benchmarks/run_all.py --only training inference --repeats 3

1 training      the package's trainer vs TRL SFTTrainer, transformers Trainer + PEFT, a bare loop
2 lora_vs_full  step time and memory, with the compute each must do
3 qlora_vs_lora memory and step time
4 inference     base, adapter unmerged, adapter merged
5 memory_grid   the memory estimate against exact accounting (scripts/memory_grid.py)
6 grader        submissions graded per minute, two workers against one
7 padding_free  padding-free batches against padded ones: tokens/s, memory, equal losses enforced
8 torch_compile compile: true against eager: steady-state tokens/s after warm-up, equal losses enforced
9 chunked_loss  the output head and loss in chunks of target rows against all at once: peak memory, speed

The real suite runs each benchmark in its own process (so no benchmark's memory or allocator
state leaks into the next); --smoke runs them in this one, to save the imports.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import OUT_DIR, ROOT, machine, markdown_table  # noqa: E402

BENCHMARKS = ("training", "lora_vs_full", "qlora_vs_lora", "inference", "memory_grid", "grader", "padding_free",
              "torch_compile", "chunked_loss")
OWN_MODEL = ("chunked_loss",)  # builds its own model (the tiny Llama with a 128K vocabulary): no --model


def argv_for(name: str, args) -> list[str] | None:
    if name == "memory_grid":
        return ["--out", str(args.out)] + (["--models", "tiny", "--quick"] if args.smoke else [])
    argv = ["--out", str(args.out)] + (["--smoke"] if args.smoke else [])
    if args.repeats and not args.smoke:
        argv += ["--repeats", str(args.repeats)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.model and not args.smoke and name not in OWN_MODEL:
        argv += ["--model", args.model]
    if name == "training" and args.profile:
        argv.append("--profile")
    return argv


def script(name: str) -> Path:
    return ROOT / "scripts" / "memory_grid.py" if name == "memory_grid" else ROOT / "benchmarks" / f"{name}.py"


def run_in_process(name: str, argv: list[str]) -> None:
    if name == "memory_grid":
        sys.path.insert(0, str(ROOT / "scripts"))
        import memory_grid

        memory_grid.main(argv)  # its exit code judges the estimate; the summary reports the errors themselves
    else:
        module = __import__(name)
        module.main(argv)


def run_in_subprocess(name: str, argv: list[str]) -> None:
    import os

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(script(name)), *argv], env=env)
    # memory_grid exits 1 when the estimate misses its tolerance: a result, which the summary reports
    if done.returncode not in ((0, 1) if name == "memory_grid" else (0,)):
        raise RuntimeError(f"{script(name).name} exited with {done.returncode}")


def summarize(name: str, out: Path) -> dict:
    """The ratios a benchmark reports, in one shape: name, ratio, min, max, note."""
    data = json.loads((out / f"{name}.json").read_text())
    if name == "memory_grid":
        ratios = [r["estimated_mib"] / r["measured_mib"] for r in data if r["measured_mib"]]
        worst = max(abs(r["total_error"]) for r in data)
        return {"ratios": [{"name": f"memory estimate / measured, {len(data)} setups", "ratio": _median(ratios),
                            "min": min(ratios), "max": max(ratios), "note": f"worst total error {worst:.2%}",
                            "differs": "the estimate from the model's config vs every tensor of a real step, "
                                       "counted (fp32, CPU: the tensors a step keeps, not the allocator's peak)"}]}
    ratios = []
    for r in data["ratios"]:
        ratios.append({"name": r.get("name") or f"{r.get('key', '')} {r['of']}", "ratio": r["ratio"],
                       "min": r.get("min"), "max": r.get("max"), "note": r.get("note", ""),
                       "differs": r.get("differs", "")})
    return {"ratios": ratios, "machine": data.get("machine"), "model": data.get("model")}


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [(b, r) for b, s in summary["benchmarks"].items() for r in s.get("ratios", [])
             if isinstance(r["ratio"], (int, float)) and math.isfinite(r["ratio"]) and r["ratio"] > 0]
    fig, ax = plt.subplots(figsize=(8, 0.36 * len(items) + 1.4))
    for y, (bench, r) in enumerate(items):
        lo = r["min"] if isinstance(r.get("min"), (int, float)) and math.isfinite(r["min"]) else r["ratio"]
        hi = r["max"] if isinstance(r.get("max"), (int, float)) and math.isfinite(r["max"]) else r["ratio"]
        ax.errorbar(r["ratio"], y, xerr=[[r["ratio"] - lo], [hi - r["ratio"]]], fmt="o", capsize=3,
                    color=f"C{list(summary['benchmarks']).index(bench)}")
    ax.set_yticks(range(len(items)), [f"{b}: {r['name']}" for b, r in items], fontsize=7)
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("ratio (median; bars: min .. max over interleaved rounds)")
    ax.set_title(f"Benchmarks on {summary['machine']['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="one short repeat of each on the tiny model")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (each benchmark's default if unset)")
    parser.add_argument("--model", default=None, help="model for training, lora_vs_full, qlora_vs_lora, inference, "
                        "padding_free and torch_compile")
    parser.add_argument("--profile", action="store_true", help="profile one run of each training peer")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads in every benchmark")
    parser.add_argument("--in-process", action="store_true", help="run the benchmarks in this process (default with --smoke)")
    parser.add_argument("--out", type=Path, default=None, help=f"default {OUT_DIR} ({OUT_DIR / 'smoke'} with --smoke)")
    args = parser.parse_args(argv)
    args.out = args.out or (OUT_DIR / "smoke" if args.smoke else OUT_DIR)
    args.out.mkdir(parents=True, exist_ok=True)
    in_process = args.in_process or args.smoke
    summary = {"machine": machine(), "smoke": args.smoke, "command": " ".join(["benchmarks/run_all.py", *(argv or sys.argv[1:])]),
               "benchmarks": _kept_results(args)}
    for name in args.only:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        (args.out / f"{name}.json").unlink(missing_ok=True)  # a stale result must not pass for a fresh one
        try:
            (run_in_process if in_process else run_in_subprocess)(name, argv_for(name, args))
            summary["benchmarks"][name] = {"status": "ok", "seconds": time.perf_counter() - start,
                                           "run_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                           **summarize(name, args.out)}
        except Exception as e:  # noqa: BLE001 - one broken benchmark must not hide the others' results
            traceback.print_exc()
            summary["benchmarks"][name] = {"status": "failed", "error": f"{type(e).__name__}: {e}",
                                           "seconds": time.perf_counter() - start}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    rows = [{"benchmark": b, "ratio": r["name"], "median": r["ratio"], "spread": _spread(r),
             "what differs": r.get("differs", "")} for b, s in summary["benchmarks"].items() for r in s.get("ratios", [])]
    skipped = [f"- {b}: {s['status']} ({s.get('reason') or s.get('error')})" for b, s in summary["benchmarks"].items()
               if s["status"] != "ok"]
    (args.out / "summary.md").write_text(
        f"# Benchmark summary\n\nMachine: {summary['machine']['device']}, torch {summary['machine']['torch']}, "
        f"{summary['machine']['cpu_threads']} threads{' (smoke run: numbers mean nothing)' if args.smoke else ''}\n\n"
        + markdown_table(rows, ["benchmark", "ratio", "median", "spread", "what differs"]) + "\n\n"
        + "\n".join(skipped) + "\n")
    plot(summary, args.out / "summary.png")
    print((args.out / "summary.md").read_text())
    failed = [b for b, s in summary["benchmarks"].items() if s["status"] == "failed"]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")
    return summary


def _kept_results(args) -> dict:
    """With --only, the other benchmarks' results of the last run in the same folder stay in the summary
    (each carries its own run_at), so rerunning one benchmark does not wipe the page's other numbers."""
    previous = args.out / "summary.json"
    if set(args.only) == set(BENCHMARKS) or not previous.exists():
        return {}
    old = json.loads(previous.read_text())
    if old.get("smoke") != args.smoke or old.get("machine", {}).get("device") != machine()["device"]:
        return {}  # a smoke run's or another machine's numbers must not sit beside these
    return {name: result for name, result in old.get("benchmarks", {}).items() if name not in args.only}


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _spread(r: dict) -> str:
    if isinstance(r.get("min"), (int, float)) and isinstance(r.get("max"), (int, float)):
        return f"{r['min']:.3f} .. {r['max']:.3f}" + (f" ({r['note']})" if r.get("note") else "")
    return r.get("note") or ""


if __name__ == "__main__":
    main()
