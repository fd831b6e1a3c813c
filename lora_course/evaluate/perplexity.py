"""Perplexity over a data set, with exactly the masking the training loss uses.

exp(mean loss per target token), where the mean is over the tokens of the whole set: averaging
per-batch perplexities (or per-batch losses) would weight a short batch like a long one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lora_course.train.loss import summed_token_loss, target_tokens


@dataclass
class Perplexity:
    loss: float  # mean cross-entropy per target token (nats)
    perplexity: float
    tokens: int  # target tokens scored


@torch.no_grad()
def perplexity(model, examples, collator, batch_size: int = 8) -> Perplexity:
    """``examples`` as the trainer takes them (``format_chat`` output): prompts are masked, so this
    is the perplexity of the responses given their prompts."""
    was_training = model.training
    model.eval()
    device = next(p.device for p in model.parameters())
    total, tokens = 0.0, 0
    try:
        for start in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collator(examples[start:start + batch_size]).items()}
            total += summed_token_loss(model, batch).item()
            tokens += target_tokens(batch["labels"])
    finally:
        model.train(was_training)
    if tokens == 0:
        raise ValueError("No target tokens to score: every label is masked (-100).")
    loss = total / tokens
    return Perplexity(loss=loss, perplexity=math.exp(loss), tokens=tokens)
