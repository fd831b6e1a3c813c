"""What a LoRA adapter is made of: rank, alpha, dropout, where it goes. One object for both routes
(from scratch and PEFT), written to disk in PEFT's ``adapter_config.json`` vocabulary."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from lora_course.errors import AdapterFormatError, SettingsError

ALL_LINEAR = "all-linear"
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")  # the Llama family's attention projections
MLP = ("gate_proj", "up_proj", "down_proj")  # and its MLP's
LLAMA_PROJECTIONS = ATTENTION + MLP
# The fine-tuning methods the course compares, by what trains: everything; the top layers; adapters on
# a frozen base; adapters on a frozen NF4 base.
METHODS = ("full", "partial", "lora", "qlora")
ADAPTER_METHODS = ("lora", "qlora")


def quantization_for(method: str) -> str | None:
    """The base model's quantization under ``method``: NF4 for QLoRA, none otherwise."""
    return "nf4" if method == "qlora" else None
BIAS_MODES = ("none", "all", "lora_only")


@dataclasses.dataclass
class LoraSettings:
    r: int = 8
    alpha: float = 16
    dropout: float = 0.0
    target_modules: Sequence[str] | str = ATTENTION  # names (suffix match), or "all-linear"
    layers_to_transform: Sequence[int] | None = None  # None: every layer
    use_rslora: bool = False  # scale by alpha/sqrt(r) instead of alpha/r
    bias: str = "none"

    def __post_init__(self):
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise SettingsError(f"LoRA rank r must be a positive integer, got {self.r!r}.")
        if self.alpha <= 0:
            raise SettingsError(f"lora_alpha must be positive, got {self.alpha!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise SettingsError(f"lora_dropout must be in [0, 1), got {self.dropout!r}.")
        if self.bias not in BIAS_MODES:
            raise SettingsError(f"bias must be one of {BIAS_MODES}, got {self.bias!r}.")
        if isinstance(self.target_modules, str) and self.target_modules != ALL_LINEAR:
            # A comma-separated string is a convenience for command lines and YAML.
            self.target_modules = tuple(t.strip() for t in self.target_modules.split(",") if t.strip())
        if not isinstance(self.target_modules, str):
            self.target_modules = tuple(self.target_modules)
            if not self.target_modules:
                raise SettingsError("target_modules is empty: name at least one module, or use 'all-linear'.")
        if self.layers_to_transform is not None:
            self.layers_to_transform = tuple(int(i) for i in self.layers_to_transform)

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    def to_peft(self, **extra):
        """The same adapter as a ``peft.LoraConfig``."""
        from peft import LoraConfig, TaskType

        return LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules),
            layers_to_transform=list(self.layers_to_transform) if self.layers_to_transform is not None else None,
            use_rslora=self.use_rslora,
            bias=self.bias,
            **extra,
        )

    def to_adapter_config(self, base_model_name_or_path: str | None, target_modules: Sequence[str]) -> dict:
        """PEFT's adapter_config.json, with the resolved module names (as PEFT writes them)."""
        return {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model_name_or_path,
            "r": self.r,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": sorted(target_modules),
            "layers_to_transform": list(self.layers_to_transform) if self.layers_to_transform is not None else None,
            "use_rslora": self.use_rslora,
            "bias": self.bias,
            "fan_in_fan_out": False,
            "init_lora_weights": True,
            "inference_mode": True,
            "modules_to_save": None,
        }

    @classmethod
    def from_adapter_config(cls, cfg: dict) -> "LoraSettings":
        if cfg.get("peft_type", "LORA") != "LORA":
            raise AdapterFormatError(f"Not a LoRA adapter: peft_type is {cfg.get('peft_type')!r}.")
        unsupported = {k: cfg[k] for k in ("fan_in_fan_out", "use_dora", "modules_to_save") if cfg.get(k)}
        if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
            unsupported["rank_pattern/alpha_pattern"] = True
        if unsupported:
            raise AdapterFormatError(
                f"This adapter uses PEFT options the from-scratch route does not implement: {unsupported}. "
                "Load it with the PEFT route (lora_course.lora.peft_route) instead."
            )
        return cls(
            r=int(cfg["r"]),
            alpha=cfg["lora_alpha"],
            dropout=cfg.get("lora_dropout", 0.0),
            target_modules=cfg["target_modules"],
            layers_to_transform=cfg.get("layers_to_transform"),
            use_rslora=bool(cfg.get("use_rslora", False)),
            bias=cfg.get("bias", "none"),
        )
