"""``lora-course merge --base MODEL --adapter DIR --out DIR``: a standalone merged model."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("merge", help="merge an adapter into its base model and save a standalone model",
                       description="Merge a LoRA/QLoRA adapter into its base and write a model folder that loads "
                                   "with plain transformers. A QLoRA adapter merges into the dequantized NF4 base.")
    p.add_argument("--base", required=True, help="base model: hub name or local folder")
    p.add_argument("--adapter", required=True, help="adapter folder (PEFT format)")
    p.add_argument("--out", required=True, help="new folder for the merged model (must not exist or be empty)")
    p.add_argument("--quantization", default="auto", choices=["auto", "none", "nf4", "fp4", "8bit"],
                   help="the base's quantization during training (auto: read from the adapter's metadata)")
    p.add_argument("--requantize", action="store_true", help="also measure what re-quantizing the merge to NF4 costs")
    p.add_argument("--allow-base-mismatch", action="store_true",
                   help="merge even if the adapter records another base model")
    p.set_defaults(func=run)


def run(args) -> int:
    from lora_course.adapters import merge_to_directory

    quantization = None if args.quantization == "none" else args.quantization
    report = merge_to_directory(args.base, args.adapter, args.out, quantization=quantization,
                                requantize=args.requantize, allow_mismatch=args.allow_base_mismatch)
    print(json.dumps(report.to_dict(), indent=2))
    return 0
