"""Exercise 7's probes: they run in the kernel (the student's, and the reference solution's own), call the
answers on the grader's inputs and return plain data. No expected value is here; checks.py compares."""

import torch
from torch import nn

from lora_course.grading.probe import each
from lora_course.lora import LoRALinear, LoraSettings, inject_lora, lora_layers
from lora_course.models import tiny_model


def _layer(case) -> LoRALinear:
    """A trained LoRA layer built from the grader's weights (the package's class, not the notebook's names)."""
    state = case["state"]
    d_out, d_in = state["base_layer.weight"].shape
    base = nn.Linear(d_in, d_out, dtype=state["base_layer.weight"].dtype)
    layer = LoRALinear(base, r=case["r"], alpha=case["alpha"], use_rslora=case["use_rslora"])
    layer.load_state_dict(state)
    return layer


def _attempt(fn):
    try:
        with torch.no_grad():
            return fn()
    except Exception as e:  # noqa: BLE001 - the answer's error is the result
        return {"__error__": f"{type(e).__name__}: {str(e)[:300]}"}


def _weight_facts(layer, param) -> dict:
    w = layer.base_layer.weight
    # a copy: the next merge or unmerge changes the weight in place
    return {"weight": w.detach().clone(), "same_parameter": w is param, "frozen": not w.requires_grad, "merged": layer.merged}


def test_delta_weight(answers, inputs):
    return each(inputs["cases"], lambda case: answers.delta_weight(_layer(case)))


def test_merge_same_outputs(answers, inputs):
    def run(case):
        layer, x = _layer(case), case["x"]
        param = layer.base_layer.weight
        before = _attempt(lambda: layer(x))
        answers.merge(layer)
        out = {"before": before, **_weight_facts(layer, param)}
        out["after"] = _attempt(lambda: layer(x))
        answers.merge(layer)
        out["twice"] = _weight_facts(layer, param)
        return out

    return each(inputs["cases"], run)


def test_unmerge_restores(answers, inputs):
    def run(case):
        layer, x = _layer(case), case["x"]
        param = layer.base_layer.weight
        before = _attempt(lambda: layer(x))
        answers.merge(layer)
        answers.unmerge(layer)
        out = {"before": before, **_weight_facts(layer, param)}
        out["after"] = _attempt(lambda: layer(x))
        answers.unmerge(layer)
        out["twice"] = _weight_facts(layer, param)
        answers.merge(layer)
        answers.unmerge(layer)
        out["again"] = _weight_facts(layer, param)
        return out

    return each(inputs["cases"], run)


def test_merge_model(answers, inputs):
    def run(case):
        model, _ = tiny_model(seed=case["model_seed"])
        inject_lora(model, LoraSettings(r=case["r"], alpha=case["alpha"], target_modules=case["targets"],
                                        use_rslora=case["use_rslora"]))
        layers = [layer for _, layer in lora_layers(model)]
        with torch.no_grad():
            for layer, a, b in zip(layers, case["lora_A"], case["lora_B"]):  # both: A's init draws on the global RNG
                layer.lora_A.weight.copy_(a)
                layer.lora_B.weight.copy_(b)
            before = model(case["ids"]).logits
        for layer in layers:
            answers.merge(layer)
        return {"before": before, "after": _attempt(lambda: model(case["ids"]).logits),
                "merged": [layer.merged for layer in layers]}

    return each(inputs["cases"], run)
