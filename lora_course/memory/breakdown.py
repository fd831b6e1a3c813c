"""The two shapes the memory layer speaks in: a training setup, and the breakdown of its memory."""

from __future__ import annotations

import dataclasses

from lora_course.errors import SettingsError
from lora_course.lora.settings import ADAPTER_METHODS, ATTENTION, METHODS
from lora_course.models.dtypes import DTYPE_BYTES
from lora_course.train.optim import OPTIMIZERS

COMPONENTS = ("weights", "quant_constants", "gradients", "optimizer_states", "activations", "logits", "overhead")


@dataclasses.dataclass
class Setup:
    method: str = "lora"
    r: int = 16
    target_modules: str | list[str] = dataclasses.field(default_factory=lambda: list(ATTENTION))
    frozen_layers: int = 0  # partial: the first N decoder layers (and the embeddings) stay frozen
    param_dtype: str = "float32"  # what the weights are stored in (the 16-bit half of QLoRA's compute too)
    optimizer: str = "adamw"
    mixed_precision: bool = False  # bf16/fp16 autocast: activations in 16 bits, master weights fp32
    micro_batch_size: int = 1
    sequence_length: int = 512
    gradient_checkpointing: bool = False
    attn_implementation: str = "eager"  # eager | sdpa

    def __post_init__(self):
        if self.method not in METHODS:
            raise SettingsError(f"method must be one of {METHODS}, got {self.method!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise SettingsError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
        if self.param_dtype not in DTYPE_BYTES:
            raise SettingsError(f"param_dtype must be one of {tuple(DTYPE_BYTES)}, got {self.param_dtype!r}.")
        if self.attn_implementation not in ("eager", "sdpa"):
            raise SettingsError(f"attn_implementation must be eager or sdpa, got {self.attn_implementation!r}.")
        for name in ("micro_batch_size", "sequence_length"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.method in ADAPTER_METHODS and self.r < 1:
            raise SettingsError(f"r must be positive, got {self.r}.")

    @property
    def adapter(self) -> bool:
        return self.method in ADAPTER_METHODS


@dataclasses.dataclass
class Breakdown:
    weights: int
    quant_constants: int
    gradients: int
    optimizer_states: int
    activations: int
    logits: int
    overhead: int  # an allowance for the framework (CUDA context, allocator slack, recomputation); 0 when measured
    cuda_peak: int | None = None  # measured only: torch.cuda.max_memory_allocated over the step
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(getattr(self, c) for c in COMPONENTS)

    @property
    def tensors(self) -> int:
        """Everything but the overhead allowance: what exact accounting can check."""
        return self.total - self.overhead

    def to_dict(self) -> dict:
        d = {c: getattr(self, c) for c in COMPONENTS}
        d["total"] = self.total
        if self.cuda_peak is not None:
            d["cuda_peak"] = self.cuda_peak
        if self.notes:
            d["notes"] = self.notes
        return d

    def table(self, unit: float = 2**30, unit_name: str = "GiB") -> str:
        rows = [f"{c.replace('_', ' '):<18}{getattr(self, c) / unit:>10.3f} {unit_name}" for c in COMPONENTS]
        rows.append(f"{'total':<18}{self.total / unit:>10.3f} {unit_name}")
        return "\n".join(rows)
