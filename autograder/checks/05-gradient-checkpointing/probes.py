"""Exercise 5's probes: they run in the kernel (the student's, and the reference solution's own), call the
answers on the grader's inputs and return plain data. No expected value is here; checks.py compares."""

import torch
from torch import nn

from lora_course.grading.probe import each


class _Block(nn.Module):
    """The exercise's residual MLP block, built here from the grader's weights (not from the notebook's class,
    which the notebook could have changed)."""

    def __init__(self, state: dict):
        super().__init__()
        hidden, d = state["up.weight"].shape
        self.up = nn.Linear(d, hidden)
        self.down = nn.Linear(hidden, d)
        self.load_state_dict(state)

    def forward(self, x):
        return x + self.down(torch.nn.functional.gelu(self.up(x)))


def _blocks(case) -> nn.ModuleList:
    return nn.ModuleList(_Block(state) for state in case["blocks"])


def _input(case) -> torch.Tensor:
    return case["x"].clone().requires_grad_(case["x_requires_grad"])


def _count_saved(fn) -> int:
    # the probe's own count, so this cell judges forward's checkpointing whatever saved_bytes does
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def test_forward_same_result(answers, inputs):
    def run(case):
        blocks = _blocks(case)
        out = {}
        for mode, flag in (("plain", False), ("checkpointed", True)):
            x = _input(case)
            y = answers.forward(blocks, x, checkpointed=flag)
            grads = None  # None: the output does not require grad, so nothing could be trained through it
            if isinstance(y, torch.Tensor) and y.requires_grad:
                blocks.zero_grad(set_to_none=True)
                y.sum().backward()
                grads = {name: p.grad for name, p in blocks.named_parameters()}
                grads["input"] = x.grad
            out[mode] = {"y": y, "grads": grads}
        return out

    return each(inputs["cases"], run)


def test_saved_bytes(answers, inputs):
    ops = {
        "square": lambda t: (t["a"] * t["a"]).sum(),
        "matmul": lambda t: t["a"] @ t["w"],
        "detached": lambda t: (t["a"].detach() + 1).sum(),
        "slice_times": lambda t: t["a"][:, : t["b"].shape[1]] * t["b"],
    }

    def run(case):
        t = {name: v.clone().requires_grad_(True) for name, v in case["tensors"].items()}
        return answers.saved_bytes(lambda: ops[case["op"]](t))

    return each(inputs["cases"], run)


def test_checkpointing_saves_memory(answers, inputs):
    def run(case):
        blocks, x = _blocks(case), _input(case)
        return {mode: _count_saved(lambda: answers.forward(blocks, x, checkpointed=flag))
                for mode, flag in (("plain", False), ("checkpointed", True))}

    return each(inputs["cases"], run)
