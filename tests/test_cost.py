"""The cost model: FLOPs counted from shapes against torch's own FLOP counter, and the arithmetic
from FLOPs to GPU-hours and money."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lora_course.errors import SettingsError
from lora_course.lora import LoraSettings, inject_lora
from lora_course.memory import (
    ASSUMED_GPUS,
    GPU,
    flops_per_token,
    step_flops,
    tokens_for_budget,
    training_cost,
    training_tokens,
)
from lora_course.models import tiny_model


@pytest.mark.parametrize("method", ["full", "lora"])
def test_step_flops_match_torchs_flop_counter_on_a_real_step(method):
    model, _ = tiny_model(seed=0)
    if method == "lora":
        inject_lora(model, LoraSettings(r=8, alpha=16, target_modules="all-linear"))
    ids = torch.randint(0, 100, (2, 16))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    counted = step_flops(model, positions=32, mean_length=16)["total"]
    assert counter.get_total_flops() == pytest.approx(counted, rel=0.01)


def test_lora_costs_about_two_thirds_of_full_fine_tuning_per_token():
    name = "meta-llama/Llama-3.1-8B-Instruct"  # a shipped config: shapes on the meta device, no weights
    full = flops_per_token(name, "full", sequence_length=512)
    lora = flops_per_token(name, "lora", LoraSettings(r=16, alpha=32, target_modules="all-linear"), 512)
    qlora = flops_per_token(name, "qlora", LoraSettings(r=16, alpha=32, target_modules="all-linear"), 512)
    assert 40e9 < full["total"] < 50e9  # about 6 x 8B
    assert full["weight_gradients"] > 0.3 * full["total"]
    assert 2 / 3 < lora["total"] / full["total"] < 0.70  # 4N + the adapters' own 6 per weight
    assert qlora["total"] == lora["total"]  # the same matmuls, on dequantized weights
    with pytest.raises(SettingsError):
        flops_per_token(name, "partial")


def test_cost_arithmetic():
    gpu = GPU("card", peak_flops=100e12, usd_per_hour=2.0, price_source="test")
    tokens = training_tokens(1000, 500, epochs=3)
    assert tokens == 1.5e6
    one = training_cost(6e9, tokens, gpu, gpus=1, mfu=0.5)
    # 6e9 x 1.5e6 = 9e15 FLOPs at 50e12 FLOP/s = 180 s = 0.05 h -> $0.10
    assert one.flops == pytest.approx(9e15) and one.gpu_hours == pytest.approx(0.05) and one.usd == pytest.approx(0.10)
    eight = training_cost(6e9, tokens, gpu, gpus=8, mfu=0.5)
    assert eight.gpu_hours == one.gpu_hours and eight.wall_hours == pytest.approx(one.wall_hours / 8)
    assert training_cost(6e9, 2 * tokens, gpu, mfu=0.25).usd == pytest.approx(4 * one.usd)
    assert tokens_for_budget(one.usd, 6e9, gpu, mfu=0.5) == pytest.approx(tokens)
    assert tokens_for_budget(10, 6e9, GPU("free", 1e12, 0.0, "test")) == float("inf")
    assert one.as_row()["GPU"] == "1 x card"


def test_bad_inputs_are_refused():
    gpu = ASSUMED_GPUS["T4"]
    for kwargs in (dict(mfu=0), dict(mfu=1.5), dict(gpus=0)):
        with pytest.raises(SettingsError):
            training_cost(1e9, 1e6, gpu, **kwargs)
    with pytest.raises(SettingsError):
        GPU("x", peak_flops=0, usd_per_hour=1, price_source="test")
    with pytest.raises(SettingsError):
        training_tokens(-1, 10)
    assert all(g.price_source.startswith("assumption") for g in ASSUMED_GPUS.values())
