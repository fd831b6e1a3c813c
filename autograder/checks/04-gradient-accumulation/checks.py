"""Exercise 4's hidden checks, run by the grader only: the inputs (from the grading seed) and the verdicts.

The windows are random: two to four micro-batches of different numbers of rows (one row included) and lengths,
with prompt masking and right padding (-100) of random sizes, on a tiny model of a random seed with a small
vocabulary. The grader computes the big batch's loss and gradient itself (every target token of the window at
once, divided by their number). Edge cases: a padding-only row and rows of a single position for the count (an
answer that counts at least one target per row gets them wrong), and a micro-batch with no target at all (an
answer built on the model's own mean loss gets 0 / 0 = NaN from it for the window's loss).
"""

import math

import torch
import torch.nn.functional as F

CONFIG = {"num_hidden_layers": 2, "hidden_size": 32, "vocab_size": 2048}


def _int(g, low, high):
    return int(torch.randint(low, high + 1, (1,), generator=g))


def _micro_batch(g, rows, length, fully_masked=False):
    ids = torch.randint(3, CONFIG["vocab_size"], (rows, length), generator=g)
    labels = ids.clone()
    labels[:, : _int(g, 0, length - 4)] = -100  # the prompt (every row keeps a target: length >= 5, padding <= 2)
    for row in range(rows):
        pad = _int(g, 0, 2)
        if pad:
            labels[row, -pad:] = -100  # right padding
    if fully_masked:
        labels[:] = -100
    return {"input_ids": ids, "labels": labels}


def _window(g, fully_masked_at=None):
    while True:  # uneven: micro-batches with equal numbers of targets would hide a mean of means
        n = _int(g, 2, 4)
        batches = [_micro_batch(g, 1, _int(g, 5, 12))]  # a single example
        batches += [_micro_batch(g, _int(g, 1, 3), _int(g, 5, 12)) for _ in range(n - 1)]
        if len({_targets(b["labels"]) for b in batches}) > 1:
            break
    if fully_masked_at is not None:
        batches.insert(fully_masked_at, _micro_batch(g, _int(g, 1, 2), _int(g, 5, 8), fully_masked=True))
    return {"seed": _int(g, 0, 9999), "config": CONFIG, "micro_batches": batches}


def make_inputs(g: torch.Generator) -> dict:
    random_labels = _micro_batch(g, 3, 9)["labels"]
    padding_row = _micro_batch(g, 3, 7)["labels"]
    padding_row[_int(g, 0, 2)] = -100
    return {
        "test_count_targets": {"labels": {
            "random labels (3 x 9)": random_labels,
            "labels with a padding-only row": padding_row,
            "one row": torch.tensor([[-100, 5, 6, -100]]),
            "rows of a single position": torch.tensor([[7], [-100]]),
        }},
        "test_accumulate_loss": {"windows": {
            "a window of uneven micro-batches": _window(g),
            "a window with a micro-batch without any target": _window(g, fully_masked_at=1),
        }},
        "test_accumulate_gradient": {"windows": {
            "a window of uneven micro-batches": _window(g),
            "another window of uneven micro-batches": _window(g),
        }},
    }


def _ok(result, case: str) -> None:
    assert not (isinstance(result, dict) and "__error__" in result), f"{case}: {result.get('__error__')}"


def _targets(labels) -> int:
    return int((labels[:, 1:] != -100).sum())


_big_batch: dict = {}


def _big_batch_gradient(case):
    """The mean token loss of the whole window at once and its gradient (cached: the grader asks per student)."""
    key = repr((case["seed"], [(b["input_ids"].tolist(), b["labels"].tolist()) for b in case["micro_batches"]]))
    if key not in _big_batch:
        from lora_course.models import tiny_model

        model, _ = tiny_model(seed=case["seed"], **case["config"])
        n = sum(_targets(b["labels"]) for b in case["micro_batches"])
        total = 0
        for b in case["micro_batches"]:
            logits = model(input_ids=b["input_ids"]).logits
            total = total + F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), b["labels"][:, 1:].reshape(-1).long(),
                                            ignore_index=-100, reduction="sum")
        loss = total / n
        loss.backward()
        _big_batch[key] = (loss.item(), {k: p.grad.clone() for k, p in model.named_parameters()})
    return _big_batch[key]


def _shapes(case) -> str:
    return " + ".join(f"{tuple(b['labels'].shape)} with {_targets(b['labels'])} targets" for b in case["micro_batches"])


def test_count_targets(inputs, got, want):
    for case, labels in inputs["labels"].items():
        mine = got[case]
        _ok(mine, case)
        assert isinstance(mine, int) and not isinstance(mine, bool), f"{case}: count_targets must return an int, got {mine!r}"
        assert mine == _targets(labels), (
            f"{case}: expected {_targets(labels)} targets, got {mine} (the first position of a row is never predicted; "
            "-100 is not a target)")


def test_accumulate_loss(inputs, got, want):
    for case, spec in inputs["windows"].items():
        mine = got[case]
        _ok(mine, case)
        assert isinstance(mine["loss"], float), f"{case}: accumulate must return the loss as a Python float"
        assert math.isfinite(mine["loss"]), f"{case} ({_shapes(spec)}): the window's loss is {mine['loss']}"
        assert not mine["without_grad"], f"{case}: every parameter should have a gradient after the window"
        ref_loss, _ = _big_batch_gradient(spec)
        assert abs(mine["loss"] - ref_loss) < 1e-4, (
            f"{case} ({_shapes(spec)}): window loss {mine['loss']:.5f}, expected {ref_loss:.5f} (mean over all "
            "target tokens of the window)")


def test_accumulate_gradient(inputs, got, want):
    for case, spec in inputs["windows"].items():
        mine = got[case]
        _ok(mine, case)
        _, ref_grads = _big_batch_gradient(spec)
        for k, ref in ref_grads.items():
            grad = mine.get(k)
            assert isinstance(grad, torch.Tensor) and grad.shape == ref.shape, f"{case}: {k} has no gradient after the window"
            assert torch.allclose(grad, ref, rtol=1e-3, atol=1e-6), (
                f"{case} ({_shapes(spec)}): gradient of {k} differs from the big-batch gradient: are the micro-batch "
                "losses weighted by their tokens?")
