"""LoRA against full fine-tuning: step time and memory, through the package's trainer, same setup.

    .venv/bin/python benchmarks/lora_vs_full.py [--model ...] [--smoke]

The course says LoRA trains 2-3x faster. What each step must compute says how much faster it
can be: both run the same forward pass (2 FLOPs per weight per token) and the same backward
pass through the activations (another 2: every layer above the first adapter passes a gradient
down); only full fine-tuning also computes the weights' gradients (2 more) and runs AdamW over
every parameter (elementwise, memory-bound: it reads and writes weights, gradients and two
moments). So the matmul work is about 6N against 4N per token: at most 1.5x from compute,
plus whatever the optimizer and the gradient memory traffic add. The table puts the measured
ratio next to that analytic one.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import base_arguments, prepare, write  # noqa: E402
from methods import add_arguments, compare, describe_setup, smoke, tables  # noqa: E402

METHODS = ["full", "lora"]


def main(argv=None) -> dict:
    parser = base_arguments(__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    prepare(args)
    if args.smoke:
        smoke(args)
    print(f"LoRA vs full fine-tuning: {args.model}", flush=True)
    out = compare(METHODS, args)
    rows, ratios, table = tables(METHODS, out, [("full", "lora")])
    f_full, f_lora = out["flops"]["full"], out["flops"]["lora"]
    explanation = {
        "forward_gflop": {"full": f_full["forward"] / 1e9, "lora": f_lora["forward"] / 1e9},
        "backward_activations_gflop": {"full": f_full["backward_activations"] / 1e9,
                                       "lora": f_lora["backward_activations"] / 1e9},
        "weight_gradients_gflop": {"full": f_full["weight_gradients"] / 1e9, "lora": f_lora["weight_gradients"] / 1e9},
        "optimizer_elements": {"full": f_full["optimizer_elements"], "lora": f_lora["optimizer_elements"]},
        "matmul_bound_speedup": f_full["total"] / f_lora["total"],
        "reading": "LoRA skips the weight gradients of the frozen layers and the optimizer over them; the forward and "
                   "the backward through the activations stay. If the step were all matmuls the speedup would be the "
                   "FLOPs ratio; the optimizer and gradient traffic (16 bytes per parameter read and written per "
                   "step in fp32 AdamW) add to full fine-tuning's side.",
    }
    step = next(x for x in ratios if x["name"].startswith("step time"))
    table += (f"\n\nMeasured step-time ratio full / LoRA {step['ratio']:.2f} (rounds {step['min']:.2f} .. "
              f"{step['max']:.2f}); the matmul-bound ratio from the FLOPs is {explanation['matmul_bound_speedup']:.2f} "
              f"(forward {explanation['forward_gflop']['full']:.3g} vs {explanation['forward_gflop']['lora']:.3g} "
              f"GFLOP, backward through activations {explanation['backward_activations_gflop']['full']:.3g} vs "
              f"{explanation['backward_activations_gflop']['lora']:.3g}, weight gradients "
              f"{explanation['weight_gradients_gflop']['full']:.3g} vs {explanation['weight_gradients_gflop']['lora']:.3g}; "
              f"AdamW over {explanation['optimizer_elements']['full']:,} vs {explanation['optimizer_elements']['lora']:,} "
              f"parameters).\n\n{describe_setup(args, out)}\n")
    print(table)
    payload = {"model": args.model, "settings": vars(args) | {"out": str(args.out)}, "rows": rows, "ratios": ratios,
               "compute": explanation, "memory_meter": out["meter"], "memory_process": out["process"],
               "flops": out["flops"], "results": {n: r.rounds for n, r in out["results"].items()}}
    write("lora_vs_full", payload, table, args.out)
    return payload


if __name__ == "__main__":
    main()
