# %% markdown
# # Exercise 7: merging an adapter into the weights, and taking it out again
#
# After training, $W = W_0 + \frac{\alpha}{r} B A$ can be folded into the base weight: the merged layer gives the
# same outputs with no extra matrix products at inference. Unmerging subtracts the same $\Delta W$ and gives back
# $W_0$ (up to floating-point rounding), so one base model can serve several adapters in turn.
#
# You work on `lora_course.lora.LoRALinear`: its `base_layer` is the frozen `nn.Linear`, `lora_A` and `lora_B` are
# `nn.Linear`s holding $A$ (`lora_A.weight`, shape r x in) and $B$ (`lora_B.weight`, shape out x r), `scaling` is
# $\alpha/r$, and its forward skips the adapter when `merged` is `True`.
# %% setup
# %% code id=imports
import warnings

import torch
from torch import nn

from lora_course.lora import LoRALinear, LoraSettings, inject_lora, lora_layers
from lora_course.models import tiny_model

warnings.filterwarnings("ignore")
torch.manual_seed(0)


def trained_layer(d_in=32, d_out=48, r=4, alpha=16, seed=0) -> LoRALinear:
    """A LoRA layer whose B is no longer zero, as after training."""
    torch.manual_seed(seed)
    layer = LoRALinear(nn.Linear(d_in, d_out), r=r, alpha=alpha)
    with torch.no_grad():
        layer.lora_B.weight.normal_(0, 0.1)
    return layer
# %% markdown
# ## 7.1 The update
#
# Write `delta_weight(layer)`: $\Delta W = \frac{\alpha}{r} B A$ as a tensor shaped like `layer.base_layer.weight`.
# %% answer id=delta_weight
def delta_weight(layer: LoRALinear) -> torch.Tensor:
    ### BEGIN SOLUTION
    return layer.scaling * (layer.lora_B.weight @ layer.lora_A.weight)
    ### END SOLUTION
# %% test id=test_delta_weight points=2
layer = trained_layer()
dw = delta_weight(layer)
assert dw.shape == layer.base_layer.weight.shape, f"ΔW must be (out, in) = {tuple(layer.base_layer.weight.shape)}"
### BEGIN HIDDEN TESTS
assert torch.allclose(dw, layer.delta_weight(), atol=1e-6), "ΔW = (alpha / r) B A: is the scaling there?"
### END HIDDEN TESTS
# %% markdown
# ## 7.2 Merge and unmerge
#
# Write `merge(layer)` and `unmerge(layer)`. `merge` adds $\Delta W$ to `layer.base_layer.weight` in place (under
# `torch.no_grad()`) and sets `layer.merged = True`; merging a merged layer does nothing. `unmerge` subtracts it
# and sets `layer.merged = False`; unmerging an unmerged layer does nothing.
# %% answer id=merge_unmerge
def merge(layer: LoRALinear) -> None:
    ### BEGIN SOLUTION
    if layer.merged:
        return
    with torch.no_grad():
        layer.base_layer.weight += delta_weight(layer)
    layer.merged = True
    ### END SOLUTION


def unmerge(layer: LoRALinear) -> None:
    ### BEGIN SOLUTION
    if not layer.merged:
        return
    with torch.no_grad():
        layer.base_layer.weight -= delta_weight(layer)
    layer.merged = False
    ### END SOLUTION
# %% test id=test_merge_same_outputs points=3
layer = trained_layer()
x = torch.randn(5, 32)
before = layer(x)
merge(layer)
assert layer.merged
after = layer(x)
print(f"largest change of the output after merging: {(after - before).abs().max():.2e}")
### BEGIN HIDDEN TESTS
assert torch.allclose(before, after, atol=1e-5), "the merged layer must give the same outputs as the adapter"
w = layer.base_layer.weight.clone()
merge(layer)
assert torch.equal(w, layer.base_layer.weight), "merging twice must not add ΔW twice"
for r, alpha in [(1, 2), (8, 8), (16, 4)]:
    l2 = trained_layer(r=r, alpha=alpha, seed=r)
    b2 = l2(x)
    merge(l2)
    assert torch.allclose(l2(x), b2, atol=1e-5), f"merge changes the outputs for r={r}, alpha={alpha}"
### END HIDDEN TESTS
# %% test id=test_unmerge_restores points=3
layer = trained_layer(seed=3)
w0 = layer.base_layer.weight.clone()
x = torch.randn(5, 32)
before = layer(x)
merge(layer)
unmerge(layer)
assert not layer.merged
### BEGIN HIDDEN TESTS
assert torch.allclose(layer.base_layer.weight, w0, atol=1e-6), "unmerge must give back the base weight"
assert torch.allclose(layer(x), before, atol=1e-5), "after unmerging, the layer must behave as before merging"
unmerge(layer)
assert torch.allclose(layer.base_layer.weight, w0, atol=1e-6), "unmerging an unmerged layer must do nothing"
### END HIDDEN TESTS
# %% test id=test_merge_model points=2
model, _ = tiny_model(seed=0)
inject_lora(model, LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
torch.manual_seed(1)
for _, l in lora_layers(model):
    with torch.no_grad():
        l.lora_B.weight.normal_(0, 0.05)
ids = torch.randint(0, 1000, (2, 7))
with torch.no_grad():
    before = model(ids).logits
    for _, l in lora_layers(model):
        merge(l)
    after = model(ids).logits
### BEGIN HIDDEN TESTS
assert torch.allclose(before, after, atol=1e-4), "merging every adapter of the model must keep its logits"
### END HIDDEN TESTS
# %% markdown
# Merging into a bf16 base and unmerging again does not give back $W_0$ exactly. Why? (Graded by hand.)
# %% written id=bf16 points=1
# bf16 keeps 8 significant bits: W0 + ΔW is rounded when it is stored, and subtracting ΔW from the rounded sum
# rounds again, so small parts of W0 are lost. Keep an fp32 (or the original) copy of the base to unmerge exactly.
