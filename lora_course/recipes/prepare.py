"""Prepare a model for a fine-tuning method: the one place where "full", "partial", "lora" and
"qlora" become a loaded model with the right weights trainable.

    full     every weight trains
    partial  the embeddings and the first N decoder layers frozen, the rest trains
    lora     the base frozen, LoRA adapters injected into the target modules
    qlora    the base loaded in NF4 (bitsandbytes, double quantization), then as lora

The training recipe, the method comparison, the memory measurement and the benchmarks all call
this, so that "LoRA" means the same model in each of them.
"""

from __future__ import annotations

import dataclasses

import torch

from lora_course.errors import SettingsError
from lora_course.lora import METHODS, LoraSettings, inject_lora, quantization_for
from lora_course.models import load_model, load_tokenizer
from lora_course.train import freeze_first_layers


@dataclasses.dataclass
class Prepared:
    model: torch.nn.Module
    tokenizer: object
    method: str
    quantization: str | None  # of the base: "nf4" for QLoRA, else None


def prepare_model(base_model: str, method: str, lora: LoraSettings | None = None, freeze_layers: int = 0, *,
                  dtype=None, attn_implementation: str | None = None, tokenizer: str | None = None, seed: int = 0,
                  log=print) -> Prepared:
    """Load ``base_model`` (in NF4 for QLoRA) and make what ``method`` trains trainable.

    ``lora``: the adapter's settings (lora and qlora; default ``LoraSettings()``); ``freeze_layers``:
    how many decoder layers partial fine-tuning keeps frozen; ``tokenizer``: another tokenizer than the
    model's own; ``seed``: seeds the adapter's random A, so the same seed gives the same run anywhere."""
    _check_method(method, freeze_layers)
    quantization = quantization_for(method)
    model, own_tokenizer = load_model(base_model, dtype=dtype, quantization=quantization,
                                      attn_implementation=attn_implementation, log=log or (lambda *a, **k: None))
    if tokenizer and tokenizer != base_model:
        own_tokenizer = load_tokenizer(tokenizer)
    make_trainable(model, method, lora, freeze_layers, seed=seed)
    return Prepared(model, own_tokenizer, method, quantization)


def make_trainable(model, method: str, lora: LoraSettings | None = None, freeze_layers: int = 0, seed: int = 0):
    """The second half of ``prepare_model``, for a model loaded otherwise (already in NF4 for QLoRA)."""
    _check_method(method, freeze_layers)
    if method == "full":
        model.requires_grad_(True)
    elif method == "partial":
        freeze_first_layers(model, freeze_layers)
    else:
        torch.manual_seed(seed)
        inject_lora(model, lora or LoraSettings())
    return model


def _check_method(method: str, freeze_layers: int) -> None:
    if method not in METHODS:
        raise SettingsError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    if method == "partial" and freeze_layers < 1:
        raise SettingsError("partial fine-tuning needs freeze_layers >= 1 (else it is full fine-tuning).")
