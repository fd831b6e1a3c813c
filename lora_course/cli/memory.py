"""``lora-course memory MODEL``: will this training setup fit, and what would?"""

from __future__ import annotations

import json
import re

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20,
          "gib": 2**30, "tib": 2**40}


def register(sub) -> None:
    from lora_course.lora import ATTENTION
    from lora_course.memory import METHODS, OPTIMIZERS
    from lora_course.memory.breakdown import ATTENTION_IMPLEMENTATIONS, DEVICES
    from lora_course.models.dtypes import DTYPE_BYTES

    p = sub.add_parser("memory", help="estimate the training memory of a setup (and what fits a GPU)",
                       description="Estimate weights, quantization constants, gradients, optimizer states, "
                                   "activations, logits and overhead from the model's config alone (no weights).")
    p.add_argument("model", help="hub name, local folder, or a config.json")
    p.add_argument("--method", default="lora", choices=METHODS)
    p.add_argument("--r", type=int, default=16)
    p.add_argument("--target-modules", default=",".join(ATTENTION), help="comma-separated, or all-linear")
    p.add_argument("--frozen-layers", type=int, default=0, help="partial: the first N layers frozen")
    p.add_argument("--dtype", default=None, choices=list(DTYPE_BYTES),
                   help="parameter dtype (default: bfloat16 with --gpu-memory, else float32)")
    p.add_argument("--mixed-precision", action="store_true", help="16-bit autocast (default with --gpu-memory)")
    p.add_argument("--pure-bf16", action="store_true", help="bf16 weights, activations and gradients, no autocast "
                   "(LitGPT's bf16-true, torchtune)")
    p.add_argument("--optimizer", default="adamw", choices=OPTIMIZERS)
    p.add_argument("--micro-batch-size", type=int, default=1)
    p.add_argument("--sequence-length", type=int, default=512)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--attn-implementation", default="sdpa", choices=ATTENTION_IMPLEMENTATIONS)
    p.add_argument("--loss-chunk-rows", type=int, default=None, help="the trainer's chunked loss: rows at a time")
    p.add_argument("--device", default=None, choices=DEVICES,
                   help="where it runs (default: cuda for 16-bit setups, else cpu); cuda adds the context allowance")
    p.add_argument("--gpu-memory", default=None, metavar="SIZE", help="e.g. 16GB or 24GiB: adds a verdict and "
                   "the largest micro-batch and sequence length that fit, per method")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def parse_size(text: str) -> int:
    from lora_course.errors import UsageError

    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise UsageError(f"--gpu-memory {text!r} is not a size. Fix: write it like 16GB, 24GiB or 80GB.")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def run(args) -> int:
    from lora_course.errors import UsageError
    from lora_course.lora import ALL_LINEAR
    from lora_course.memory import Setup, memory_report

    capacity = parse_size(args.gpu_memory) if args.gpu_memory else None
    if args.pure_bf16 and (args.mixed_precision or args.dtype not in (None, "bfloat16")):
        raise UsageError("--pure-bf16 means bf16 weights without autocast. Fix: drop --mixed-precision and --dtype.")
    dtype = "bfloat16" if args.pure_bf16 else args.dtype or ("bfloat16" if capacity else "float32")
    mixed = args.mixed_precision or (capacity is not None and dtype != "float32" and not args.pure_bf16)
    targets = ALL_LINEAR if args.target_modules == ALL_LINEAR else args.target_modules.split(",")
    setup = Setup(method=args.method, r=args.r, target_modules=targets, frozen_layers=args.frozen_layers,
                  param_dtype=dtype, optimizer=args.optimizer, mixed_precision=mixed,
                  micro_batch_size=args.micro_batch_size, sequence_length=args.sequence_length,
                  gradient_checkpointing=args.gradient_checkpointing, attn_implementation=args.attn_implementation,
                  loss_chunk_rows=args.loss_chunk_rows, device=args.device)
    report = memory_report(args.model, setup, capacity)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return 0
    print(f"{args.model}, {setup.method}, micro-batch {setup.micro_batch_size} x {setup.sequence_length} tokens, "
          f"{setup.precision}{', checkpointing' if setup.gradient_checkpointing else ''}, {setup.optimizer}, "
          f"{setup.attn_implementation} attention, on {setup.target_device}")
    print(report.breakdown.table())
    for note in report.breakdown.notes:
        print(f"note: {note}")
    if capacity:
        print(f"\n{'fits' if report.fits else 'does NOT fit'} in {capacity / 2**30:.1f} GiB")
        for method, best in report.largest_that_fit.items():
            print(f"  {method:<6} largest micro-batch at {setup.sequence_length} tokens: {best['micro_batch_size']}; "
                  f"longest sequence at micro-batch {setup.micro_batch_size}: {best['sequence_length']}")
    return 0
