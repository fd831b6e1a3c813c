"""Before and after: SmolLM2-135M-Instruct's held-out exact match on the bundled instruction set,
untrained and after LoRA (r=16, q,k,v,o) with the package's trainer, on a CPU.

    .venv/bin/python scripts/lora_before_after.py [--steps 200] [--eval 200] [--out runs/before-after]
"""

import argparse
import json
import time
from pathlib import Path

import torch

from lora_course import SMOLLM2
from lora_course.data import Collator, answer_matches, exact_match, load_bundled, tokenize_dataset
from lora_course.lora import LoraSettings, inject_lora, save_adapter
from lora_course.models import load_model
from lora_course.train import TrainConfig, train


@torch.no_grad()
def accuracy(model, tokenizer, records, batch_size=20):
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right end
    exact = parsed = 0
    model.eval()
    for i in range(0, len(records), batch_size):
        chunk = records[i:i + batch_size]
        prompts = [tokenizer.apply_chat_template(r["messages"][:1], tokenize=False, add_generation_prompt=True) for r in chunk]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(**enc, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        for record, ids in zip(chunk, out):
            reply = tokenizer.decode(ids[enc["input_ids"].shape[1]:], skip_special_tokens=True)
            exact += exact_match(reply, record["answer"])
            parsed += answer_matches(reply, record)
    return exact / len(records), parsed / len(records)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=SMOLLM2)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--eval", type=int, default=200)
    p.add_argument("--out", default="runs/before-after")
    args = p.parse_args()
    model, tokenizer = load_model(args.model, device="cpu")
    test = load_bundled("instructions", "test", limit=args.eval)
    before = accuracy(model, tokenizer, test)
    print(f"before: exact {before[0]:.1%}, parsed {before[1]:.1%}")
    inject_lora(model, LoraSettings(r=16, alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    data, truncated = tokenize_dataset(load_bundled("instructions", "train"), tokenizer, sequence_length=128)
    config = TrainConfig(micro_batch_size=8, gradient_accumulation_steps=1, max_steps=args.steps, learning_rate=1e-3,
                         warmup_steps=10, lr_scheduler="cosine", output_dir=args.out, seed=0)
    start = time.perf_counter()
    result = train(model, data, Collator(tokenizer.pad_token_id), config)
    after = accuracy(model, tokenizer, test)
    save_adapter(model, Path(args.out) / "adapter", base_model_name_or_path=args.model)
    summary = {"model": args.model, "steps": result.steps, "train_seconds": round(time.perf_counter() - start, 1),
               "tokens_per_s": round(result.tokens_per_s, 1), "final_train_loss": result.final_train_loss,
               "truncated_examples": truncated, "eval_examples": len(test),
               "before": {"exact": before[0], "parsed": before[1]}, "after": {"exact": after[0], "parsed": after[1]},
               "config": vars(config)}
    Path(args.out, "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"after {result.steps} steps ({summary['train_seconds']} s, {summary['tokens_per_s']} tokens/s): "
          f"exact {after[0]:.1%}, parsed {after[1]:.1%}  (before: {before[0]:.1%}, {before[1]:.1%})")


if __name__ == "__main__":
    main()
