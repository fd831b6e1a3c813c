"""The loss of a micro-batch, as a sum over target tokens.

Gradient accumulation must give the gradient of ONE big batch. The mean loss over a big batch
divides the summed token losses by the target tokens of the whole batch; averaging the means of
micro-batches instead weights a short example's tokens more than a long one's (the accumulation
bug fixed across libraries in 2024). So each micro-batch returns its SUM, and the loop divides by
the target tokens of the whole accumulation window, counted before the backward passes.

Only the positions that predict a target go through the output head. With the prompt masked,
most positions carry no loss (in the bundled instruction set, 7% of them do), yet the head is a
vocabulary-wide matmul and the softmax behind it reads and writes vocabulary-wide rows: for a
small model with a large vocabulary that was a fifth of the FLOPs and most of the memory traffic.
A pre-hook on the head hands it only the hidden states of target positions; the loss is the same
sum, to rounding (tests/test_train.py), and the logits it returns are one row per target token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lora_course.data import IGNORE_INDEX
from lora_course.errors import SettingsError
from lora_course.models.hardware import autocast


def target_tokens(labels: torch.Tensor) -> int:
    """Tokens that carry a loss: every label but the first of a row (nothing predicts it) and -100s."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def on_device(batch: dict, device) -> dict:
    """The batch's tensors moved to ``device``; other values (flash attention's maximum lengths) as they are."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def summed_token_loss(model, batch: dict, chunk_rows: int | None = None) -> torch.Tensor:
    """Sum of next-token cross-entropies over the batch's target tokens (no mean anywhere).

    ``chunk_rows``: compute the output head and the loss ``chunk_rows`` target rows at a time, each chunk's
    logits recomputed in the backward pass instead of kept (``chunked_cross_entropy``); None: all at once."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    targets = batch["labels"][:, 1:]
    predicts = F.pad(targets != IGNORE_INDEX, (0, 1), value=False)  # position t predicts label t + 1
    head = _output_head(model)
    hook = _KeepPositions(predicts, hold=chunk_rows is not None)
    handle = head.register_forward_pre_hook(hook) if head is not None else None
    try:
        logits = model(**inputs, use_cache=False).logits
    finally:
        if handle is not None:
            handle.remove()
    if hook.held is not None:  # the head saw no rows; the target rows' hidden states go through it in chunks
        _check_plain_head(model)
        return chunked_cross_entropy(hook.held, head, targets[targets != IGNORE_INDEX], chunk_rows)
    if hook.fired:  # one row per target token; fp32 softmax: bf16 logits lose the small probabilities
        return F.cross_entropy(logits.float(), targets[targets != IGNORE_INDEX], reduction="sum")
    # a model whose head is not a module called on the hidden states: every position's logits
    shifted = F.pad(targets, (0, 1), value=IGNORE_INDEX)  # shift the labels, not the logits: no copy of those
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), shifted.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


@torch.no_grad()
def loss_totals(model, data, collator, batch_size: int = 8, precision: str = "fp32",
                chunk_rows: int | None = None) -> tuple[float, int]:
    """(summed token loss, target tokens) over the whole set, in eval mode (train mode restored after)."""
    was_training = model.training
    model.eval()
    device = next(p.device for p in model.parameters())
    total, tokens = 0.0, 0
    try:
        for start in range(0, len(data), batch_size):
            batch = on_device(collator(data[start:start + batch_size]), device)
            with autocast(precision, device):
                total += summed_token_loss(model, batch, chunk_rows).item()
            tokens += target_tokens(batch["labels"])
    finally:
        model.train(was_training)
    return total, tokens


def evaluate_loss(model, data, collator, batch_size: int = 8, precision: str = "fp32",
                  chunk_rows: int | None = None) -> float:
    """Mean loss per target token over the whole set: every token counts once, however the set is
    batched (a mean of batch means would weight the tokens of short batches more)."""
    total, tokens = loss_totals(model, data, collator, batch_size, precision, chunk_rows)
    return total / max(tokens, 1)


def _head_loss(head, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def chunked_cross_entropy(hidden: torch.Tensor, head, targets: torch.Tensor, chunk_rows: int) -> torch.Tensor:
    """``cross_entropy(head(hidden), targets, reduction="sum")`` without all the logits at once.

    Logits are rows x vocabulary: for 4,096 target tokens and a 128K vocabulary, 2.1 GB in fp32, and the
    softmax's gradient as much again. Here each chunk of rows goes through the head and the loss under
    activation checkpointing: its logits are freed as soon as its loss is known and recomputed, one chunk
    at a time, in the backward pass (the idea of Liger's fused linear cross-entropy and TRL's chunked NLL,
    with one more head matmul per chunk as the price). The sum is the same, to rounding."""
    from torch.utils.checkpoint import checkpoint

    if chunk_rows < 1:
        raise SettingsError(f"loss_chunk_rows must be at least 1, got {chunk_rows}.")
    if hidden.size(0) <= chunk_rows:
        return _head_loss(head, hidden, targets)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.size(0), chunk_rows):
        rows = slice(start, start + chunk_rows)
        total = total + checkpoint(_head_loss, head, hidden[rows], targets[rows], use_reentrant=False)
    return total


# Model configs whose logits are transformed after the head (Gemma's soft-capping, Cohere's and Granite's
# scaling): the chunked loss calls the head itself and would skip that.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def _check_plain_head(model) -> None:
    config = getattr(getattr(model, "module", model), "config", None)
    found = [k for k in _LOGIT_TRANSFORMS if getattr(config, k, None) not in (None, 1, 1.0)]
    if found:
        raise SettingsError(f"loss_chunk_rows: this model transforms its logits after the output head ({', '.join(found)}),"
                            " which the chunked loss would skip. Fix: leave loss_chunk_rows unset for this model.")


class _KeepPositions:
    """Forward pre-hook for the output head: keep the hidden states of the positions in ``mask``.
    ``hold``: keep them here instead, and hand the head none (the loss runs the head itself, in chunks)."""

    def __init__(self, mask: torch.Tensor, hold: bool = False):
        self.mask, self.fired, self.hold, self.held = mask, False, hold, None

    def __call__(self, module, args):
        hidden = args[0]
        if self.fired or hidden.dim() != 3 or hidden.shape[:2] != self.mask.shape:
            return None  # not the call on the final hidden states: leave it alone
        self.fired = True
        kept = hidden[self.mask.to(hidden.device)]
        if self.hold:
            self.held = kept
            kept = kept[:0]
        return (kept,) + tuple(args[1:])


def _output_head(model):
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    return head if isinstance(head, torch.nn.Module) else None
