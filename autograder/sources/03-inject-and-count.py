# %% markdown
# # Exercise 3: putting adapters into a model, and counting what trains
#
# A LoRA run wraps some of the model's linear layers (usually the attention projections, sometimes every linear
# layer) and freezes everything else. The number that tells you what the run costs is the count of **trainable**
# parameters: $r (d_{in} + d_{out})$ per wrapped layer.
#
# Use `lora_course.lora.LoRALinear(base_layer, r, alpha)` as the adapter layer (you wrote one in exercise 2).
# %% setup
# %% code id=imports
import warnings

import torch
from torch import nn

from lora_course.lora import LoRALinear
from lora_course.models import tiny_model

warnings.filterwarnings("ignore")
torch.manual_seed(0)
# %% markdown
# ## 3.1 Counting
#
# Write `count_parameters(model)` returning `(trainable, total)`: numbers of parameters (elements), each tensor
# counted once even when two modules share it.
# %% answer id=count_parameters
def count_parameters(model: nn.Module) -> tuple[int, int]:
    ### BEGIN SOLUTION
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
    ### END SOLUTION
# %% test id=test_count points=2
from lora_course.models import count_parameters as reference_count

model, _ = tiny_model(seed=0)
trainable, total = count_parameters(model)
assert trainable == total, "before injection every parameter trains"
### BEGIN HIDDEN TESTS
ref = reference_count(model)
assert (trainable, total) == (ref["trainable"], ref["total"]), f"expected {ref}, got {(trainable, total)}"
model.model.embed_tokens.weight.requires_grad_(False)
ref = reference_count(model)
assert count_parameters(model) == (ref["trainable"], ref["total"]), "a frozen tensor still counts in total, not in trainable"
untied, _ = tiny_model(seed=0, tie_word_embeddings=False)
ref = reference_count(untied)
assert count_parameters(untied) == (ref["trainable"], ref["total"]), "a model whose lm_head has its own weights: count both"
### END HIDDEN TESTS
# %% markdown
# ## 3.2 Injecting
#
# Write `inject(model, r, alpha, targets)`: replace every `nn.Linear` whose *own* name (the last part of its
# dotted name, e.g. `q_proj` in `model.layers.0.self_attn.q_proj`) is in `targets` by a `LoRALinear` around it,
# freeze every other parameter of the model, and return the sorted list of the full dotted names you wrapped.
# A target that is no linear layer's own name wraps nothing: not `proj` (only part of `q_proj`'s name), not
# `mlp` (a block, not an `nn.Linear`).
# %% answer id=inject
def inject(model: nn.Module, r: int, alpha: float, targets: list[str]) -> list[str]:
    ### BEGIN SOLUTION
    model.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, LoRALinear(module, r=r, alpha=alpha))
            wrapped.append(name)
    return sorted(wrapped)
    ### END SOLUTION
# %% test id=test_inject_attention points=3
model, _ = tiny_model(seed=0)
names = inject(model, r=4, alpha=8, targets=["q_proj", "v_proj"])
print(len(names), "layers wrapped, e.g.", names[:2])
assert len(names) == 6, f"the tiny model has 3 layers with q_proj and v_proj each: expected 6, got {len(names)}"
### BEGIN HIDDEN TESTS
from lora_course.lora import LoraSettings, inject_lora
from lora_course.models import count_parameters as reference_count

ref_model, _ = tiny_model(seed=0)
ref_names = inject_lora(ref_model, LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj"]))
assert names == sorted(ref_names), f"wrapped {names}, expected {sorted(ref_names)}"
assert all(isinstance(model.get_submodule(n), LoRALinear) for n in names), "the wrapped layers must be LoRALinear"
ref = reference_count(ref_model)
got = reference_count(model)
assert got == ref, f"after injection: expected {ref}, your model has {got} (is everything but the adapters frozen?)"
per_layer = sum(4 * (m.in_features + m.out_features) for _, m in ref_model.named_modules() if isinstance(m, LoRALinear))
assert got["trainable"] == per_layer, "trainable parameters must be r (d_in + d_out) per wrapped layer"
for odd_targets, expected in [(["proj", "v_proj"], "v_proj"), (["mlp", "k_proj"], "k_proj")]:
    odd_model, _ = tiny_model(seed=0)
    odd_names = inject(odd_model, r=2, alpha=4, targets=odd_targets)
    assert odd_names == [f"model.layers.{i}.self_attn.{expected}" for i in range(3)], (
        f"targets {odd_targets}: only layers whose own name is a target, and only nn.Linear ones; got {odd_names}")
### END HIDDEN TESTS
# %% test id=test_inject_all_linear points=3
model, _ = tiny_model(seed=0)
all_proj = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
names = inject(model, r=8, alpha=16, targets=all_proj)
assert len(names) == 21
### BEGIN HIDDEN TESTS
assert "lm_head" not in " ".join(names), "lm_head is not a projection of a decoder layer"
ref_model, _ = tiny_model(seed=0)
inject_lora(ref_model, LoraSettings(r=8, alpha=16, target_modules=all_proj))
assert count_parameters(model) == count_parameters(ref_model) == tuple(reference_count(ref_model)[k] for k in ("trainable", "total"))
x = torch.randint(0, 1000, (2, 6))
assert torch.allclose(model(x).logits, ref_model(x).logits, atol=1e-5), "with B at zero the adapted model must equal the base model"
### END HIDDEN TESTS
# %% markdown
# What fraction of the tiny model trains with `q_proj, v_proj` at r=4? Why is that fraction much smaller for an
# 8B model at the same rank? Answer below (graded by hand).
# %% written id=fraction points=1
# A few hundredths of a percent in the tiny model is dominated by the 49k-token embedding; the adapter grows with
# the hidden size (r (d_in + d_out)) while the layer's weights grow with its square (d_in d_out), so at a fixed rank
# the trainable fraction shrinks as the model gets wider.
