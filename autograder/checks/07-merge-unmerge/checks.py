"""Exercise 7's hidden checks, run by the grader only: the inputs (from the grading seed) and the verdicts.

ΔW and the merged weights are computed here from the layers' weights. Besides the notebook's layer, the inputs
hold r != in != out (r = 1 and r larger than out), a rank-stabilised layer (rsLoRA: scaling alpha / sqrt(r),
so alpha / r computed again from the layer's fields is wrong), and a bfloat16 base with its float32 adapter
(the merged weight stays bfloat16, within bfloat16's rounding of W0 + ΔW); for the model, all linear layers with
rsLoRA besides the notebook's targets.
"""

import math

import torch

BF16_STEP = 2.0 ** -7  # bfloat16 keeps 8 significant bits: one step is at most 2^-7 of a value


def _layer_state(g, d_in, d_out, r, dtype=torch.float32) -> dict:
    bound = d_in ** -0.5
    return {
        "base_layer.weight": ((torch.rand(d_out, d_in, generator=g) * 2 - 1) * bound).to(dtype),
        "base_layer.bias": ((torch.rand(d_out, generator=g) * 2 - 1) * bound).to(dtype),
        "lora_A.weight": (torch.rand(r, d_in, generator=g) * 2 - 1) * bound,
        "lora_B.weight": torch.randn(d_out, r, generator=g) * 0.1,
    }


def make_inputs(g: torch.Generator) -> dict:
    def layer_case(d_in, d_out, r, alpha, use_rslora=False, dtype=torch.float32, rows=5):
        return {"state": _layer_state(g, d_in, d_out, r, dtype), "r": r, "alpha": alpha, "use_rslora": use_rslora,
                "x": torch.randn(rows, d_in, generator=g).to(dtype)}

    def layer_cases():
        return {
            "the notebook's layer (32 -> 48, r 4, alpha 16)": layer_case(32, 48, 4, 16),
            "r 1, alpha 2 (24 -> 40)": layer_case(24, 40, 1, 2, rows=1),
            "r 16 larger than out, alpha 4 (40 -> 12)": layer_case(40, 12, 16, 4),
            "an rsLoRA layer (scaling alpha / sqrt(r)), r 8, alpha 16 (32 -> 20)": layer_case(32, 20, 8, 16, use_rslora=True),
            "a bfloat16 base with its float32 adapter (32 -> 48, r 4, alpha 16)":
                layer_case(32, 48, 4, 16, dtype=torch.bfloat16),
        }

    def model_case(r, alpha, targets, use_rslora):
        from lora_course.lora import LoraSettings, inject_lora, lora_layers
        from lora_course.models import tiny_model

        model_seed = int(torch.randint(0, 1000, (1,), generator=g))
        model, _ = tiny_model(seed=model_seed)  # for the adapters' shapes only: the probe builds its own
        inject_lora(model, LoraSettings(r=r, alpha=alpha, target_modules=targets, use_rslora=use_rslora))
        return {"model_seed": model_seed, "r": r, "alpha": alpha, "targets": targets, "use_rslora": use_rslora,
                "lora_A": [(torch.rand(layer.lora_A.weight.shape, generator=g) * 2 - 1) * layer.in_features ** -0.5
                           for _, layer in lora_layers(model)],
                "lora_B": [torch.randn(layer.lora_B.weight.shape, generator=g) * 0.05 for _, layer in lora_layers(model)],
                "ids": torch.randint(0, 1000, (2, 7), generator=g)}

    return {
        "test_delta_weight": {"cases": layer_cases()},
        "test_merge_same_outputs": {"cases": layer_cases()},
        "test_unmerge_restores": {"cases": layer_cases()},
        "test_merge_model": {"cases": {
            "q_proj, v_proj, down_proj, r 4, alpha 8": model_case(4, 8, ["q_proj", "v_proj", "down_proj"], False),
            "all linear layers, rsLoRA, r 8, alpha 16": model_case(8, 16, "all-linear", True),
        }},
    }


def _ok(result, case: str) -> None:
    assert not (isinstance(result, dict) and "__error__" in result), f"{case}: {result.get('__error__')}"


def _scaling(spec) -> float:
    return spec["alpha"] / (math.sqrt(spec["r"]) if spec["use_rslora"] else spec["r"])


def _delta(spec) -> torch.Tensor:
    state = spec["state"]
    return _scaling(spec) * (state["lora_B.weight"] @ state["lora_A.weight"])


def _slack(spec) -> torch.Tensor:
    """How far a weight may be from the exact W0 + ΔW or W0, element by element: float32's rounding, or a few
    bfloat16 steps (the sum is rounded when it is stored, and ΔW may be rounded before it is added)."""
    w0 = spec["state"]["base_layer.weight"].float()
    size = w0.abs() + _delta(spec).abs()
    return size * (2 * BF16_STEP if spec["state"]["base_layer.weight"].dtype == torch.bfloat16 else 1e-6) + 1e-7


def test_delta_weight(inputs, got, want):
    for case, spec in inputs["cases"].items():
        mine = got[case]
        _ok(mine, case)
        expected = _delta(spec)
        assert isinstance(mine, torch.Tensor) and mine.shape == expected.shape, (
            f"{case}: ΔW must be shaped like the base weight (out, in) = {tuple(expected.shape)}")
        # float32, or rounded once to the base's dtype (bfloat16): either is a right ΔW
        rel = BF16_STEP if mine.dtype == torch.bfloat16 else 1e-5
        assert ((mine.float() - expected).abs() <= expected.abs() * rel + 1e-6).all(), (
            f"{case}: ΔW must be scaling * B A with the layer's scaling ({_scaling(spec):g} here)")


def _check_outputs(case, mine, spec, what):
    _ok(mine["before"], f"{case} (the layer before merging)")
    _ok(mine["after"], f"{case}, {what}")
    before, after = mine["before"].float(), mine["after"].float()
    bf16 = spec["state"]["base_layer.weight"].dtype == torch.bfloat16
    tol = 4 * BF16_STEP * before.abs().max().item() if bf16 else 1e-5
    assert after.shape == before.shape and (after - before).abs().max().item() <= tol, (
        f"{case}: {what}, the layer's outputs changed (largest change {(after - before).abs().max().item():.3g})")


def _check_weight(case, facts, expected, spec, what):
    w0 = spec["state"]["base_layer.weight"]
    w = facts["weight"]
    assert w.dtype == w0.dtype, f"{case}: {what}, the base weight must keep its dtype {w0.dtype}, not {w.dtype}"
    assert facts["same_parameter"], (
        f"{case}: {what}, the base weight must be changed in place (the same Parameter), not replaced")
    assert facts["frozen"], f"{case}: {what}, the base weight must stay frozen (requires_grad=False)"
    off = (w.float() - expected).abs() - _slack(spec)
    assert (off <= 0).all(), f"{case}: {what}, the base weight is not {'W0 + ΔW' if facts['merged'] else 'W0'}"


def test_merge_same_outputs(inputs, got, want):
    for case, spec in inputs["cases"].items():
        mine = got[case]
        _ok(mine, case)
        assert mine["merged"] is True, f"{case}: merge must set layer.merged = True"
        _check_weight(case, mine, spec["state"]["base_layer.weight"].float() + _delta(spec), spec, "after merge")
        _check_outputs(case, mine, spec, "after merge")
        twice = mine["twice"]
        assert twice["merged"] is True and torch.equal(twice["weight"], mine["weight"]), (
            f"{case}: merging a merged layer must do nothing (ΔW was added twice?)")


def test_unmerge_restores(inputs, got, want):
    for case, spec in inputs["cases"].items():
        mine = got[case]
        _ok(mine, case)
        w0 = spec["state"]["base_layer.weight"].float()
        assert mine["merged"] is False, f"{case}: unmerge must set layer.merged = False"
        _check_weight(case, mine, w0, spec, "after merge and unmerge")
        _check_outputs(case, mine, spec, "after merge and unmerge")
        assert mine["twice"]["merged"] is False and torch.equal(mine["twice"]["weight"], mine["weight"]), (
            f"{case}: unmerging an unmerged layer must do nothing")
        assert mine["again"]["merged"] is False, f"{case}: a second merge and unmerge must leave the layer unmerged"
        _check_weight(case, mine["again"], w0, spec, "after a second merge and unmerge")


def test_merge_model(inputs, got, want):
    for case in inputs["cases"]:
        mine, ref = got[case], want[case]
        _ok(mine, case)
        assert all(m is True for m in mine["merged"]), f"{case}: every merged layer must have merged = True"
        _ok(mine["after"], f"{case}, the merged model")
        assert torch.allclose(mine["before"], ref["before"], atol=1e-5), f"{case}: the model changed before merging"
        assert torch.allclose(mine["after"], ref["before"], atol=1e-4), (
            f"{case}: merging every adapter of the model must keep its logits")
