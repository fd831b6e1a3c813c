"""The memory estimate against the exact accounting of one real training step, over the grid:
tiny model and SmolLM2-135M-Instruct x full / LoRA / QLoRA x checkpointing off / on x micro-batch
{1, 4} x sequence length {128, 512}, SDPA attention (transformers' default, and the estimate's), fp32.
What it compares is what a step keeps (``Breakdown.tensors``); the peak with the step's temporaries is
checked against the CPU allocator in tests/test_memory.py. Writes benchmarks/out/memory_grid.{json,md}.

    .venv/bin/python scripts/memory_grid.py [--models tiny smollm2] [--quick] [--out DIR]
"""

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

from lora_course import SMOLLM2
from lora_course.memory import COMPONENTS, Setup, estimate
from lora_course.memory.fit import WHOLE_MODEL_METHODS
from lora_course.models import TINY
from lora_course.recipes import measure

OUT = Path(__file__).resolve().parent.parent / "benchmarks" / "out"
MODELS = {"tiny": TINY, "smollm2": SMOLLM2}


def error(e: int, m: int) -> float:
    return (e - m) / m if m else (0.0 if e == 0 else float("inf"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--quick", action="store_true", help="micro-batch 1 and sequence 128 only")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for memory_grid.json and .md")
    args = parser.parse_args(argv)
    batches, lengths = ([1], [128]) if args.quick else ([1, 4], [128, 512])
    rows = []
    for key in args.models:
        for method, ckpt, b, t in itertools.product(WHOLE_MODEL_METHODS, [False, True], batches, lengths):
            setup = Setup(method=method, r=16, gradient_checkpointing=ckpt, micro_batch_size=b, sequence_length=t,
                          attn_implementation="sdpa")
            start = time.perf_counter()
            est, got = estimate(MODELS[key], setup), measure(MODELS[key], setup)
            components = {c: (getattr(est, c), getattr(got, c)) for c in COMPONENTS if c != "overhead"}
            worst = max((abs(error(e, m)) for e, m in components.values() if m or e), default=0.0)
            rows.append({"model": key, "method": method, "checkpointing": ckpt, "micro_batch": b, "sequence": t,
                         "estimated_mib": est.tensors / 2**20, "measured_mib": got.tensors / 2**20,
                         "total_error": error(est.tensors, got.tensors), "worst_component_error": worst,
                         "components": components, "seconds": time.perf_counter() - start})
            print(f"{key:8} {method:6} ckpt={ckpt!s:5} B={b} T={t:4}  estimated {rows[-1]['estimated_mib']:9.1f} MiB"
                  f"  measured {rows[-1]['measured_mib']:9.1f} MiB  total {rows[-1]['total_error']:+.2%}"
                  f"  worst component {worst:.2%}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory_grid.json").write_text(json.dumps(rows, indent=2) + "\n")
    header = "| model | method | ckpt | B | T | estimated MiB | measured MiB | total error | worst component |\n" + \
             "|---|---|---|---|---|---|---|---|---|\n"
    lines = [f"| {r['model']} | {r['method']} | {'on' if r['checkpointing'] else 'off'} | {r['micro_batch']} | "
             f"{r['sequence']} | {r['estimated_mib']:,.1f} | {r['measured_mib']:,.1f} | {r['total_error']:+.2%} | "
             f"{r['worst_component_error']:.2%} |" for r in rows]
    worst_total = max(abs(r["total_error"]) for r in rows)
    worst_component = max(r["worst_component_error"] for r in rows)
    summary = f"\nWorst total error {worst_total:.2%}; worst component error {worst_component:.2%}.\n"
    (args.out / "memory_grid.md").write_text(header + "\n".join(lines) + "\n" + summary)
    print(summary)
    return 0 if worst_total <= 0.10 and worst_component <= 0.15 else 1


if __name__ == "__main__":
    sys.exit(main())
