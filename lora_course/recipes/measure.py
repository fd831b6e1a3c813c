"""Measure the memory of a training setup on a real model: prepare it as the setup says (the same
preparation training uses), then take one step of the package's trainer under exact tensor
accounting (``lora_course.memory.measure_step``), or two steps under the allocator's own record
(``lora_course.memory.measure.measure_peak``, CPU)."""

from __future__ import annotations

import torch

from lora_course.data import Collator
from lora_course.lora import LoraSettings
from lora_course.memory import Breakdown, Setup
from lora_course.memory.measure import measure_peak, measure_step
from lora_course.recipes.prepare import Prepared, prepare_model


def prepare_for_setup(model_name: str, setup: Setup) -> Prepared:
    """The model as ``setup`` trains it (LoRA with alpha = 2r, as the estimate assumes)."""
    lora = LoraSettings(r=setup.r, alpha=2 * setup.r, target_modules=setup.target_modules) if setup.adapter else None
    return prepare_model(model_name, setup.method, lora, setup.frozen_layers, dtype=setup.param_dtype,
                         attn_implementation=setup.attn_implementation, log=None)


def _random_examples(vocab_size: int, count: int, length: int, seed: int) -> list[dict]:
    """Full-length random sequences, every token a target (the estimate's worst case)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab_size, (count, length), generator=generator).tolist()
    return [{"input_ids": row, "labels": row} for row in ids]


def _precision(setup: Setup) -> str:
    return "bf16" if setup.mixed_precision else "fp32"  # pure 16-bit: 16-bit weights, no autocast


def measure(model_name: str, setup: Setup, seed: int = 0) -> Breakdown:
    """Load, prepare and measure one step on full-length random sequences (every token a target)."""
    prepared = prepare_for_setup(model_name, setup)
    model = prepared.model
    examples = _random_examples(model.config.vocab_size, setup.micro_batch_size, setup.sequence_length, seed)
    return measure_step(model, examples, Collator(prepared.tokenizer.pad_token_id), setup.micro_batch_size,
                        setup.gradient_checkpointing, setup.optimizer, _precision(setup))


def measure_peak_of(model_name: str, setup: Setup, seed: int = 0) -> int:
    """Load, prepare and return the CPU allocator's peak over two steps of ``setup`` (bytes), temporaries included."""
    prepared = prepare_for_setup(model_name, setup)
    model = prepared.model
    examples = _random_examples(model.config.vocab_size, 4 * setup.micro_batch_size, setup.sequence_length, seed)
    return measure_peak(model, examples, Collator(prepared.tokenizer.pad_token_id), setup.micro_batch_size,
                        setup.gradient_checkpointing, setup.optimizer, _precision(setup), setup.loss_chunk_rows)
