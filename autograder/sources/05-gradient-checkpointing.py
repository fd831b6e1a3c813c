# %% markdown
# # Exercise 5: gradient checkpointing
#
# The backward pass needs the activations of the forward pass. Storing all of them costs memory proportional to
# depth x batch x sequence length. Gradient checkpointing keeps only each block's *input* and recomputes the
# block's inside during backward: less memory, about one extra forward pass of compute.
#
# You will checkpoint a stack of blocks with `torch.utils.checkpoint`, and measure what the autograd graph keeps
# with `torch.autograd.graph.saved_tensors_hooks`.
# %% setup
# %% code id=imports
import os
import time
import warnings

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

warnings.filterwarnings("ignore")
torch.manual_seed(0)


class Block(nn.Module):
    """A residual MLP block, like the feed-forward half of a transformer layer."""

    def __init__(self, d: int = 64, hidden: int = 256):
        super().__init__()
        self.up = nn.Linear(d, hidden)
        self.down = nn.Linear(hidden, d)

    def forward(self, x):
        return x + self.down(torch.nn.functional.gelu(self.up(x)))


def make_blocks(n: int = 6, seed: int = 0) -> nn.ModuleList:
    torch.manual_seed(seed)
    return nn.ModuleList(Block() for _ in range(n))
# %% markdown
# ## 5.1 A checkpointed forward pass
#
# Write `forward(blocks, x, checkpointed)`: apply the blocks in order; with `checkpointed=True`, run each block
# through `torch.utils.checkpoint.checkpoint(..., use_reentrant=False)`. Results and gradients must be identical
# either way, also when `x` does not require grad (in LoRA the frozen model's embeddings feed the first block: only
# the weights inside the blocks are trained), and for any number of blocks and input shape `(..., d)`.
# %% answer id=forward
def forward(blocks: nn.ModuleList, x: torch.Tensor, checkpointed: bool) -> torch.Tensor:
    ### BEGIN SOLUTION
    for block in blocks:
        x = checkpoint(block, x, use_reentrant=False) if checkpointed else block(x)
    return x
    ### END SOLUTION
# %% test id=test_forward_same_result points=3
blocks = make_blocks()
x = torch.randn(4, 32, 64, requires_grad=True)
plain = forward(blocks, x, checkpointed=False)
ckpt = forward(blocks, x, checkpointed=True)
assert torch.allclose(plain, ckpt), "checkpointing must not change the result"
### BEGIN HIDDEN TESTS
ref = x
for b in blocks:
    ref = b(ref)
assert torch.allclose(plain, ref, atol=1e-6), "forward must apply every block in order"


def _grads(blocks, x, checkpointed):
    # backward() rather than autograd.grad(): reentrant checkpointing supports only the former
    blocks.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(x.requires_grad)
    out = forward(blocks, x, checkpointed)
    assert out.requires_grad, f"checkpointed={checkpointed}: the output does not require grad, the weights get no gradient"
    out.sum().backward()
    return [x.grad] + [p.grad for p in blocks.parameters()]


for x_edge, blocks_edge in [(x, blocks), (torch.randn(2, 7, 64), make_blocks(4, seed=1)),
                            (torch.randn(5, 64, requires_grad=True), make_blocks(1, seed=2))]:
    for a, b in zip(_grads(blocks_edge, x_edge, False), _grads(blocks_edge, x_edge, True)):
        assert (a is None) == (b is None), "checkpointed and plain passes give gradients to different tensors"
        assert a is None or torch.allclose(a, b, atol=1e-6), (
            f"checkpointed gradients differ from the plain ones (input {tuple(x_edge.shape)}, "
            f"requires_grad={x_edge.requires_grad})")
### END HIDDEN TESTS
# %% markdown
# ## 5.2 Measuring what the graph keeps
#
# Write `saved_bytes(fn)`: call `fn()` inside `torch.autograd.graph.saved_tensors_hooks(pack, unpack)` and return
# the total bytes (`numel * element_size`) of the tensors autograd saved for backward, counting each saved tensor
# every time it is packed. Parameters are saved too; that is fine, both runs save them.
# %% answer id=saved_bytes
def saved_bytes(fn) -> int:
    ### BEGIN SOLUTION
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total
    ### END SOLUTION
# %% test id=test_saved_bytes points=2
a = torch.randn(10, 20, requires_grad=True)
n = saved_bytes(lambda: (a * a).sum())
print(n, "bytes saved for a * a")
assert n > 0
### BEGIN HIDDEN TESTS
assert n == 2 * 10 * 20 * 4, f"a * a saves both operands (2 x 800 bytes), you counted {n}"
w = torch.randn(20, 30, requires_grad=True)
assert saved_bytes(lambda: a @ w) == (10 * 20 + 20 * 30) * 4, "a matmul saves both of its inputs"
assert saved_bytes(lambda: (a.detach() + 1).sum()) == 0, "nothing is saved without autograd"
a64, w64 = a.double().detach().requires_grad_(), w.double().detach().requires_grad_()
assert saved_bytes(lambda: a64 @ w64) == (10 * 20 + 20 * 30) * 8, "float64 elements take 8 bytes (element_size())"
a16 = a.bfloat16().detach().requires_grad_()
assert saved_bytes(lambda: (a16 * a16).sum()) == 2 * 10 * 20 * 2, "bfloat16 elements take 2 bytes"
b = torch.randn(10, 3, requires_grad=True)
assert saved_bytes(lambda: a[:, :3] * b) == 2 * 10 * 3 * 4, "a saved slice counts its own elements, not its storage's"
### END HIDDEN TESTS
# %% test id=test_checkpointing_saves_memory points=3
blocks = make_blocks()
x = torch.randn(8, 128, 64, requires_grad=True)
plain = saved_bytes(lambda: forward(blocks, x, checkpointed=False))
ckpt = saved_bytes(lambda: forward(blocks, x, checkpointed=True))
print(f"saved activations: {plain / 2**20:.1f} MiB plain, {ckpt / 2**20:.1f} MiB checkpointed")
### BEGIN HIDDEN TESTS
assert ckpt < plain / 4, f"checkpointing should keep far less ({ckpt} vs {plain} bytes): is every block checkpointed?"
block_inputs = len(blocks) * x.numel() * x.element_size()
params = sum(p.numel() * p.element_size() for p in blocks.parameters())
assert ckpt <= block_inputs + params, "a checkpointed run keeps at most each block's input (plus parameters)"
frozen_input = torch.randn(8, 64, 64)  # the embeddings of a frozen model: no grad, but the blocks' weights train
plain = saved_bytes(lambda: forward(blocks, frozen_input, checkpointed=False))
ckpt = saved_bytes(lambda: forward(blocks, frozen_input, checkpointed=True))
assert ckpt < plain / 4, f"with an input that does not require grad, checkpointing must still save memory ({ckpt} vs {plain})"
one = make_blocks(1, seed=3)
plain = saved_bytes(lambda: forward(one, x, checkpointed=False))
ckpt = saved_bytes(lambda: forward(one, x, checkpointed=True))
assert ckpt < plain / 4, f"a single block is checkpointed too ({ckpt} vs {plain} bytes)"
### END HIDDEN TESTS
# %% markdown
# ## 5.3 What it costs (skipped when the notebook is autograded)
# %% code id=timing
if os.environ.get("NBGRADER_EXECUTION"):
    print("skipped while grading")
else:
    for flag in (False, True):
        start = time.perf_counter()
        for _ in range(5):
            forward(blocks, x, checkpointed=flag).sum().backward()
        print(f"checkpointed={flag}: {(time.perf_counter() - start) / 5 * 1000:.1f} ms per step")
# %% markdown
# Why does checkpointing cost roughly one extra forward pass and not one extra backward pass? (Graded by hand.)
# %% written id=cost points=1
# During backward each block's forward is run again from its saved input to rebuild the activations it needs;
# the backward itself happens once as usual. So the extra work is one more forward of every block (about a third
# more compute for a step, as backward costs about twice a forward).
