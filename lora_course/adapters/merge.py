"""Merge an adapter into its base and write a standalone model: safetensors, config and tokenizer
that load with plain transformers, no PEFT and no lora_course needed.

A QLoRA adapter was trained against the NF4 base, not against the 16-bit original: its ΔW
corrects *those* weights. So it is merged into the dequantized NF4 weights (what the forward pass
actually used), never into the original checkpoint; the report gives the logit difference
between the trained model (NF4 base + adapter) and the merged one. Quantizing the merged model
again (``requantize=True``) rounds W + ΔW to NF4 once more; the report measures what that costs.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lora_course.adapters.metadata import load_base_for_adapter, load_checked
from lora_course.errors import OutputExistsError
from lora_course.lora.merge import merge_and_unload
from lora_course.models import load_model

CHECK_PROMPT = "What is the capital of France?"


@dataclass
class MergeReport:
    out_dir: str
    base_model: str
    quantization: str | None  # of the base the adapter was trained on
    max_abs_logit_difference: float  # trained model (base + adapter, unmerged) vs merged
    requantized_max_abs_logit_difference: float | None = None  # merged vs merged-then-NF4

    def to_dict(self) -> dict:
        return asdict(self)


def dequantize(model):
    """Replace bitsandbytes 4/8-bit layers with plain ``nn.Linear`` holding the dequantized weights
    (transformers' own ``dequantize``; it also works inside LoRA wrappers)."""
    if getattr(model, "hf_quantizer", None) is None:
        return model
    return model.dequantize(dtype=torch.float32)


@contextlib.contextmanager
def _training_path(model):
    """Run the forward pass training used, without dropout. On CPU, bitsandbytes' 4-bit layers in
    eval mode repack their weights in place for a faster kernel (with slightly different rounding),
    after which they no longer dequantize to the weights training saw; so the reference logits
    are taken in train mode, before anything has been repacked."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    try:
        yield
    finally:
        model.eval()


def _check_inputs(tokenizer) -> dict:
    text = tokenizer.apply_chat_template([{"role": "user", "content": CHECK_PROMPT}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text, return_tensors="pt", add_special_tokens=False)


@torch.no_grad()
def max_logit_difference(model_a, model_b, inputs: dict) -> float:
    def logits(model):
        device = next(model.parameters()).device
        with _training_path(model):
            return model(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu()

    return (logits(model_a) - logits(model_b)).abs().max().item()


@torch.no_grad()
def merge_to_directory(base_model: str, adapter_dir, out_dir, quantization: str | None = "auto",
                       requantize: bool = False, allow_mismatch: bool = False, log=print) -> MergeReport:
    """``quantization="auto"``: the adapter's metadata says whether it was trained on an NF4 base.
    ``log=None`` merges silently."""
    log = log or (lambda *args, **kwargs: None)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise OutputExistsError(f"{out} exists and is not empty; nothing was written. Fix: choose a new --out "
                                "directory or remove the old one.")
    if quantization == "auto":
        model, tokenizer, metadata = load_base_for_adapter(adapter_dir, base_model, log=log)
        quantization = metadata.get("quantization")
    else:
        model, tokenizer = load_model(base_model, quantization=quantization, log=log)
    load_checked(model, adapter_dir, tokenizer, allow_mismatch)
    inputs = _check_inputs(tokenizer)
    device = next(model.parameters()).device
    with _training_path(model):
        trained_logits = model(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu()

    model = dequantize(model)
    merged = merge_and_unload(model)
    merged_logits = merged(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu()
    difference = (trained_logits - merged_logits).abs().max().item()
    log(f"merged {adapter_dir} into {base_model}{' (dequantized NF4)' if quantization else ''}: "
        f"max |logit difference| vs the unmerged adapter = {difference:.3g}")

    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    report = MergeReport(str(out), base_model, quantization, difference)
    if requantize:
        requantized, _ = load_model(str(out), quantization="nf4")
        report.requantized_max_abs_logit_difference = max_logit_difference(merged, requantized, inputs)
        log(f"re-quantizing the merged model to NF4 moves the logits by up to "
            f"{report.requantized_max_abs_logit_difference:.3g}; load it with quantization='nf4' to use it so")
    (out / "merge_report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report
