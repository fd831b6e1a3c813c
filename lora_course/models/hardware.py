"""The hardware rules, written once: which precision "auto" means on the device at hand, and the
compute dtype of a 4-bit (QLoRA) base.

    CUDA, compute capability 8.0 and up (A100, L4, H100): bf16, native on those tensor cores
    CUDA below 8.0 (T4 = 7.5, V100 = 7.0): fp16 with a gradient scaler
    CPU (or no CUDA): fp32

``torch.cuda.is_bf16_supported()`` is not the test: on a T4 it answers True because bf16 can be
emulated, and emulated bf16 is several times slower than the fp16 the card computes natively.
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch

from lora_course.errors import SettingsError
from lora_course.models.dtypes import torch_dtype

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NATIVE_BF16_CAPABILITY = (8, 0)  # Ampere: the first tensor cores with bf16


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # fp32, bf16 or fp16
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return torch_dtype(self.precision)

    @property
    def needs_grad_scaler(self) -> bool:
        return self.precision == "fp16"  # fp16's narrow exponent underflows small gradients unless scaled


def cuda_capability(device=None) -> tuple[int, int] | None:
    """(major, minor) of the CUDA device, or None without one. Tests stub this one function."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability(device)


def _device_name(device) -> str:
    try:
        return torch.cuda.get_device_name(device)
    except Exception:  # noqa: BLE001 - a stubbed capability has no real device behind it
        return "CUDA device"


def auto_precision(device=None) -> PrecisionChoice:
    """What "auto" means on ``device`` (default: CUDA if present, else CPU), with the reason why."""
    if device is not None and torch.device(device).type != "cuda":
        return PrecisionChoice("fp32", f"{torch.device(device).type} device: fp32 (16-bit autocast gains little there)")
    capability = cuda_capability(device)
    if capability is None:
        return PrecisionChoice("fp32", "no CUDA device: fp32")
    return precision_for_capability(capability, _device_name(device))


def precision_for_capability(capability: tuple[int, int], name: str = "CUDA device") -> PrecisionChoice:
    """The rule itself, for a card given by its compute capability (7.5 for a T4, 8.0 for an A100, 9.0 for an
    H100): a question answered without the card, e.g. "what would a T4 get?" on a machine without one."""
    if len(capability) != 2 or not all(isinstance(v, int) and v >= 0 for v in capability):
        raise SettingsError(f"a compute capability is (major, minor), e.g. (7, 5) for a T4; got {capability!r}.")
    cc = f"{capability[0]}.{capability[1]}"
    if tuple(capability) >= NATIVE_BF16_CAPABILITY:
        return PrecisionChoice("bf16", f"{name} (compute capability {cc}) computes bf16 natively")
    return PrecisionChoice("fp16", f"{name} (compute capability {cc}) has no native bf16 (emulated, slow): "
                                   "fp16 with a gradient scaler")


def resolve_precision(precision: str, device=None) -> PrecisionChoice:
    """``precision`` as asked, with "auto" decided by ``auto_precision``."""
    if precision not in PRECISIONS:
        raise SettingsError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "auto":
        return auto_precision(device)
    # fp16 on a CPU runs (autocast and the gradient scaler both work there), slowly: it is how the T4's
    # path is tested on a machine without a GPU
    return PrecisionChoice(precision, f"{precision}, as configured")


def qlora_compute_dtype(device=None) -> torch.dtype:
    """The dtype a 4-bit layer dequantizes to for its matmul: the same rule as the training precision."""
    return auto_precision(device).dtype


def autocast(precision: str, device):
    """The autocast context of a resolved precision (none for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch_dtype(precision))
