# %% markdown
# # Exercise 1: where the memory of fine-tuning goes
#
# Training needs memory for four things: the **weights**, the **gradients** (one per *trainable* parameter),
# the **optimizer states** (AdamW keeps two fp32 moments per trainable parameter: 8 bytes each), and the
# **activations** saved for the backward pass. Full fine-tuning pays for gradients and optimizer states on every
# parameter; LoRA pays for them only on the adapter, which is why it fits where full fine-tuning does not.
#
# You will write the estimate and check it against an exact count of the tensors PyTorch really allocates.
# %% setup
# %% code id=imports
import warnings

import torch

from lora_course.models import count_parameters, tiny_model

warnings.filterwarnings("ignore")
torch.manual_seed(0)
# %% markdown
# ## 1.1 Bytes per parameter
#
# Write `bytes_per_parameter(dtype)` for the names `"float32"`, `"bfloat16"`, `"float16"`, `"int8"` and `"nf4"`
# (4-bit NormalFloat: half a byte, not counting its block scales). Raise `ValueError` for any other name.
# %% answer id=bytes_per_parameter
def bytes_per_parameter(dtype: str) -> float:
    ### BEGIN SOLUTION
    sizes = {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 1, "nf4": 0.5}
    if dtype not in sizes:
        raise ValueError(f"unknown dtype {dtype!r}")
    return sizes[dtype]
    ### END SOLUTION
# %% test id=test_bytes_per_parameter points=2
assert bytes_per_parameter("float32") == 4
### BEGIN HIDDEN TESTS
assert bytes_per_parameter("bfloat16") == 2, "bfloat16 is 16 bits: 2 bytes"
assert bytes_per_parameter("float16") == 2
assert bytes_per_parameter("int8") == 1
assert bytes_per_parameter("nf4") == 0.5, "NF4 stores 4 bits per weight: half a byte"
try:
    bytes_per_parameter("float8_e9")
except ValueError:
    pass
else:
    raise AssertionError("an unknown dtype must raise ValueError")
for lookalike in ("float64", "int4"):
    try:
        bytes_per_parameter(lookalike)
    except ValueError:
        pass
    else:
        raise AssertionError(f"{lookalike!r} is not one of the five names: it must raise ValueError")
### END HIDDEN TESTS
# %% markdown
# ## 1.2 The breakdown
#
# Write `memory_breakdown(n_total, n_trainable, weight_dtype, grad_dtype="float32")` for training with AdamW.
# It returns a dict of bytes with the keys `"weights"` (all parameters in `weight_dtype`), `"gradients"` (the
# trainable ones, in `grad_dtype`), `"optimizer"` (two fp32 states per trainable parameter) and `"total"`
# (their sum). Activations are left out here: they depend on the batch, not on the model.
# %% answer id=memory_breakdown
def memory_breakdown(n_total: int, n_trainable: int, weight_dtype: str, grad_dtype: str = "float32") -> dict:
    ### BEGIN SOLUTION
    weights = n_total * bytes_per_parameter(weight_dtype)
    gradients = n_trainable * bytes_per_parameter(grad_dtype)
    optimizer = n_trainable * 2 * 4
    return {"weights": weights, "gradients": gradients, "optimizer": optimizer,
            "total": weights + gradients + optimizer}
    ### END SOLUTION
# %% code id=measure
def measured_training_bytes(model: torch.nn.Module) -> dict:
    """The bytes PyTorch really holds after one AdamW step: parameters, .grad tensors, optimizer state tensors."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    ids = torch.randint(0, 1000, (1, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in params)
    states = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                 if torch.is_tensor(t) and t.dim() > 0)  # the step counter is a 0-d tensor, not a per-parameter state
    return {"weights": weights, "gradients": grads, "optimizer": states, "total": weights + grads + states}
# %% test id=test_full_finetuning points=3
model, _ = tiny_model(seed=0)
n = count_parameters(model)
est = memory_breakdown(n["total"], n["trainable"], "float32")
assert set(est) == {"weights", "gradients", "optimizer", "total"}
print({k: f"{v / 2**20:.2f} MiB" for k, v in est.items()})
### BEGIN HIDDEN TESTS
real = measured_training_bytes(model)
for key in ("weights", "gradients", "optimizer", "total"):
    assert est[key] == real[key], f"{key}: your estimate {est[key]} bytes, PyTorch holds {real[key]} bytes"
### END HIDDEN TESTS
# %% test id=test_lora_finetuning points=3
from lora_course.lora import LoraSettings, inject_lora

model, _ = tiny_model(seed=0)
inject_lora(model, LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj"]))
n = count_parameters(model)
est = memory_breakdown(n["total"], n["trainable"], "float32")
assert est["gradients"] < est["weights"], "with LoRA only the adapter has gradients"
### BEGIN HIDDEN TESTS
real = measured_training_bytes(model)
for key in ("weights", "gradients", "optimizer", "total"):
    assert est[key] == real[key], f"LoRA, {key}: your estimate {est[key]} bytes, PyTorch holds {real[key]} bytes"
big = memory_breakdown(8_030_261_248, 8_030_261_248, "bfloat16", "bfloat16")
assert big["weights"] == 2 * 8_030_261_248 and big["gradients"] == 2 * 8_030_261_248, "gradients follow grad_dtype"
assert big["optimizer"] == 8 * 8_030_261_248, "AdamW keeps two fp32 states: 8 bytes per trainable parameter"
q = memory_breakdown(8_030_261_248, 20_971_520, "nf4")
assert q["weights"] == 4_015_130_624 and q["optimizer"] == 8 * 20_971_520
assert q["gradients"] == 4 * 20_971_520, "QLoRA: NF4 weights, but the adapter's gradients are fp32 (the default)"
mixed = memory_breakdown(1_000_003, 1_001, "bfloat16", "float32")
assert mixed == {"weights": 2_000_006, "gradients": 4_004, "optimizer": 8_008, "total": 2_012_018}, (
    "bf16 weights with fp32 gradients: each part in its own dtype")
### END HIDDEN TESTS
# %% markdown
# ## 1.3 Reading the numbers
#
# Full fine-tuning of Llama-3.1-8B in bf16 with AdamW: use your function to see why it does not fit on one 80 GB
# GPU, and why QLoRA (NF4 weights, a LoRA adapter of about 21M parameters) fits on a 24 GB card.
# %% code id=llama_numbers
full = memory_breakdown(8_030_261_248, 8_030_261_248, "bfloat16", "bfloat16")
qlora = memory_breakdown(8_030_261_248, 20_971_520, "nf4")
for name, m in [("full fine-tuning", full), ("QLoRA", qlora)]:
    print(f"{name:18s}", {k: f"{v / 1e9:.1f} GB" for k, v in m.items()})
# %% markdown
# Which of the four parts does LoRA leave unchanged, and what does QLoRA do about it? Answer below (graded by hand).
# %% written id=what_lora_saves points=1
# LoRA leaves the frozen weights' memory unchanged (all parameters still have to be stored); it removes almost all
# gradient and optimizer memory because only the adapter is trainable. QLoRA attacks the remaining part by storing
# the frozen weights in 4-bit NF4, cutting weight memory about 4x compared with bf16.
