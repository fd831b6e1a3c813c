"""Batched greedy generation through the model's own chat template: the same formatting the
training data went through, so what is measured is what was trained."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def _left_padding(tokenizer):
    # A decoder-only model continues from the last position of each row: pad on the left so
    # every prompt ends there. Restored after, since training pads on the right.
    saved = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        yield
    finally:
        tokenizer.padding_side = saved


def _as_messages(prompt) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    # a training conversation: keep everything before the last assistant reply
    messages = list(prompt)
    while messages and messages[-1]["role"] == "assistant":
        messages.pop()
    return messages


@torch.no_grad()
def generate(model, tokenizer, prompts, max_new_tokens: int = 32, batch_size: int = 16) -> list[str]:
    """Greedy replies, one per prompt (a string, or a list of chat messages)."""
    was_training = model.training
    model.eval()
    device = next(p.device for p in model.parameters())
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    texts = [tokenizer.apply_chat_template(_as_messages(p), tokenize=False, add_generation_prompt=True) for p in prompts]
    replies = []
    try:
        with _left_padding(tokenizer):
            for start in range(0, len(texts), batch_size):
                enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                                add_special_tokens=False).to(device)
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
                width = enc["input_ids"].shape[1]
                replies += [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]
    finally:
        model.train(was_training)
    return replies


def side_by_side(prompts, replies_by_model: dict[str, list[str]], width: int = 60) -> str:
    """A markdown table: one row per prompt, one column per model (base, adapters, merged)."""
    def cell(text: str) -> str:
        text = " ".join(str(text).split()).replace("|", "\\|")
        return text if len(text) <= width else text[: width - 1] + "…"

    names = list(replies_by_model)
    lines = ["| prompt | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for i, prompt in enumerate(prompts):
        shown = prompt if isinstance(prompt, str) else _as_messages(prompt)[-1]["content"]
        lines.append("| " + cell(shown) + " | " + " | ".join(cell(replies_by_model[n][i]) for n in names) + " |")
    return "\n".join(lines)
