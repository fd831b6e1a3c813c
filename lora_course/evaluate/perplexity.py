"""Perplexity over a data set, with exactly the masking the training loss uses.

exp(mean loss per target token), where the mean is over the tokens of the whole set: averaging
per-batch perplexities (or per-batch losses) would weight a short batch like a long one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lora_course.train.loss import loss_totals


@dataclass
class Perplexity:
    loss: float  # mean cross-entropy per target token (nats)
    perplexity: float
    tokens: int  # target tokens scored


def perplexity(model, examples, collator, batch_size: int = 8) -> Perplexity:
    """``examples`` as the trainer takes them (``format_chat`` output): prompts are masked, so this
    is the perplexity of the responses given their prompts."""
    total, tokens = loss_totals(model, examples, collator, batch_size)
    if tokens == 0:
        raise ValueError("No target tokens to score: every label is masked (-100).")
    loss = total / tokens
    return Perplexity(loss=loss, perplexity=math.exp(loss), tokens=tokens)
