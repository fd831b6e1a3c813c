"""``lora-course train CONFIG.yml``: argument parsing around ``lora_course.recipes.train_from_yaml``."""

from __future__ import annotations

import json


def register(sub) -> None:
    from lora_course.train import SAFE_TO_CHANGE

    p = sub.add_parser("train", help="fine-tune a model from a YAML configuration",
                       description="Fine-tune from a YAML file (see examples/). Ctrl-C saves a checkpoint; --resume continues.")
    p.add_argument("config", help="YAML configuration file")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_dir")
    p.add_argument("--allow-change", action="append", default=[], metavar="KEY", choices=SAFE_TO_CHANGE,
                   help="with --resume: let KEY differ from the checkpoint's run (repeatable; one of "
                        f"{', '.join(SAFE_TO_CHANGE)}). --max-steps allows max_steps by itself.")
    p.add_argument("--max-steps", type=int, default=None, help="override max_steps")
    p.add_argument("--output-dir", default=None, help="override output_dir")
    p.set_defaults(func=run)


def run(args) -> int:
    from lora_course.recipes import train_from_yaml
    from lora_course.recipes.train import SUMMARY_KEYS

    overrides = {k: v for k, v in (("max_steps", args.max_steps), ("output_dir", args.output_dir)) if v is not None}
    allow = [*args.allow_change, *(["max_steps"] if args.max_steps is not None else [])]
    summary = train_from_yaml(args.config, overrides, resume=args.resume, allow_changes=allow)
    print(json.dumps({k: summary[k] for k in SUMMARY_KEYS}, indent=2))
    return 130 if summary["interrupted"] else 0
