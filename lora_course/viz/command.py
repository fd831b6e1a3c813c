"""Run the ``lora-course`` command from a notebook cell as a reader runs it in a terminal: in a fresh
process (``python -m lora_course``, so no PATH is needed), its output shown in the cell."""

from __future__ import annotations

import subprocess
import sys


def lora_course(*args: str, check: bool = True) -> int:
    """``lora-course ARGS``; returns its exit status, and with ``check`` raises when it is not 0."""
    done = subprocess.run([sys.executable, "-m", "lora_course", *map(str, args)], capture_output=True, text=True)
    print(done.stdout, end="")
    if done.stderr:
        print(done.stderr, end="", file=sys.stderr)
    if check and done.returncode != 0:
        raise RuntimeError(f"lora-course {' '.join(map(str, args))} exited with {done.returncode}; its message is above")
    return done.returncode
