# %% markdown
# # Exercise 4: gradient accumulation, normalised by tokens
#
# When a batch does not fit, you split it into micro-batches and add up their gradients before one optimizer step.
# The result should be the gradient of the **big batch's** loss: the mean cross-entropy over all the target tokens
# of the whole accumulation window. Micro-batches hold different numbers of target tokens (padding, prompt
# masking), so *averaging each micro-batch's mean loss* weights a token in a short micro-batch more than a token in
# a long one. The fix (as in torchtune and recent transformers): sum the token losses, divide by the number of
# target tokens in the whole window.
#
# Labels follow the Hugging Face convention: `labels` has the shape of `input_ids`, the token at position `t+1` is
# predicted from position `t`, and `-100` marks positions that are not targets.
# %% setup
# %% code id=imports
import os
import warnings

import torch
import torch.nn.functional as F

from lora_course.models import tiny_model

warnings.filterwarnings("ignore")
torch.manual_seed(0)


def make_micro_batches(seed: int = 0) -> list[dict]:
    """Three micro-batches of different lengths and different amounts of masking."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for rows, length, masked in [(2, 12, 3), (1, 5, 0), (3, 9, 6)]:
        ids = torch.randint(3, 2000, (rows, length), generator=g)
        labels = ids.clone()
        labels[:, :masked] = -100  # the prompt is not a target
        batches.append({"input_ids": ids, "labels": labels})
    return batches
# %% markdown
# ## 4.1 Counting targets
#
# Write `count_targets(labels)`: the number of positions that are predicted and are targets (remember the shift:
# the first position of each row is never predicted). A row may hold no target at all (padding only).
# %% answer id=count_targets
def count_targets(labels: torch.Tensor) -> int:
    ### BEGIN SOLUTION
    return int((labels[:, 1:] != -100).sum())
    ### END SOLUTION
# %% test id=test_count_targets points=2
labels = torch.tensor([[-100, -100, 5, 6, 7], [-100, 8, 9, -100, -100]])
assert isinstance(count_targets(labels), int)
### BEGIN HIDDEN TESTS
assert count_targets(labels) == 5, f"expected 5 targets (3 + 2), got {count_targets(labels)}"
assert count_targets(torch.tensor([[1, 2, 3]])) == 2, "the first position is never a target"
assert count_targets(torch.tensor([[-100, -100, -100], [4, -100, 6]])) == 1, "a padding-only row has no target"
assert count_targets(torch.tensor([[7], [-100]])) == 0, "a row of one position has nothing to predict"
### END HIDDEN TESTS
# %% markdown
# ## 4.2 One accumulation window
#
# Write `accumulate(model, micro_batches)`: run every micro-batch forward and backward so that, at the end, each
# parameter's `.grad` holds the gradient of (sum of the token cross-entropies of all micro-batches) / (number of
# target tokens of all micro-batches). Return that loss as a Python float. Do not call an optimizer. A micro-batch
# may have no target at all (every label -100, e.g. a prompt cut at the maximum length): it adds nothing to the
# window, and must not turn the loss or the gradients into NaN.
# %% answer id=accumulate
def accumulate(model: torch.nn.Module, micro_batches: list[dict]) -> float:
    ### BEGIN SOLUTION
    total_targets = sum(count_targets(b["labels"]) for b in micro_batches)
    total = 0.0
    for b in micro_batches:
        logits = model(input_ids=b["input_ids"]).logits
        loss_sum = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), b["labels"][:, 1:].reshape(-1),
                                   ignore_index=-100, reduction="sum")
        (loss_sum / total_targets).backward()
        total += loss_sum.item()
    return total / total_targets
    ### END SOLUTION
# %% code id=reference_gradient
def big_batch_gradient(seed: int = 0):
    """The gradient of the mean token loss of all micro-batches at once (the thing accumulation must equal)."""
    model, _ = tiny_model(seed=0)
    losses, n = [], 0
    for b in make_micro_batches(seed):
        logits = model(input_ids=b["input_ids"]).logits
        losses.append(F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), b["labels"][:, 1:].reshape(-1),
                                      ignore_index=-100, reduction="sum"))
        n += int((b["labels"][:, 1:] != -100).sum())
    loss = torch.stack(losses).sum() / n
    loss.backward()
    return loss.item(), {k: p.grad.clone() for k, p in model.named_parameters()}
# %% test id=test_accumulate_loss points=3
model, _ = tiny_model(seed=0)
loss = accumulate(model, make_micro_batches(0))
print(f"window loss {loss:.4f}")
assert isinstance(loss, float)
assert all(p.grad is not None for p in model.parameters()), "every parameter should have a gradient after the window"
### BEGIN HIDDEN TESTS
ref_loss, ref_grads = big_batch_gradient(0)
assert abs(loss - ref_loss) < 1e-4, f"window loss {loss:.5f}, expected {ref_loss:.5f} (mean over all target tokens of the window)"
empty = {"input_ids": torch.randint(3, 2000, (2, 6)), "labels": torch.full((2, 6), -100)}
model_with_empty, _ = tiny_model(seed=0)
loss_with_empty = accumulate(model_with_empty, make_micro_batches(0)[:1] + [empty] + make_micro_batches(0)[1:])
assert abs(loss_with_empty - ref_loss) < 1e-4, (
    f"a micro-batch without any target must add nothing to the window: loss {loss_with_empty}, expected {ref_loss:.5f}")
### END HIDDEN TESTS
# %% test id=test_accumulate_gradient points=4
# Graded by hidden tests: every parameter's gradient must equal the gradient of the whole window's loss.
### BEGIN HIDDEN TESTS
for seed in (0, 1):  # seed 0's reference is the one the loss test computed
    model, _ = tiny_model(seed=0)
    accumulate(model, make_micro_batches(seed))
    ref_grads = ref_grads if seed == 0 and "ref_grads" in globals() else big_batch_gradient(seed)[1]
    for k, p in model.named_parameters():
        assert torch.allclose(p.grad, ref_grads[k], rtol=1e-3, atol=1e-6), (
            f"gradient of {k} differs from the big-batch gradient: are the micro-batch losses weighted by their tokens?")
### END HIDDEN TESTS
# %% markdown
# ## 4.3 A short training run (skipped when the notebook is autograded)
#
# nbgrader sets `NBGRADER_EXECUTION` while it grades, so this cell's training does not count against grading time.
# %% code id=train_demo
if os.environ.get("NBGRADER_EXECUTION"):
    print("skipped while grading")
else:
    model, _ = tiny_model(seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(5):
        loss = accumulate(model, make_micro_batches(step))
        opt.step()
        opt.zero_grad()
        print(f"step {step}: loss {loss:.3f}")
# %% markdown
# By how much would "average the micro-batch means" over-weight a target token of the 1-row micro-batch above,
# compared with a token of the 3-row one? Answer below (graded by hand).
# %% written id=overweight points=1
# Averaging the means gives each micro-batch the weight 1/3, whatever its size. The 1-row micro-batch has 4 targets,
# the 3-row one 3 x 3 = 9. A token of the first counts (1/3)/4 = 1/12, a token of the second (1/3)/9 = 1/27: the
# short micro-batch's tokens are over-weighted 27/12 = 2.25 times.
