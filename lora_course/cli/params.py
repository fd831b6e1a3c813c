"""``lora-course params MODEL``: total and trainable parameters and the adapter's size on disk."""

from __future__ import annotations

import json


def register(sub) -> None:
    from lora_course.lora import ATTENTION
    from lora_course.lora.counting import METHODS
    from lora_course.models.dtypes import DTYPE_BYTES

    p = sub.add_parser("params", help="count total and trainable parameters (no weights are loaded)",
                       description="Count parameters for full fine-tuning, LoRA or QLoRA from the model's config alone.")
    p.add_argument("model", help="hub name, local model folder, or a config.json")
    p.add_argument("--method", choices=METHODS, default="lora")
    p.add_argument("--r", type=int, default=16, help="LoRA rank (default 16)")
    p.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default 2*r)")
    p.add_argument("--targets", default=",".join(ATTENTION),
                   help="comma-separated module names, or all-linear (default: the attention projections)")
    p.add_argument("--layers", default=None, help="only these layer indices, e.g. 0,1,2 (default: all)")
    p.add_argument("--saved-dtype", default="float32", choices=list(DTYPE_BYTES),
                   help="dtype of the saved adapter or model, for its size on disk")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=run)


def run(args) -> int:
    from lora_course.lora.counting import parameter_report
    from lora_course.lora.settings import ALL_LINEAR, LoraSettings

    settings = None
    if args.method != "full":
        targets = ALL_LINEAR if args.targets.strip() == ALL_LINEAR else args.targets
        layers = _layers(args.layers) if args.layers else None
        settings = LoraSettings(r=args.r, alpha=args.alpha if args.alpha is not None else 2 * args.r,
                                target_modules=targets, layers_to_transform=layers)
    report = parameter_report(args.model, args.method, settings, saved_dtype=args.saved_dtype)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    what = "model checkpoint" if args.method == "full" else "adapter file"
    print(f"{report.model} ({report.architecture}), method: {report.method}")
    if report.lora_layers:
        print(f"  LoRA r={settings.r} alpha={settings.alpha:g} on {', '.join(report.target_modules)} ({report.lora_layers} layers)")
    print(f"  total parameters:     {report.total:>15,}")
    print(f"  trainable parameters: {report.trainable:>15,}  ({100 * report.trainable_fraction:.4f}%)")
    print(f"  {what} size:  {_human(report.saved_bytes):>15}  ({report.saved_dtype})")
    return 0


def _layers(text: str) -> list[int]:
    from lora_course.errors import UsageError

    try:
        return [int(i) for i in text.split(",")]
    except ValueError:
        raise UsageError(f"--layers {text!r} is not a list of layer numbers. Fix: write it like 0,1,2.") from None


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1000
    return str(n)
