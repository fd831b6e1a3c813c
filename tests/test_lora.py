"""LoRA from scratch: the invariants PEFT's own tests check, on the tiny model."""

import math

import pytest
import torch
from torch import nn

from lora_course.lora import (
    ALL_LINEAR,
    AdapterFormatError,
    LoRALinear,
    LoraSettings,
    adapter_disabled,
    find_targets,
    inject_lora,
    load_adapter,
    merge_and_unload,
    merge_lora,
    save_adapter,
    set_adapter_enabled,
    unmerge_lora,
)
from lora_course.models import count_parameters, tiny_model


def _inputs(n=2, length=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 49152, (n, length), generator=g)


def _randomize_b(model, seed=2):
    """B starts at zero; give it values so that merge/unmerge have something to do."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.weight.copy_(torch.randn(m.lora_B.weight.shape, generator=g) * 0.05)


def test_layer_init_and_scaling():
    base = nn.Linear(32, 48)
    layer = LoRALinear(base, r=4, alpha=8)
    assert layer.scaling == 2.0
    assert torch.count_nonzero(layer.lora_B.weight) == 0
    assert layer.lora_A.weight.abs().max() > 0
    bound = 1 / math.sqrt(32)  # kaiming_uniform(a=sqrt(5)) on fan_in 32
    assert layer.lora_A.weight.abs().max() <= bound + 1e-6
    assert LoRALinear(nn.Linear(32, 48), r=4, alpha=8, use_rslora=True).scaling == pytest.approx(8 / 2)
    assert not base.weight.requires_grad


def test_layer_forward_is_base_plus_scaled_ba():
    torch.manual_seed(0)
    base = nn.Linear(16, 8)
    layer = LoRALinear(base, r=2, alpha=6)
    nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(5, 16)
    expected = base(x) + 3.0 * (x @ layer.lora_A.weight.T @ layer.lora_B.weight.T)
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_zero_b_is_a_no_op(tiny):
    model, _ = tiny
    x = _inputs()
    before = model(x).logits
    inject_lora(model, LoraSettings(r=8, alpha=16, target_modules=ALL_LINEAR))
    torch.testing.assert_close(model(x).logits, before, atol=0, rtol=0)


def test_merged_equals_unmerged_and_unmerge_restores(tiny):
    model, _ = tiny
    x = _inputs()
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    inject_lora(model, LoraSettings(r=4, alpha=8, target_modules=ALL_LINEAR))
    _randomize_b(model)
    unmerged = model(x).logits
    merge_lora(model)
    torch.testing.assert_close(model(x).logits, unmerged, atol=1e-5, rtol=0)
    unmerge_lora(model)
    for name, p in model.named_parameters():
        if ".base_layer." in name:
            torch.testing.assert_close(p, original[name.replace(".base_layer", "")], atol=1e-6, rtol=0)


def test_adapter_changes_output_and_disable_restores_base(tiny):
    model, _ = tiny
    x = _inputs()
    base = model(x).logits
    inject_lora(model, LoraSettings(r=4, alpha=8))
    _randomize_b(model)
    adapted = model(x).logits
    assert (adapted - base).abs().max() > 1e-4
    with adapter_disabled(model):
        torch.testing.assert_close(model(x).logits, base, atol=0, rtol=0)
    torch.testing.assert_close(model(x).logits, adapted, atol=0, rtol=0)


def test_only_adapter_weights_move_and_base_grads_are_never_computed(tiny):
    model, _ = tiny
    inject_lora(model, LoraSettings(r=4, alpha=8, dropout=0.1))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        x = _inputs()
        loss = model(x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    for name, p in model.named_parameters():
        moved = not torch.equal(p, before[name])
        if "lora_" in name:
            assert moved, f"{name} did not train"
        else:
            assert not moved, f"frozen {name} changed"
            assert p.grad is None, f"a gradient was computed for frozen {name}"


def test_counts_and_layer_selection(tiny):
    model, _ = tiny
    total_before = count_parameters(model)["total"]
    settings = LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj"], layers_to_transform=[1])
    names = inject_lora(model, settings)
    assert names == ["model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]
    hidden, kv = 64, 2 * 16
    expected = 4 * (hidden + hidden) + 4 * (hidden + kv)
    counts = count_parameters(model)
    assert counts["trainable"] == expected
    assert counts["total"] == total_before + expected


def test_all_linear_excludes_the_output_head(tiny):
    model, _ = tiny
    targets = find_targets(model, LoraSettings(target_modules=ALL_LINEAR))
    assert len(targets) == 3 * 7
    assert not any("lm_head" in t for t in targets)


def test_unknown_target_is_a_clear_error(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match=r"\['c_attn'\] not found.*q_proj"):
        inject_lora(model, LoraSettings(target_modules=["c_attn"]))


@pytest.mark.parametrize("bad", [dict(r=0), dict(r=-2), dict(alpha=0), dict(dropout=1.0), dict(bias="some")])
def test_settings_reject_bad_values(bad):
    with pytest.raises(ValueError):
        LoraSettings(**bad)


def test_merge_and_unload_gives_a_plain_model(tiny):
    model, _ = tiny
    x = _inputs()
    inject_lora(model, LoraSettings(r=4, alpha=8))
    _randomize_b(model)
    adapted = model(x).logits
    plain = merge_and_unload(model)
    assert not any(isinstance(m, LoRALinear) for m in plain.modules())
    assert all(type(m) is nn.Linear for n, m in plain.named_modules() if n.endswith("q_proj"))
    torch.testing.assert_close(plain(x).logits, adapted, atol=1e-5, rtol=0)


def test_save_load_round_trip(tiny, tmp_path):
    model, _ = tiny
    x = _inputs()
    inject_lora(model, LoraSettings(r=4, alpha=8, target_modules=["q_proj", "down_proj"]))
    _randomize_b(model)
    expected = model(x).logits
    save_adapter(model, tmp_path, base_model_name_or_path="lora-course/tiny-random-llama")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    fresh, _ = tiny_model(seed=0)
    load_adapter(fresh, tmp_path)
    torch.testing.assert_close(fresh(x).logits, expected, atol=0, rtol=0)


def test_truncated_adapter_is_one_clear_error(tiny, tmp_path):
    model, _ = tiny
    inject_lora(model, LoraSettings(r=4, alpha=8))
    save_adapter(model, tmp_path)
    weights = tmp_path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    fresh, _ = tiny_model(seed=0)
    with pytest.raises(AdapterFormatError, match="truncated or corrupt"):
        load_adapter(fresh, tmp_path)


def test_adapter_for_another_architecture_is_refused(tiny, tmp_path):
    model, _ = tiny
    inject_lora(model, LoraSettings(r=4, alpha=8))
    save_adapter(model, tmp_path)
    wider, _ = tiny_model(seed=0, hidden_size=128)
    with pytest.raises(AdapterFormatError, match="does not fit this model"):
        load_adapter(wider, tmp_path)


def test_merge_into_a_quantized_base_is_refused_clearly():
    pytest.importorskip("bitsandbytes")
    from lora_course.models import TINY, load_model

    model, _ = load_model(TINY, quantization="nf4", device="cpu")
    inject_lora(model, LoraSettings(r=4, alpha=8))
    with pytest.raises(ValueError, match="quantized"):
        merge_lora(model)


@pytest.mark.parametrize("poison", [float("inf"), float("nan"), 1e38])  # 1e38 is finite; B A overflows it
def test_a_merge_that_would_write_non_finite_weights_is_refused_and_leaves_the_base_alone(tiny, poison):
    from lora_course.errors import MergeError

    model, _ = tiny
    inject_lora(model, LoraSettings(r=4, alpha=8))
    _randomize_b(model)
    layer = next(m for m in model.modules() if isinstance(m, LoRALinear))
    with torch.no_grad():
        layer.lora_B.weight[0].fill_(poison)
        layer.lora_A.weight.fill_(1.0)
    before = layer.base_layer.weight.detach().clone()
    with pytest.raises(MergeError, match="non-finite"):
        merge_lora(model)
    assert not layer.merged
    assert torch.equal(layer.base_layer.weight, before)


class _BiasedBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(8, 8, bias=True)
        self.v_proj = nn.Linear(8, 8, bias=True)

    def forward(self, x):
        return self.v_proj(torch.relu(self.q_proj(x)))


@pytest.mark.parametrize("bias, warns", [("none", False), ("all", True), ("lora_only", True)])
def test_disabling_an_adapter_whose_training_moved_biases_warns(bias, warns, recwarn):
    model = _BiasedBlock()
    inject_lora(model, LoraSettings(r=2, alpha=4, target_modules=["q_proj", "v_proj"], bias=bias))
    model.eval()
    set_adapter_enabled(model, False)
    messages = [str(w.message) for w in recwarn if "bias" in str(w.message)]
    assert bool(messages) == warns, messages
