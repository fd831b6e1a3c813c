"""The ``lora-course`` command. Each subcommand lives in its own module here and exposes
``register(subparsers)``; ``main`` imports them lazily so ``lora-course --help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys

# name of the subcommand -> module in lora_course.cli that implements it
COMMANDS = {
    "grade": "grade",
    "course": "course",
    "params": "params",
    "train": "train",
    "eval": "eval",
    "merge": "merge",
    "compare": "compare",
    "memory": "memory",
}


def build_parser() -> argparse.ArgumentParser:
    from lora_course import __version__

    parser = argparse.ArgumentParser(prog="lora-course", description="LoRA and QLoRA fine-tuning, from the course.")
    parser.add_argument("--version", action="version", version=f"lora-course {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        importlib.import_module(f"lora_course.cli.{module}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. A ``CourseError`` (anything the user can fix) is printed as its message, which
    names the cause and the fix, with exit status 2 and no traceback."""
    from lora_course.errors import CourseError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CourseError as e:
        print(f"lora-course {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lora-course {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
