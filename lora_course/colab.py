"""What the first cell of every chapter and exercise does in Colab after installing the course.

Colab's runtime comes with its own transformers, accelerate, peft... already installed, and some of
them may already be imported. Installing the course upgrades what its version ranges require; a
package that was imported before the upgrade keeps running its old code in this process, next to
new files on disk, and fails later in confusing ways. ``check_runtime`` compares each imported
package's version in memory with the one now installed and, if any was upgraded, says in one line to
restart the runtime, and stops the notebook there.
"""

from __future__ import annotations

import importlib.metadata
import sys

# the course's dependencies (import name -> distribution name) whose upgrade needs a fresh process
WATCHED = {"torch": "torch", "transformers": "transformers", "peft": "peft", "trl": "trl", "accelerate": "accelerate",
           "datasets": "datasets", "bitsandbytes": "bitsandbytes", "safetensors": "safetensors",
           "huggingface_hub": "huggingface_hub", "tokenizers": "tokenizers", "numpy": "numpy"}

RESTART = "Runtime > Restart session"


def upgraded_while_imported(modules=None) -> dict[str, tuple[str, str]]:
    """``{distribution: (version in memory, version installed)}`` for the imported ones that differ."""
    modules = sys.modules if modules is None else modules
    changed = {}
    for name, distribution in WATCHED.items():
        module = modules.get(name)
        loaded = getattr(module, "__version__", None) if module is not None else None
        if loaded is None:
            continue
        try:
            installed = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
        if str(loaded).split("+")[0] != installed.split("+")[0]:
            changed[distribution] = (str(loaded), installed)
    return changed


def restart_message(changed: dict[str, tuple[str, str]]) -> str:
    upgrades = ", ".join(f"{name} {old} -> {new}" for name, (old, new) in sorted(changed.items()))
    return (f"Restart the runtime ({RESTART}), then run this notebook again from the top: installing the course "
            f"upgraded {upgrades}, which this session had already imported.")


def check_runtime() -> None:
    """After the install: stop with one line if the runtime must be restarted, else say nothing."""
    changed = upgraded_while_imported()
    if changed:
        raise SystemExit(restart_message(changed))
