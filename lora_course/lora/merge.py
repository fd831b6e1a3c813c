"""Merge, unmerge, switch off, and remove LoRA layers."""

from __future__ import annotations

import contextlib
import warnings

from torch import nn

from lora_course.errors import SettingsError
from lora_course.lora.inject import lora_layers
from lora_course.lora.layer import LoRALinear


def _require_lora(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    layers = lora_layers(model)
    if not layers:
        raise SettingsError("This model has no LoRA layers: call inject_lora (or load_adapter) first.")
    return layers


def merge_lora(model: nn.Module) -> None:
    for _, layer in _require_lora(model):
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    for _, layer in _require_lora(model):
        layer.unmerge()


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain ``nn.Linear`` back: a model
    with the original architecture, which needs neither this package nor PEFT to run."""
    for name, layer in _require_lora(model):
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.base_layer)
    for attr in ("lora_settings", "lora_targets"):
        if hasattr(model, attr):
            delattr(model, attr)
    return model


def set_adapter_enabled(model: nn.Module, enabled: bool) -> None:
    layers = _require_lora(model)
    if not enabled and any(layer.merged for _, layer in layers):
        raise SettingsError("The adapter is merged into the base weights; call unmerge_lora(model) before disabling it.")
    trained_biases = [n for n, p in model.named_parameters() if n.endswith(".bias") and "lora_" not in n and p.requires_grad]
    if not enabled and trained_biases:
        warnings.warn(f"{len(trained_biases)} bias vectors of the base layers train with the adapter (bias='all' or "
                      "'lora_only'), and disabling the adapter does not restore them, so the output is not the base "
                      "model's. Compare against a freshly loaded base instead.", stacklevel=2)
    for _, layer in layers:
        layer.disabled = not enabled


@contextlib.contextmanager
def adapter_disabled(model: nn.Module):
    """Run the base model inside the block, the adapter back on afterwards."""
    set_adapter_enabled(model, False)
    try:
        yield model
    finally:
        set_adapter_enabled(model, True)
