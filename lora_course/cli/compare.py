"""``lora-course compare CONFIG.yml``: argument parsing around ``lora_course.recipes.compare_from_yaml``."""

from __future__ import annotations


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


def run(args) -> int:
    from lora_course.recipes import compare_from_yaml

    out = compare_from_yaml(args.config, qlora=args.qlora, partial=args.partial, max_steps=args.max_steps,
                            prompts=args.prompts, output_dir=args.output_dir, quiet=args.quiet)
    print(f"written: {out / 'compare.md'}, {out / 'compare.json'}" if args.quiet else (out / "compare.md").read_text())
    return 0
