# %% markdown
# # Exercise 2: a LoRA layer
#
# LoRA keeps a pretrained linear layer $W_0$ frozen and learns a low-rank update
# $\Delta W = \frac{\alpha}{r} B A$, with $A \in \mathbb{R}^{r \times d_{in}}$ and $B \in \mathbb{R}^{d_{out} \times r}$.
# The forward pass is $h = W_0 x + \frac{\alpha}{r} B A x$.
#
# Two details decide whether training starts well: $B$ starts at **zero** (so the adapted model is exactly the
# pretrained one at step 0) while $A$ starts **random** (so the gradient of $B$ is not zero), and the update is
# scaled by $\alpha / r$ (so changing the rank does not change the size of the update you have to tune for).
#
# Fill in the cells marked `YOUR CODE HERE`, then run the tests below them.
# %% setup
# %% code id=imports
import math
import warnings

import torch
from torch import nn

warnings.filterwarnings("ignore")
torch.manual_seed(0)
# %% markdown
# ## 2.1 The layer
#
# Write `LoRALayer(base, r, alpha)`: it keeps `base` (an `nn.Linear`, with or without a bias) and **freezes** it, and has two trainable
# `nn.Parameter`s: `A` of shape `(r, in_features)`, initialised randomly (e.g. Kaiming-uniform like `nn.Linear`),
# and `B` of shape `(out_features, r)`, initialised to zeros; `scaling` is $\alpha / r$.
# `forward(x)` returns `base(x) + scaling * (x A^T) B^T`.
# %% answer id=lora_layer
class LoRALayer(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        ### BEGIN SOLUTION
        self.base = base
        self.base.requires_grad_(False)
        self.r = r
        self.scaling = alpha / r
        self.A = nn.Parameter(torch.empty(r, base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        return self.base(x) + (x @ self.A.T @ self.B.T) * self.scaling
        ### END SOLUTION
# %% test id=test_shapes_and_init points=2
base = nn.Linear(32, 48)
layer = LoRALayer(base, r=4, alpha=8)
assert layer.A.shape == (4, 32), f"A should be (r, in_features) = (4, 32), got {tuple(layer.A.shape)}"
assert layer.B.shape == (48, 4), f"B should be (out_features, r) = (48, 4), got {tuple(layer.B.shape)}"
x = torch.randn(5, 32)
assert layer(x).shape == (5, 48)
print("shapes look right")
### BEGIN HIDDEN TESTS
assert torch.all(layer.B == 0), "B must start at zero, so that the adapted layer equals the base layer at step 0"
assert layer.A.abs().sum() > 0, "A must start random (not zero), or B never receives a gradient"
assert torch.allclose(layer(x), base(x)), "at initialisation the LoRA layer must return exactly base(x)"
### END HIDDEN TESTS
# %% test id=test_frozen_base points=2
layer = LoRALayer(nn.Linear(16, 16), r=2, alpha=4)
trainable = {n for n, p in layer.named_parameters() if p.requires_grad}
assert {"A", "B"} <= trainable, f"A and B must be trainable, trainable parameters are {sorted(trainable)}"
### BEGIN HIDDEN TESTS
assert trainable == {"A", "B"}, f"only A and B may be trainable (the base layer is frozen); trainable: {sorted(trainable)}"
layer(torch.randn(3, 16)).pow(2).sum().backward()
assert layer.B.grad is not None and layer.B.grad.abs().sum() > 0, "B gets no gradient at step 0: is A initialised to zero?"
### END HIDDEN TESTS
# %% test id=test_forward_matches_reference points=4
from lora_course.lora import LoRALinear

base = nn.Linear(24, 40)
ours = LoRALayer(base, r=8, alpha=16)
with torch.no_grad():
    ours.B.normal_()  # pretend training moved B away from zero
ref = LoRALinear(base, r=8, alpha=16)
with torch.no_grad():
    ref.lora_A.weight.copy_(ours.A)
    ref.lora_B.weight.copy_(ours.B)
x = torch.randn(7, 24)
assert ours(x).shape == ref(x).shape
### BEGIN HIDDEN TESTS
assert abs(ours.scaling - 2.0) < 1e-12, f"scaling must be alpha / r = 16 / 8 = 2, got {ours.scaling}"
assert torch.allclose(ours(x), ref(x), atol=1e-5), "forward differs from the reference LoRA layer (check the alpha/r scaling and the order of A and B)"
for r, alpha in [(1, 1), (4, 32), (16, 8)]:
    b = nn.Linear(12, 20)
    o = LoRALayer(b, r=r, alpha=alpha)
    with torch.no_grad():
        o.B.uniform_(-1, 1)
    rf = LoRALinear(b, r=r, alpha=alpha)
    with torch.no_grad():
        rf.lora_A.weight.copy_(o.A)
        rf.lora_B.weight.copy_(o.B)
    z = torch.randn(2, 3, 12)
    assert torch.allclose(o(z), rf(z), atol=1e-5), f"forward differs from the reference for r={r}, alpha={alpha} (3-d input)"
nb = nn.Linear(30, 18, bias=False)
o = LoRALayer(nb, r=6, alpha=3)
with torch.no_grad():
    o.B.normal_()
z = torch.randn(5, 30)
assert torch.allclose(o(z), nb(z) + 0.5 * (z @ o.A.T @ o.B.T), atol=1e-5), "a base layer without a bias must work too"
### END HIDDEN TESTS
# %% markdown
# ## 2.2 Why scale by $\alpha / r$?
# In two or three sentences below: what would go wrong when you change the rank $r$ of a run if the update were
# $BA$ instead of $\frac{\alpha}{r} BA$? (Graded by hand.)
# %% written id=why_scaling points=1
# Without the $1/r$ factor the size of the update grows with $r$ (more rank-one terms add up), so every change of
# rank would need a new learning rate. Scaling by $\alpha/r$ keeps the update's scale roughly constant in $r$, so
# $\alpha$ (and the learning rate) can be tuned once and reused when the rank changes.
