"""Optimizers and learning-rate schedules by name, as configs spell them."""

from __future__ import annotations

import math

import torch

from lora_course.errors import SettingsError

OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw", "paged_adamw_8bit", "sgd")
SCHEDULERS = ("cosine", "linear", "constant")
# the optimizers bitsandbytes provides, by the class that implements each
_BITSANDBYTES = {"adamw_8bit": "AdamW8bit", "paged_adamw": "PagedAdamW", "paged_adamw_8bit": "PagedAdamW8bit"}


def make_optimizer(params, name: str, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if not params:
        raise SettingsError("No trainable parameters: everything is frozen. Fix: inject LoRA, or choose method 'full'.")
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name in _BITSANDBYTES:
        try:
            import bitsandbytes as bnb
        except ImportError as e:
            raise SettingsError(f"optimizer {name!r} needs bitsandbytes. Fix: pip install bitsandbytes, or use 'adamw'.") from e
        return getattr(bnb.optim, _BITSANDBYTES[name])(params, lr=lr, weight_decay=weight_decay)
    raise SettingsError(f"Unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}.")


def make_scheduler(optimizer, name: str, warmup_steps: int, total_steps: int):
    """Linear warmup to the peak rate, then cosine or linear decay to zero (or constant)."""
    if name not in SCHEDULERS:
        raise SettingsError(f"Unknown lr_scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}.")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if name == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        progress = min(1.0, progress)
        return 0.5 * (1 + math.cos(math.pi * progress)) if name == "cosine" else 1.0 - progress

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
