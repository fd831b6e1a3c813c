"""The two shapes the memory layer speaks in: a training setup, and the breakdown of its memory."""

from __future__ import annotations

import dataclasses

from lora_course.errors import SettingsError
from lora_course.lora.settings import ADAPTER_METHODS, ATTENTION, METHODS
from lora_course.models.dtypes import DTYPE_BYTES
from lora_course.train.optim import OPTIMIZERS

# What exact accounting of one step can check tensor by tensor (measure_step), then the allowance
COMPONENTS = ("weights", "quant_constants", "gradients", "optimizer_states", "activations", "autocast_copies",
              "logits", "overhead")
# Tensors that live only for a moment of the step; each belongs to one phase, and the phases do not overlap
TRANSIENTS = ("logits_upcast", "logits_gradient", "recomputation", "backward_temporaries", "optimizer_temporaries")
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")  # the last two save the same tensors
DEVICES = ("cpu", "cuda")


@dataclasses.dataclass
class Setup:
    method: str = "lora"
    r: int = 16
    target_modules: str | list[str] = dataclasses.field(default_factory=lambda: list(ATTENTION))
    frozen_layers: int = 0  # partial: the first N decoder layers (and the embeddings) stay frozen
    # what the weights are stored in: under QLoRA, the weights that are not quantized (embeddings, head, norms)
    # and the 16-bit half of the compute. bfloat16 without mixed_precision is pure bf16 training (LitGPT's
    # bf16-true, torchtune): weights, activations and gradients all bf16, no autocast
    param_dtype: str = "float32"
    optimizer: str = "adamw"
    mixed_precision: bool = False  # bf16/fp16 autocast over param_dtype weights: matmuls and activations in 16 bits
    micro_batch_size: int = 1
    sequence_length: int = 512
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"  # what transformers runs by default; eager keeps the T x T scores
    loss_chunk_rows: int | None = None  # the trainer's setting: the output head and loss this many rows at a time
    full_logits: bool = False  # Hugging Face's loss, for peers: every position's logits, upcast to fp32
    nf4_saves_inputs: bool = False  # bitsandbytes before 0.43.2 kept each 4-bit layer's input for backward
    device: str | None = None  # cpu | cuda; None: cuda for 16-bit setups, cpu for fp32 (the CUDA allowance follows)

    def __post_init__(self):
        if self.method not in METHODS:
            raise SettingsError(f"method must be one of {METHODS}, got {self.method!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise SettingsError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
        if self.param_dtype not in DTYPE_BYTES:
            raise SettingsError(f"param_dtype must be one of {tuple(DTYPE_BYTES)}, got {self.param_dtype!r}.")
        if self.attn_implementation not in ATTENTION_IMPLEMENTATIONS:
            raise SettingsError(f"attn_implementation must be one of {ATTENTION_IMPLEMENTATIONS}, "
                                f"got {self.attn_implementation!r}.")
        if self.device is not None and self.device not in DEVICES:
            raise SettingsError(f"device must be one of {DEVICES} (or None), got {self.device!r}.")
        for name in ("micro_batch_size", "sequence_length"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.method in ADAPTER_METHODS and self.r < 1:
            raise SettingsError(f"r must be positive, got {self.r}.")
        if self.loss_chunk_rows is not None and self.loss_chunk_rows < 1:
            raise SettingsError(f"loss_chunk_rows must be at least 1 (or None), got {self.loss_chunk_rows}.")
        if self.loss_chunk_rows is not None and self.full_logits:
            raise SettingsError("full_logits models Hugging Face's unchunked loss; it cannot have loss_chunk_rows. "
                                "Fix: set one of the two.")

    @property
    def adapter(self) -> bool:
        return self.method in ADAPTER_METHODS

    @property
    def pure_16bit(self) -> bool:
        """16-bit weights without autocast: everything, activations and gradients too, in that dtype."""
        return self.param_dtype != "float32" and not self.mixed_precision

    @property
    def precision(self) -> str:
        if self.mixed_precision:
            return f"mixed precision ({self.param_dtype} weights, 16-bit autocast)"
        return f"pure {self.param_dtype}" if self.pure_16bit else "float32"

    @property
    def target_device(self) -> str:
        if self.device is not None:
            return self.device
        return "cuda" if self.mixed_precision or self.param_dtype != "float32" else "cpu"


@dataclasses.dataclass
class Breakdown:
    weights: int
    quant_constants: int
    gradients: int
    optimizer_states: int
    activations: int
    logits: int  # the forward's vocabulary-wide tensors that outlive the loss: the logits and the saved log-softmax
    overhead: int  # CUDA context and allocator slack: outside torch.cuda.max_memory_allocated; 0 on CPU and measured
    autocast_copies: int = 0  # autocast's 16-bit copies of fp32 weights, kept for backward
    logits_upcast: int = 0  # the loss's fp32 copy of 16-bit logits (and a shifted copy), during its forward only
    logits_gradient: int = 0  # the loss's backward: the vocabulary-wide gradients (the logits freed by then)
    recomputation: int = 0  # gradient checkpointing: one layer's activations, rebuilt during backward
    backward_temporaries: int = 0  # the largest op's backward scratch, with the residual stream's gradient
    optimizer_temporaries: int = 0  # the optimizer step's scratch (foreach AdamW: one value per trainable one)
    peak: int | None = None  # estimate: the largest moment of the step (see ``total``); measured: the allocator's peak
    phase: str = ""  # which moment of the step the peak is
    cuda_peak: int | None = None  # measured only: torch.cuda.max_memory_allocated over the step
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def tensors(self) -> int:
        """The tensors exact accounting checks (measure_step): weights, constants, gradients, optimizer
        states, saved activations, autocast copies and the forward's logits."""
        return sum(getattr(self, c) for c in COMPONENTS if c != "overhead")

    @property
    def total(self) -> int:
        """The peak of the step. The forward's logits, the loss's gradients, a recomputed layer and the
        backward's temporaries each exist at a different moment, so the peak is the largest of those moments
        on top of what lives throughout (weights, gradients, optimizer states, saved activations), plus the
        CUDA allowance. Without a peak (a measurement by accounting), the sum of the parts."""
        if self.peak is None:
            return self.tensors + self.overhead + sum(getattr(self, c) for c in TRANSIENTS)
        return self.peak + self.overhead

    @property
    def allocated(self) -> int:
        """The total without the CUDA allowance: what torch.cuda.max_memory_allocated reports."""
        return self.total - self.overhead

    def to_dict(self) -> dict:
        d = {c: getattr(self, c) for c in COMPONENTS + TRANSIENTS}
        d["total"] = self.total
        if self.phase:
            d["peak_phase"] = self.phase
        if self.cuda_peak is not None:
            d["cuda_peak"] = self.cuda_peak
        if self.notes:
            d["notes"] = self.notes
        return d

    def table(self, unit: float = 2**30, unit_name: str = "GiB") -> str:
        lines = [c for c in COMPONENTS if c != "overhead"] + list(TRANSIENTS) + ["overhead"]
        rows = [f"{c.replace('_', ' '):<22}{getattr(self, c) / unit:>10.3f} {unit_name}" for c in lines]
        label = "total (peak)" if self.peak is not None else "total"
        rows.append(f"{label:<22}{self.total / unit:>10.3f} {unit_name}" + (f"   at: {self.phase}" if self.phase else ""))
        return "\n".join(rows)
