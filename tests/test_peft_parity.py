"""The from-scratch LoRA and PEFT agree: same counts, same logits, each loads the other's adapters."""

import json

import pytest
import torch

from lora_course import SMOLLM2
from lora_course.lora import ALL_LINEAR, LoRALinear, LoraSettings, get_peft_lora, inject_lora, load_adapter, save_adapter
from lora_course.lora.counting import parameter_report
from lora_course.models import count_parameters, load_config, meta_model, tiny_model

SETTINGS = [
    LoraSettings(r=4, alpha=8),
    LoraSettings(r=8, alpha=16, target_modules=ALL_LINEAR),
    LoraSettings(r=2, alpha=4, target_modules=["gate_proj", "up_proj"], layers_to_transform=[0, 2]),
    LoraSettings(r=16, alpha=16, use_rslora=True, target_modules=["v_proj"]),
]


def _inputs():
    return torch.randint(3, 49152, (2, 10), generator=torch.Generator().manual_seed(7))


def _randomize_lora(model, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"r{s.r}-{s.target_modules if isinstance(s.target_modules, str) else '+'.join(s.target_modules)}")
def test_trainable_counts_equal_pefts_on_tiny(settings):
    ours, _ = tiny_model()
    inject_lora(ours, settings)
    theirs = get_peft_lora(tiny_model()[0], settings)
    peft_trainable, peft_total = theirs.get_nb_trainable_parameters()
    assert count_parameters(ours) == {"total": peft_total, "trainable": peft_trainable}


@pytest.mark.parametrize(
    "model_name, targets, expected",
    [
        (SMOLLM2, "q_proj,k_proj,v_proj,o_proj", 1_843_200),
        (SMOLLM2, ALL_LINEAR, None),
        ("meta-llama/Llama-3.1-8B-Instruct", "q_proj,k_proj,v_proj,o_proj", 13_631_488),
        ("meta-llama/Llama-3.1-8B-Instruct", ALL_LINEAR, 41_943_040),
        ("Qwen/Qwen2.5-3B-Instruct", ALL_LINEAR, None),
    ],
)
def test_counts_from_configs_equal_pefts(model_name, targets, expected):
    settings = LoraSettings(r=16, alpha=32, target_modules=targets)
    report = parameter_report(model_name, "lora", settings)
    peft_model = get_peft_lora(meta_model(load_config(model_name)), settings)
    peft_trainable, peft_total = peft_model.get_nb_trainable_parameters()
    assert (report.trainable, report.total) == (peft_trainable, peft_total)
    if expected is not None:
        assert report.trainable == expected


def test_peft_route_matches_from_scratch_logits():
    settings = LoraSettings(r=4, alpha=8, target_modules=ALL_LINEAR)
    ours, _ = tiny_model()
    inject_lora(ours, settings)
    _randomize_lora(ours)
    theirs = get_peft_lora(tiny_model()[0], settings)
    # Give PEFT the very same A and B, then compare the two forward passes.
    peft_state = {k.replace(".default", ""): v for k, v in theirs.state_dict().items()}
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if "lora_" in name:
                key = next(k for k in peft_state if k.endswith(name))
                peft_state[key].copy_(p)
    x = _inputs()
    torch.testing.assert_close(theirs(x).logits, ours(x).logits, atol=1e-5, rtol=0)


def _max_logit_diff_ours_to_peft(make_model, tmp_path, settings):
    from peft import PeftModel

    ours, _ = make_model()
    inject_lora(ours, settings)
    _randomize_lora(ours)
    x = _inputs()
    expected = ours(x).logits
    save_adapter(ours, tmp_path / "ours", base_model_name_or_path="base")
    peft_model = PeftModel.from_pretrained(make_model()[0], str(tmp_path / "ours"))
    return (peft_model(x).logits - expected).abs().max().item()


def _max_logit_diff_peft_to_ours(make_model, tmp_path, settings):
    theirs = get_peft_lora(make_model()[0], settings)
    _randomize_lora(theirs)
    x = _inputs()
    expected = theirs(x).logits
    theirs.save_pretrained(tmp_path / "peft")
    assert json.loads((tmp_path / "peft" / "adapter_config.json").read_text())["peft_type"] == "LORA"
    ours = load_adapter(make_model()[0], tmp_path / "peft")
    return (ours(x).logits - expected).abs().max().item()


@pytest.mark.parametrize("settings", SETTINGS[:3], ids=["attention", "all-linear", "some-layers"])
def test_adapters_cross_load_with_identical_logits(tmp_path, settings):
    assert _max_logit_diff_ours_to_peft(tiny_model, tmp_path, settings) <= 1e-5
    assert _max_logit_diff_peft_to_ours(tiny_model, tmp_path, settings) <= 1e-5


@pytest.mark.slow
def test_smollm2_adapters_cross_load(smollm2, tmp_path):
    """On the real model: r=16 on q,k,v,o, saved by one side and loaded by the other."""
    import copy

    base, _ = smollm2
    make = lambda: (copy.deepcopy(base), None)  # noqa: E731 - a fresh copy of the loaded weights
    settings = LoraSettings(r=16, alpha=32)
    diffs = {
        "lora_course -> peft": _max_logit_diff_ours_to_peft(make, tmp_path, settings),
        "peft -> lora_course": _max_logit_diff_peft_to_ours(make, tmp_path, settings),
    }
    print("max abs logit difference:", diffs)
    assert max(diffs.values()) <= 1e-4
    assert sum(isinstance(m, LoRALinear) for m in load_adapter(copy.deepcopy(base), tmp_path / "peft").modules()) == 120
