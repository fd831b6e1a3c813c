"""Adapter arithmetic: a weighted combination of adapters as a new adapter.

What each combination gives, for ΔW_i = s_i B_i A_i and weights w_i:
- ``cat``: stack the A's (scaled by w_i s_i) and the B's: rank sum(r_i), and ΔW = Σ w_i ΔW_i
  *exactly*, because [B_1 B_2] [A_1; A_2] = B_1 A_1 + B_2 A_2.
- ``linear``: A = Σ √(w_i s_i) A_i and B = Σ √(w_i s_i) B_i (same rank). The product has cross
  terms B_1 A_2 + B_2 A_1, so ΔW ≠ Σ w_i ΔW_i: it is a different update, not the average of two.
- ``svd``: form Σ w_i ΔW_i and truncate to rank ``svd_rank``: exact when svd_rank >= Σ r_i,
  otherwise the best approximation of that rank.
The combination runs through PEFT's ``add_weighted_adapter``; ``weighted_delta`` is the
reference the tests and the chapter compare it with.
"""

from __future__ import annotations

import torch

from lora_course.errors import SettingsError

COMBINATIONS = ("cat", "linear", "svd")


def weighted_delta(deltas: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """Σ w_i ΔW_i: what "adding adapters" should mean for one layer."""
    return sum(w * d for w, d in zip(weights, deltas, strict=True))


def combine_adapters(adapter_set, names: list[str], weights: list[float], new_name: str,
                     combination: str = "cat", svd_rank: int | None = None) -> None:
    if combination not in COMBINATIONS:
        raise SettingsError(f"combination must be one of {COMBINATIONS}, got {combination!r}.")
    for name in names:
        adapter_set._require(name)
    adapter_set.model.add_weighted_adapter(names, weights, new_name, combination_type=combination,
                                           svd_rank=svd_rank)
    adapter_set.use(new_name)


def peft_delta(peft_model, module_name: str, adapter: str) -> torch.Tensor:
    """ΔW of one adapter on one PEFT LoRA layer (``module_name`` as in the base model)."""
    layer = peft_model.get_base_model().get_submodule(module_name)
    return layer.get_delta_weight(adapter)
