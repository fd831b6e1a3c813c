"""QLoRA against LoRA: memory and step time, through the package's trainer, same setup.

    .venv/bin/python benchmarks/qlora_vs_lora.py [--model ...] [--smoke]

QLoRA stores the frozen linear weights in 4-bit NF4 (about 4.127 bits a weight with its
constants, against 32 in fp32 here) and dequantizes each one when a matmul needs it: once in
the forward pass and again in the backward pass (the gradient through the activations needs
the weight). The matmuls are the same; the dequantization is extra elementwise work that reads
the packed weight and writes a full-precision one, so QLoRA trades step time for weight memory.
The embeddings and the output head stay in full precision, as bitsandbytes leaves them.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import base_arguments, prepare, write  # noqa: E402
from methods import add_arguments, compare, describe_setup, smoke, tables  # noqa: E402

METHODS = ["lora", "qlora"]


def main(argv=None) -> dict:
    parser = base_arguments(__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    prepare(args)
    if args.smoke:
        smoke(args)
    print(f"QLoRA vs LoRA: {args.model}", flush=True)
    out = compare(METHODS, args)
    rows, ratios, table = tables(METHODS, out, [("qlora", "lora")])
    meter = out["meter"]
    weights = {m: (meter[m]["weights"] + meter[m]["quant_constants"]) for m in METHODS}
    explanation = {
        "weight_bytes": weights, "weight_ratio": weights["qlora"] / weights["lora"],
        "reading": "Same matmul FLOPs (the adapters and the forward/backward are unchanged); QLoRA adds one "
                   "dequantization of every quantized weight in the forward and one in the backward. The weights "
                   "shrink; activations, logits, adapter gradients and optimizer states do not.",
    }
    step = next(x for x in ratios if x["name"].startswith("step time"))
    table += (f"\n\nQLoRA's weights (with quantization constants) are {explanation['weight_ratio']:.2f}x LoRA's; its "
              f"step takes {step['ratio']:.2f}x as long (rounds {step['min']:.2f} .. {step['max']:.2f}).\n\n"
              f"{describe_setup(args, out)}\n")
    print(table)
    payload = {"model": args.model, "settings": vars(args) | {"out": str(args.out)}, "rows": rows, "ratios": ratios,
               "compute": explanation, "memory_meter": meter, "memory_process": out["process"], "flops": out["flops"],
               "results": {n: r.rounds for n, r in out["results"].items()}}
    write("qlora_vs_lora", payload, table, args.out)
    return payload


if __name__ == "__main__":
    main()
