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

With ``chunk_rows`` even those logits never exist at once: the head and the loss run a chunk of target
rows at a time (``chunked_cross_entropy``). For a plain Linear head the chunk's gradients are computed
in the forward (a fused linear cross-entropy, Liger's idea): no logits kept, none recomputed.
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

    ``chunk_rows``: compute the output head and the loss ``chunk_rows`` target rows at a time, never all the
    logits at once (``chunked_cross_entropy``: for a plain Linear head the gradients are computed chunk by
    chunk in the forward, no logits recomputed; for a wrapped head each chunk is recomputed in the
    backward); None: all at once."""
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
    softmax's gradient as much again. Two ways to keep only one chunk of them:

    - a plain ``nn.Linear`` head (every model's own head, trainable or frozen): the fused linear
      cross-entropy (the idea of Liger's kernel, in plain torch; ``_FusedLinearCrossEntropy``). The forward
      computes each chunk's logits, its loss, and at once the gradient of the loss with respect to the
      logits (softmax minus one-hot, in place on the chunk's fp32 logits), then the gradients of the
      hidden rows (and of the head's weight and bias, when they train) and frees the chunk. The backward
      only scales those gradients by the incoming scalar: no logits recomputed, no second head matmul.
    - any other head (LoRA-wrapped, quantized: its backward is not a plain matmul with one weight):
      each chunk through the head and the loss under activation checkpointing, its logits recomputed,
      one chunk at a time, in the backward pass (one more head matmul per chunk as the price).

    Without gradients (eval, ``torch.no_grad``) both reduce to the chunks' losses. The sum is the same as
    all at once, to rounding (tests/test_train.py)."""
    from torch.utils.checkpoint import checkpoint

    if chunk_rows < 1:
        raise SettingsError(f"loss_chunk_rows must be at least 1, got {chunk_rows}.")
    if hidden.size(0) <= chunk_rows:
        return _head_loss(head, hidden, targets)
    fused = _is_plain_linear(head)
    params = (hidden, head.weight, head.bias) if fused else (hidden, *head.parameters())
    wants_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in params)
    if fused and wants_grad:
        return _FusedLinearCrossEntropy.apply(hidden, head.weight, head.bias, targets, chunk_rows)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.size(0), chunk_rows):
        rows = slice(start, start + chunk_rows)
        if wants_grad:  # a wrapped head: recompute its chunk in backward rather than keep the logits
            total = total + checkpoint(_head_loss, head, hidden[rows], targets[rows], use_reentrant=False)
        else:  # nothing to differentiate: the chunk's loss, its logits freed at once
            total = total + _head_loss(head, hidden[rows], targets[rows])
    return total


def _is_plain_linear(head) -> bool:
    """The fused loss calls ``F.linear(hidden, head.weight, head.bias)`` itself and writes the weight's gradient:
    right only for exactly ``nn.Linear`` with ordinary tensors and no hooks. Not for a LoRA wrapper (its
    adapter's gradients would be skipped), nor bitsandbytes' Linear4bit/Linear8bitLt (subclasses of
    nn.Linear whose weight is a quantized Params4bit/Int8Params, not the matrix the matmul uses)."""
    return (type(head) is torch.nn.Linear and type(head.weight) in (torch.Tensor, torch.nn.Parameter)
            and (head.bias is None or type(head.bias) in (torch.Tensor, torch.nn.Parameter))
            and not (head._forward_hooks or head._forward_pre_hooks or head._backward_hooks))


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """sum_i cross_entropy(hidden_i @ W.T + b, target_i), its gradients computed in the forward, chunk by chunk.

    Per chunk of rows: logits (in the dtype ``F.linear`` gives under the active autocast, as the head's own
    call would), their fp32 copy, the loss from it, then that copy turned in place into d_logits = softmax -
    one_hot; grad_hidden[chunk] = d_logits @ W and, if W trains, grad_W += d_logits.T @ hidden_chunk (the
    matmuls in the logits' dtype, as autograd would run the head's backward). Kept for backward: grad_hidden
    (rows x width, hidden's dtype) and grad_W (fp32 accumulator, cast to W's dtype), nothing vocabulary-wide
    beyond one chunk. Rows whose target is IGNORE_INDEX add no loss and no gradient."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_rows):
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        rows = hidden.size(0)
        grad_hidden = torch.empty_like(hidden) if need_h else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_bias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        ignored = targets == IGNORE_INDEX
        any_ignored = bool(ignored.any())  # the caller passes target rows only: normally False, one check a call
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, rows, chunk_rows):
            h = hidden[start:start + chunk_rows]
            t = targets[start:start + chunk_rows]
            logits = F.linear(h, weight, bias)  # under autocast as the head's call: same dtype, same rounding
            low = logits.dtype
            d = logits.float()
            if d is not logits:
                del logits  # the 16-bit logits: the fp32 copy is all that is needed now
            t_safe = t.clamp_min(0) if any_ignored else t
            d.sub_(d.amax(dim=1, keepdim=True))  # shifted logits: exp cannot overflow
            target_logit = d.gather(1, t_safe[:, None]).squeeze(1)
            d.exp_()
            sums = d.sum(dim=1)
            losses = sums.log() - target_logit  # logsumexp - the target's logit
            d.div_(sums[:, None])  # softmax
            d.scatter_add_(1, t_safe[:, None], d.new_full((t.size(0), 1), -1.0))  # - one_hot: d_logits
            if any_ignored:
                keep = ~ignored[start:start + chunk_rows]
                losses = losses * keep
                d.mul_(keep[:, None])
            total += losses.sum()
            # the head's backward in the logits' dtype, as autograd would run it: under autocast the matmuls
            # cast their inputs (the weight's copy is autocast's cached one); without it the dtypes already agree
            d_low = d.to(low)
            del d
            if need_h:
                grad_hidden[start:start + chunk_rows] = (d_low @ weight).to(hidden.dtype)
            if need_w:
                grad_weight += (d_low.t() @ h).float()
            if need_b:
                grad_bias += d_low.float().sum(0)
            del d_low  # before the next chunk's logits exist: one chunk's vocabulary-wide tensors at a time
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        w_dtype, b_dtype = ctx.dtypes
        scale = grad_output.float()
        out_h = (grad_hidden * scale.to(grad_hidden.dtype)) if grad_hidden is not None else None
        out_w = (grad_weight * scale).to(w_dtype) if grad_weight is not None else None
        out_b = (grad_bias * scale).to(b_dtype) if grad_bias is not None else None
        return out_h, out_w, out_b, None, None


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
