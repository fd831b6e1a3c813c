"""The package's loop and TRL's SFTTrainer agree when they see the same batches."""

import pytest
import torch

from lora_course.data import Collator, format_chat
from lora_course.lora import LoraSettings, inject_lora
from lora_course.models import tiny_model, tiny_tokenizer
from lora_course.train import TrainConfig, train
from lora_course.train.trl_route import sft_trainer


def lora_model():
    model, _ = tiny_model()
    torch.manual_seed(1)
    inject_lora(model, LoraSettings(r=4, alpha=8, target_modules="all-linear"))
    return model


def test_same_losses_as_sft_trainer_over_a_short_run(tmp_path):
    tok = tiny_tokenizer()
    answers = ["5", "It is " + "long " * 15, "ok", "Answer: " + "x " * 25, "no", "Answer: 42"]
    examples = [format_chat(tok, [{"role": "user", "content": f"Q{i}?"}, {"role": "assistant", "content": a}])
                for i, a in enumerate(answers)]
    # the whole set in one batch of 3 micro-batches of 2: both see the same examples every step, whatever the order
    config = TrainConfig(micro_batch_size=2, gradient_accumulation_steps=3, max_steps=5, learning_rate=5e-3,
                         lr_scheduler="constant", warmup_steps=0, max_grad_norm=1.0, progress=False,
                         output_dir=str(tmp_path / "ours"))
    ours = train(lora_model(), examples, Collator(tok.pad_token_id), config)
    trainer = sft_trainer(lora_model(), tok, examples, TrainConfig(**{**vars(config), "output_dir": str(tmp_path / "trl")}))
    trainer.train()
    theirs = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    mine = [r["loss"] for r in ours.history]
    print("package:", [f"{x:.5f}" for x in mine], "\nTRL:    ", [f"{x:.5f}" for x in theirs])
    assert len(theirs) == len(mine) == 5
    assert theirs[0] == pytest.approx(mine[0], rel=1e-4)
    assert theirs == pytest.approx(mine, rel=2e-3)
    assert mine[-1] < mine[0]
