"""Floating-point dtypes by name, written once: what each costs per value and what torch calls it.

Configs and command lines name dtypes as strings ("bfloat16", or the short "bf16"); the memory
estimate, the parameter counter and the loaders all read these tables."""

from __future__ import annotations

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32"}


def dtype_name(dtype) -> str:
    """The canonical name ("float32", "bfloat16", "float16") of a name, an alias or a torch.dtype."""
    name = str(dtype).removeprefix("torch.")
    return ALIASES.get(name, name)


def torch_dtype(dtype):
    """A torch.dtype from a name, an alias or a torch.dtype (None: float32; "auto" passes through)."""
    import torch

    from lora_course.errors import SettingsError

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    name = dtype_name(dtype)
    if name not in DTYPE_BYTES:
        raise SettingsError(f"Unknown dtype {dtype!r}; use float32, bfloat16 or float16 (or 'auto').")
    return getattr(torch, name)
