"""The LoRA layer, from first principles.

A frozen linear layer W (out x in) learns an update of rank r written as two small matrices,
ΔW = B A with A: r x in and B: out x r, so the layer computes

    y = W x + (alpha / r) * B A dropout(x)

A starts random (Kaiming-uniform, as nn.Linear does) and B starts at zero, so ΔW = 0 at step 0:
training starts exactly from the pretrained model, and only A and B receive gradients.
The names (``base_layer``, ``lora_A``, ``lora_B``) are PEFT's, so state-dict keys line up.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lora_course.errors import MergeError, SettingsError


class LoRALinear(nn.Module):
    def __init__(self, base_layer: nn.Linear, r: int, alpha: float, dropout: float = 0.0, use_rslora: bool = False):
        super().__init__()
        if r <= 0:
            raise SettingsError(f"LoRA rank must be positive, got {r}.")
        self.base_layer = base_layer
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self.r = r
        self.alpha = alpha
        self.scaling = alpha / (math.sqrt(r) if use_rslora else r)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # The adapter lives where the base weights live, in fp32 (or the base's own wider float): a 4-bit
        # base has no float dtype to share, and 16-bit adapters would need fp16's gradient scaler to refuse
        # their gradients (it unscales fp32 only) and lose the small updates; PEFT upcasts them the same way
        # (autocast_adapter_dtype). The forward casts into and out of it.
        weight = base_layer.weight
        device = weight.device if weight.device.type != "meta" else torch.device("meta")
        wide = weight.dtype.is_floating_point and torch.finfo(weight.dtype).bits >= 32
        dtype = weight.dtype if wide else torch.float32
        self.lora_A = nn.Linear(self.in_features, r, bias=False, device=device, dtype=dtype)
        self.lora_B = nn.Linear(r, self.out_features, bias=False, device=device, dtype=dtype)
        self.merged = False
        self.disabled = False
        self.reset_lora_parameters()
        base_layer.requires_grad_(False)

    def reset_lora_parameters(self) -> None:
        if self.lora_A.weight.device.type == "meta":
            return
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # nn.Linear's own init
        nn.init.zeros_(self.lora_B.weight)

    def delta_weight(self) -> torch.Tensor:
        """ΔW = scaling * B A, in the shape of the base weight (out x in)."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if self.disabled or self.merged:
            return result
        lora_x = self.lora_dropout(x.to(self.lora_A.weight.dtype))
        return result + (self.lora_B(self.lora_A(lora_x)) * self.scaling).to(result.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold ΔW into the base weight: same outputs, no extra matmuls at inference.

        W + ΔW is computed into a new tensor and checked before it is written (PEFT's ``safe_merge``):
        an adapter with inf or NaN in it (a diverged run) would otherwise corrupt the base for good."""
        if self.merged:
            return
        weight = self.base_layer.weight
        if not weight.dtype.is_floating_point:
            raise MergeError(
                "The base layer is quantized (e.g. bitsandbytes 4-bit), so ΔW cannot be added to it in place. "
                "Fix: merge into the dequantized base instead (lora_course.adapters.merge_to_directory)."
            )
        merged = weight + self.delta_weight().to(weight.dtype)
        if not torch.isfinite(merged).all():
            bad = int((~torch.isfinite(merged)).sum())
            raise MergeError(f"Merging this adapter would put {bad:,} non-finite values (inf/NaN) into the base weight "
                             f"({self.out_features}x{self.in_features}); the base was left unchanged. Fix: the adapter "
                             "diverged in training: lower the learning rate, or use an earlier checkpoint.")
        weight.copy_(merged)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take ΔW back out, restoring the base weight (up to floating-point rounding)."""
        if not self.merged:
            return
        self.base_layer.weight -= self.delta_weight().to(self.base_layer.weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:g}, merged={self.merged}"
