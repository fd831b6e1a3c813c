"""Run under ``accelerate launch`` (or torchrun) by tests/test_distributed.py: LoRA on the tiny
model with the package's trainer, unchanged; rank 0 saves the adapter weights."""

import sys

import torch

from lora_course.data import Collator, load_bundled, tokenize_dataset
from lora_course.lora import LoraSettings, adapter_state_dict, inject_lora
from lora_course.models import tiny_model
from lora_course.train import TrainConfig, train


def run(accumulation: int, out: str | None) -> dict:
    model, tokenizer = tiny_model(0)
    torch.manual_seed(0)
    inject_lora(model, LoraSettings(r=4, alpha=8, target_modules="all-linear"))
    data, _ = tokenize_dataset(load_bundled("instructions", limit=32), tokenizer, 64)
    config = TrainConfig(micro_batch_size=2, gradient_accumulation_steps=accumulation, max_steps=3,
                         learning_rate=1e-2, lr_scheduler="constant", seed=0, progress=False)
    train(model, data, Collator(tokenizer.pad_token_id), config, log=None)
    state = adapter_state_dict(model)
    if out and (not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0):
        torch.save(state, out)
    return state


if __name__ == "__main__":
    run(int(sys.argv[1]), sys.argv[2])
