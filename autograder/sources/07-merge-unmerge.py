# %% markdown
# # Exercise 7: merging an adapter into the weights, and taking it out again
#
# After training, $W = W_0 + \frac{\alpha}{r} B A$ can be folded into the base weight: the merged layer gives the
# same outputs with no extra matrix products at inference. Unmerging subtracts the same $\Delta W$ and gives back
# $W_0$ (up to floating-point rounding), so one base model can serve several adapters in turn.
#
# You work on `lora_course.lora.LoRALinear`: its `base_layer` is the frozen `nn.Linear`, `lora_A` and `lora_B` are
# `nn.Linear`s holding $A$ (`lora_A.weight`, shape r x in) and $B$ (`lora_B.weight`, shape out x r), `scaling` is
# $\alpha/r$ (or $\alpha/\sqrt{r}$ for a rank-stabilised, rsLoRA, layer: use `layer.scaling`, not `alpha / r` again),
# and its forward skips the adapter when `merged` is `True`. The base may be bfloat16; its adapter stays float32.
# %% setup
# %% code id=imports
import warnings

import torch
from torch import nn

from lora_course.lora import LoRALinear, LoraSettings, inject_lora, lora_layers
from lora_course.models import tiny_model

warnings.filterwarnings("ignore")
torch.manual_seed(0)


def trained_layer(d_in=32, d_out=48, r=4, alpha=16, seed=0, use_rslora=False, dtype=torch.float32) -> LoRALinear:
    """A LoRA layer whose B is no longer zero, as after training (``dtype``: the base's)."""
    torch.manual_seed(seed)
    layer = LoRALinear(nn.Linear(d_in, d_out, dtype=dtype), r=r, alpha=alpha, use_rslora=use_rslora)
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
rs = trained_layer(d_out=20, r=8, use_rslora=True, seed=5)
assert torch.allclose(delta_weight(rs), rs.delta_weight(), atol=1e-6), "an rsLoRA layer scales by alpha / sqrt(r)"
wide = trained_layer(d_in=40, d_out=12, r=16, alpha=4, seed=6)
assert delta_weight(wide).shape == (12, 40) and torch.allclose(delta_weight(wide), wide.delta_weight(), atol=1e-6)
### END HIDDEN TESTS
# %% markdown
# ## 7.2 Merge and unmerge
#
# Write `merge(layer)` and `unmerge(layer)`. `merge` adds $\Delta W$ to `layer.base_layer.weight` in place (under
# `torch.no_grad()`) and sets `layer.merged = True`; merging a merged layer does nothing. `unmerge` subtracts it
# and sets `layer.merged = False`; unmerging an unmerged layer does nothing. Both change the weight in place (the
# same `Parameter`, still frozen, in its own dtype: a bfloat16 base stays bfloat16).
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
rs = trained_layer(d_out=20, r=8, use_rslora=True, seed=5)
b_rs = rs(x)
merge(rs)
assert torch.allclose(rs(x), b_rs, atol=1e-5), "merge changes the outputs of an rsLoRA layer (scaling alpha / sqrt(r))"
half = trained_layer(dtype=torch.bfloat16, seed=7)
param, xh = half.base_layer.weight, x.to(torch.bfloat16)
b_half = half(xh)
merge(half)
assert half.base_layer.weight is param and param.dtype == torch.bfloat16 and not param.requires_grad, (
    "a bfloat16 base stays the same frozen bfloat16 Parameter, changed in place")
assert (half(xh).float() - b_half.float()).abs().max() <= 4 * 2**-7 * b_half.float().abs().max(), (
    "merge changes a bfloat16 layer's outputs beyond rounding")
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
rs = trained_layer(d_out=20, r=8, use_rslora=True, seed=9)
rs0 = rs.base_layer.weight.clone()
merge(rs)
unmerge(rs)
assert torch.allclose(rs.base_layer.weight, rs0, atol=1e-6), "unmerge must give back an rsLoRA layer's base weight"
half = trained_layer(dtype=torch.bfloat16, seed=8)
h0 = half.base_layer.weight.clone()
merge(half)
unmerge(half)
slack = 2 * 2**-7 * (h0.float().abs() + half.delta_weight().abs()) + 1e-7
assert half.base_layer.weight.dtype == torch.bfloat16 and ((half.base_layer.weight.float() - h0.float()).abs() <= slack).all(), (
    "unmerge must give back a bfloat16 base weight (in bfloat16, up to its rounding)")
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
model, _ = tiny_model(seed=1)
inject_lora(model, LoraSettings(r=8, alpha=16, target_modules="all-linear", use_rslora=True))
with torch.no_grad():
    for _, l in lora_layers(model):
        l.lora_B.weight.normal_(0, 0.05)
    before = model(ids).logits
    for _, l in lora_layers(model):
        merge(l)
    assert torch.allclose(before, model(ids).logits, atol=1e-4), "merging an rsLoRA model's adapters must keep its logits"
### END HIDDEN TESTS
# %% markdown
# Merging into a bf16 base and unmerging again does not give back $W_0$ exactly. Why? (Graded by hand.)
# %% written id=bf16 points=1
# bf16 keeps 8 significant bits: W0 + ΔW is rounded when it is stored, and subtracting ΔW from the rounded sum
# rounds again, so small parts of W0 are lost. Keep an fp32 (or the original) copy of the base to unmerge exactly.
