"""Save and load adapters in PEFT's on-disk format.

A folder with ``adapter_config.json`` (the settings, in PEFT's key names) and
``adapter_model.safetensors`` (only the A and B matrices, keyed as PEFT keys them:
``base_model.model.<module>.lora_A.weight``). PEFT reads what we write and we read what it writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from lora_course.errors import AdapterFormatError, SettingsError
from lora_course.lora.inject import inject_lora, lora_layers
from lora_course.lora.settings import LoraSettings

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors an adapter consists of, under PEFT's key names. Like ``Module.state_dict()``, they share
    storage with the model's parameters (on the CPU): clone them to keep a snapshot that training will not
    move."""
    settings: LoraSettings | None = getattr(model, "lora_settings", None)
    if settings is None or not lora_layers(model):
        raise SettingsError("This model has no LoRA layers to save: call inject_lora (or load_adapter) first.")
    state = {}
    for name, param in model.named_parameters():
        keep = "lora_A" in name or "lora_B" in name
        if settings.bias != "none" and name.endswith(".bias") and param.requires_grad:
            keep = True
        if keep:
            state[PEFT_PREFIX + name] = param.detach().cpu().contiguous()
    return state


def save_adapter(model: nn.Module, out_dir: str | Path, base_model_name_or_path: str | None = None) -> Path:
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings: LoraSettings = model.lora_settings
    base = base_model_name_or_path or getattr(model, "name_or_path", None) or None
    module_names = sorted({n.split(".")[-1] for n, _ in lora_layers(model)})
    config = settings.to_adapter_config(base, module_names)
    # Weights first, config last: a folder with a config has complete weights beside it.
    save_file(adapter_state_dict(model), out / WEIGHTS_NAME, metadata={"format": "pt"})
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return out


def read_adapter_config(adapter_dir: str | Path) -> dict:
    path = Path(adapter_dir) / CONFIG_NAME
    if not path.is_file():
        raise AdapterFormatError(f"No {CONFIG_NAME} in {adapter_dir}: this is not a saved adapter folder.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise AdapterFormatError(f"{path} is not valid JSON ({e}); the adapter was not saved completely.") from e


def read_adapter_weights(adapter_dir: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(adapter_dir) / WEIGHTS_NAME
    if not path.is_file():
        legacy = Path(adapter_dir) / "adapter_model.bin"
        if legacy.is_file():
            return torch.load(legacy, map_location="cpu", weights_only=True)
        raise AdapterFormatError(f"No {WEIGHTS_NAME} in {adapter_dir}: the adapter's weights are missing.")
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises several types for truncated or corrupt files
        raise AdapterFormatError(f"{path} could not be read ({e}); the file is truncated or corrupt. "
                                 "Fix: save or download the adapter again.") from e


def load_adapter(model: nn.Module, adapter_dir: str | Path) -> nn.Module:
    """Inject LoRA layers as the adapter's config says and fill them with its weights.

    Every tensor must find its place with the right shape, and every LoRA layer must get a tensor:
    a partial load would give a model that silently differs from the one that was trained.
    """
    config = read_adapter_config(adapter_dir)
    weights = read_adapter_weights(adapter_dir)
    settings = LoraSettings.from_adapter_config(config)
    inject_lora(model, settings)
    own = dict(model.named_parameters())
    problems, loaded = [], set()
    for key, tensor in weights.items():
        name = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
        name = name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")
        if name not in own:
            problems.append(f"unexpected tensor {key}")
        elif own[name].shape != tensor.shape:
            problems.append(f"{key}: shape {tuple(tensor.shape)} in the file, {tuple(own[name].shape)} in the model")
        else:
            with torch.no_grad():
                own[name].copy_(tensor.to(own[name].dtype))
            loaded.add(name)
    expected = {n for n in own if "lora_A" in n or "lora_B" in n}
    problems += [f"missing tensor for {n}" for n in sorted(expected - loaded)]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise AdapterFormatError(
            f"Adapter {adapter_dir} does not fit this model ({shown}). It was probably trained on another "
            f"base model (it names {config.get('base_model_name_or_path')!r})."
        )
    return model
