"""Measure the memory of a training setup on a real model: prepare it as the setup says (the same
preparation training uses), then take one step of the package's trainer under exact tensor
accounting (``lora_course.memory.measure_step``)."""

from __future__ import annotations

import torch

from lora_course.data import Collator
from lora_course.lora import LoraSettings
from lora_course.memory import Breakdown, Setup
from lora_course.memory.measure import measure_step
from lora_course.recipes.prepare import Prepared, prepare_model


def prepare_for_setup(model_name: str, setup: Setup) -> Prepared:
    """The model as ``setup`` trains it (LoRA with alpha = 2r, as the estimate assumes)."""
    lora = LoraSettings(r=setup.r, alpha=2 * setup.r, target_modules=setup.target_modules) if setup.adapter else None
    return prepare_model(model_name, setup.method, lora, setup.frozen_layers, dtype=setup.param_dtype,
                         attn_implementation=setup.attn_implementation, log=None)


def measure(model_name: str, setup: Setup, seed: int = 0) -> Breakdown:
    """Load, prepare and measure one step on full-length random sequences (every token a target)."""
    prepared = prepare_for_setup(model_name, setup)
    model = prepared.model
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, model.config.vocab_size, (setup.micro_batch_size, setup.sequence_length),
                        generator=generator).tolist()
    examples = [{"input_ids": row, "labels": row} for row in ids]
    return measure_step(model, examples, Collator(prepared.tokenizer.pad_token_id), setup.micro_batch_size,
                        setup.gradient_checkpointing, setup.optimizer, "bf16" if setup.mixed_precision else "fp32")
