"""What a run costs: training FLOPs from the model's shapes, turned into GPU-hours and money.

    tokens      = examples x tokens per example x epochs
    FLOPs       = FLOPs per token x tokens          (``step_flops``: matmuls, by phase)
    GPU-seconds = FLOPs / (peak FLOP/s x MFU)       (MFU: the share of the peak a run achieves)
    cost        = GPU-hours x price per GPU-hour

Per token, every linear layer costs 2 FLOPs per weight forward and 2 more backward to pass the
gradient down to the layer below; only a weight that trains costs 2 more for its own gradient.
Full fine-tuning: about 6N per token; LoRA: about 4N plus 6 per adapter weight, two thirds of it.

The card peaks are vendor data-sheet figures (dense bf16, fp16 on the T4). The prices and the
utilisation are *assumptions*: they change month to month and between providers, and every one is
an input a reader should replace with a quote (``GPU(..., usd_per_hour=...)``).
"""

from __future__ import annotations

import dataclasses

from lora_course.errors import SettingsError

# dense tensor-core peaks (FLOP/s) from the vendors' data sheets: bf16, fp16 on the T4 (no bf16 cores)
PEAK_FLOPS = {"H100": 989e12, "A100": 312e12, "RTX 4090": 165e12, "T4": 65e12}


@dataclasses.dataclass(frozen=True)
class GPU:
    name: str
    peak_flops: float  # dense 16-bit tensor-core FLOP/s
    usd_per_hour: float  # an assumption: replace with your provider's price
    price_source: str  # where the price comes from, and when

    def __post_init__(self):
        if self.peak_flops <= 0 or self.usd_per_hour < 0:
            raise SettingsError(f"GPU {self.name}: peak_flops must be positive and usd_per_hour at least 0, got "
                                f"{self.peak_flops} and {self.usd_per_hour}.")


# ASSUMED on-demand cloud prices per card-hour, late 2025, rounded; not quotes. Replace them.
ASSUMED_GPUS = {
    "H100": GPU("H100", PEAK_FLOPS["H100"], 3.00, "assumption: typical on-demand H100 SXM price, late 2025"),
    "A100": GPU("A100", PEAK_FLOPS["A100"], 1.50, "assumption: typical on-demand A100 80GB price, late 2025"),
    "RTX 4090": GPU("RTX 4090", PEAK_FLOPS["RTX 4090"], 0.50, "assumption: typical community-cloud price, late 2025"),
    "T4": GPU("T4", PEAK_FLOPS["T4"], 0.35, "assumption: typical on-demand T4 price, late 2025 (Colab's free tier: 0)"),
}


def step_flops(model, positions: int, mean_length: float) -> dict:
    """Matmul FLOPs a training step must do for ``positions`` token positions, by phase.

    forward: 2 * in * out per position for every linear layer (the adapters' A and B included, the
    output head included) plus causal attention (QK^T and AV: 2 * layers * length * hidden);
    backward through the activations: the same again (every layer above the first adapter passes
    a gradient down); weight gradients: 2 * in * out per position, but only for layers whose weight
    trains. The optimizer's work is elementwise over the trainable parameters: ``optimizer_elements``.
    Works on a meta-device model (shapes only)."""
    import torch

    forward = weight_grads = 0
    embedding = model.get_input_embeddings().weight if hasattr(model, "get_input_embeddings") else None
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, torch.nn.Linear) or (weight is not None and type(module).__name__ in ("Linear4bit", "Linear8bitLt")):
            n = module.in_features * module.out_features
            forward += 2 * n
            if weight is not None and weight.requires_grad:
                weight_grads += 2 * n
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    attention = 2 * config.num_hidden_layers * mean_length * config.hidden_size
    forward_total = (forward + attention) * positions
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"forward": forward_total, "backward_activations": forward_total, "weight_gradients": weight_grads * positions,
            "total": 2 * forward_total + weight_grads * positions, "optimizer_elements": trainable,
            "embedding_trains": bool(embedding is not None and embedding.requires_grad)}


def flops_per_token(model_name: str, method: str = "lora", settings=None, sequence_length: int = 512) -> dict:
    """Training FLOPs per token of ``model_name`` (a hub name or a shipped config) for full fine-tuning
    or LoRA / QLoRA (the same matmuls: 4-bit weights are dequantized to 16 bits before each one),
    computed on the meta device: no weights are loaded. Returns the phases of ``step_flops``."""
    from lora_course.lora import LoraSettings, inject_lora
    from lora_course.models import load_config, meta_model

    if method not in ("full", "lora", "qlora"):
        raise SettingsError(f"method must be full, lora or qlora, got {method!r}.")
    model = meta_model(load_config(model_name))
    if method != "full":
        inject_lora(model, settings or LoraSettings())
    return step_flops(model, 1, sequence_length)


@dataclasses.dataclass
class CostEstimate:
    tokens: float
    flops: float
    gpu_hours: float
    wall_hours: float
    usd: float
    gpu: str
    gpus: int
    mfu: float

    def as_row(self) -> dict:
        return {"tokens": self.tokens, "PFLOP": self.flops / 1e15, "GPU": f"{self.gpus} x {self.gpu}",
                "MFU": self.mfu, "GPU-hours": self.gpu_hours, "wall hours": self.wall_hours, "USD": self.usd}


def training_tokens(examples: int, tokens_per_example: float, epochs: float = 1.0) -> float:
    """Tokens a run processes: examples x tokens per example x epochs."""
    if examples < 0 or tokens_per_example < 0 or epochs < 0:
        raise SettingsError("examples, tokens_per_example and epochs must be 0 or more.")
    return examples * tokens_per_example * epochs


def training_cost(flops_per_token: float, tokens: float, gpu: GPU, gpus: int = 1, mfu: float = 0.4) -> CostEstimate:
    """GPU-hours and money for ``tokens`` at ``flops_per_token`` on ``gpus`` cards of ``gpu`` running at
    ``mfu`` of their peak (an assumption: 0.3-0.5 is common for well-tuned training, less for QLoRA
    on small cards, where dequantization and memory traffic take their share)."""
    if not 0 < mfu <= 1:
        raise SettingsError(f"mfu (model FLOPs utilisation) must be in (0, 1], got {mfu}.")
    if gpus < 1:
        raise SettingsError(f"gpus must be at least 1, got {gpus}.")
    flops = flops_per_token * tokens
    gpu_hours = flops / (gpu.peak_flops * mfu) / 3600
    return CostEstimate(tokens=tokens, flops=flops, gpu_hours=gpu_hours, wall_hours=gpu_hours / gpus,
                        usd=gpu_hours * gpu.usd_per_hour, gpu=gpu.name, gpus=gpus, mfu=mfu)


def tokens_for_budget(usd: float, flops_per_token: float, gpu: GPU, mfu: float = 0.4) -> float:
    """The inverse: how many training tokens ``usd`` buys (to see what a quoted cost range implies)."""
    if gpu.usd_per_hour == 0:
        return float("inf")
    return usd / gpu.usd_per_hour * 3600 * gpu.peak_flops * mfu / flops_per_token
