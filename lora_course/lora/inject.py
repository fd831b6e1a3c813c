"""Put LoRA layers into a model: find the target linear layers, wrap each one, freeze the rest."""

from __future__ import annotations

import re

from torch import nn

from lora_course.errors import TargetModuleError
from lora_course.lora.layer import LoRALinear
from lora_course.lora.settings import ALL_LINEAR, LoraSettings

_LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")


def output_layer_names(model: nn.Module) -> set[str]:
    """The vocabulary projection (lm_head): never a LoRA target under 'all-linear', as in PEFT."""
    names = set()
    get_out = getattr(model, "get_output_embeddings", None)
    out = get_out() if callable(get_out) else None
    for name, module in model.named_modules():
        if module is out or name.split(".")[-1] == "lm_head":
            names.add(name)
    return names


def linear_module_names(model: nn.Module) -> list[str]:
    """Full names of every linear layer except the output head."""
    skip = output_layer_names(model)
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and not isinstance(m, LoRALinear)
            and n not in skip and not _inside_lora(n)]


def _inside_lora(name: str) -> bool:
    return any(part in ("lora_A", "lora_B", "base_layer") for part in name.split("."))


def find_targets(model: nn.Module, settings: LoraSettings) -> list[str]:
    """Resolve ``settings.target_modules`` to the full names of the layers to wrap.

    A name matches a target when it equals it or ends with ``"." + target`` (PEFT's rule).
    A target that matches nothing is an error: a silent no-op adapter trains nothing.
    """
    candidates = linear_module_names(model)
    if settings.target_modules == ALL_LINEAR:
        chosen = candidates
    else:
        chosen = [n for n in candidates if any(n == t or n.endswith("." + t) for t in settings.target_modules)]
        missing = [t for t in settings.target_modules if not any(n == t or n.endswith("." + t) for n in candidates)]
        if missing:
            available = sorted({n.split(".")[-1] for n in candidates})
            raise TargetModuleError(
                f"Target module(s) {missing} not found among the model's linear layers. "
                f"This model has: {', '.join(available)}. Fix: pick from those names, or use 'all-linear'."
            )
    if settings.layers_to_transform is not None:
        wanted = set(settings.layers_to_transform)
        chosen = [n for n in chosen if (m := _LAYER_INDEX.search("." + n + ".")) and int(m.group(1)) in wanted]
        if not chosen:
            raise TargetModuleError(f"layers_to_transform={sorted(wanted)} selects no layer of this model.")
    return chosen


def inject_lora(model: nn.Module, settings: LoraSettings) -> list[str]:
    """Replace each target ``nn.Linear`` by a ``LoRALinear`` and freeze everything but the adapters.

    Returns the full names of the wrapped layers. The base weights get ``requires_grad=False``,
    so autograd never computes their gradients (no memory, no time spent on them).
    """
    targets = find_targets(model, settings)
    model.requires_grad_(False)
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, child)
        setattr(parent, child, LoRALinear(base, settings.r, settings.alpha, settings.dropout, settings.use_rslora))
    _mark_biases_trainable(model, settings.bias)
    model.lora_settings = settings  # remembered for saving; a plain attribute, not a parameter
    model.lora_targets = targets
    return targets


def _mark_biases_trainable(model: nn.Module, bias: str) -> None:
    if bias == "none":
        return
    for name, module in model.named_modules():
        if bias == "lora_only" and not isinstance(module, LoRALinear):
            continue
        inner = module.base_layer if isinstance(module, LoRALinear) else module
        if getattr(inner, "bias", None) is not None:
            inner.bias.requires_grad_(True)


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def trainable_parameter_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]
