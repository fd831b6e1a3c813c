"""The loss of a micro-batch, as a sum over target tokens.

Gradient accumulation must give the gradient of ONE big batch. The mean loss over a big batch
divides the summed token losses by the target tokens of the whole batch; averaging the means of
micro-batches instead weights a short example's tokens more than a long one's (the accumulation
bug fixed across libraries in 2024). So each micro-batch returns its SUM, and the loop divides by
the target tokens of the whole accumulation window, counted before the backward passes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lora_course.data import IGNORE_INDEX


def target_tokens(labels: torch.Tensor) -> int:
    """Tokens that carry a loss: every label but the first of a row (nothing predicts it) and -100s."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def summed_token_loss(model, batch: dict) -> torch.Tensor:
    """Sum of next-token cross-entropies over the batch's target tokens (no mean anywhere)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits
    shift_logits = logits[:, :-1].float()  # fp32 softmax: bf16 logits lose the small probabilities
    shift_labels = batch["labels"][:, 1:]
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")
