"""The same training run through TRL's SFTTrainer, for users who want the library path.

The package's loop and SFTTrainer get the same pre-tokenized examples (labels -100 on the prompt,
which TRL uses as they are) and the same optimizer settings; transformers' Trainer also divides
the summed token loss by the tokens of the whole accumulation window, so the two agree step for
step when they see the same batches (tests/test_trl_route.py).
"""

from __future__ import annotations

import tempfile

import torch

from lora_course.models.hardware import resolve_precision
from lora_course.train.loop import TrainConfig
from lora_course.train.optim import OPTIMIZERS

_OPTIM = {"adamw": "adamw_torch", "adamw_8bit": "adamw_bnb_8bit", "paged_adamw": "paged_adamw_32bit",
          "paged_adamw_8bit": "paged_adamw_8bit", "sgd": "sgd"}
_SCHEDULE = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
assert set(_OPTIM) == set(OPTIMIZERS), "every optimizer the package names needs its Hugging Face name here"


def sft_trainer(model, tokenizer, examples, config: TrainConfig, eval_examples=None):
    """An ``trl.SFTTrainer`` set up like ``train(model, examples, Collator, config)``."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    def dataset(items):
        rows = [e.as_dict() if hasattr(e, "as_dict") else {"input_ids": e["input_ids"], "labels": e["labels"]} for e in items]
        return Dataset.from_list(rows)

    cuda = torch.cuda.is_available() and next(model.parameters()).device.type == "cuda"
    precision = resolve_precision(config.precision, next(model.parameters()).device).precision
    args = SFTConfig(
        output_dir=config.output_dir or tempfile.mkdtemp(prefix="lora-course-trl-"),
        per_device_train_batch_size=config.micro_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_steps=config.max_steps or -1,
        num_train_epochs=config.num_epochs,
        learning_rate=config.learning_rate,
        lr_scheduler_type=_SCHEDULE[config.lr_scheduler],
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm or 0.0,
        optim=_OPTIM[config.optimizer],
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not cuda,
        seed=config.seed,
        train_sampling_strategy="random" if config.shuffle else "sequential",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        max_length=None,  # the examples are already cut to the sequence length
        padding_free=config.padding_free,
        disable_tqdm=not config.progress,
    )
    return SFTTrainer(model=model, args=args, train_dataset=dataset(examples),
                      eval_dataset=dataset(eval_examples) if eval_examples else None, processing_class=tokenizer)
