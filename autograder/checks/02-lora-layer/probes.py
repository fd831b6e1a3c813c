"""Exercise 2's probes: they run in the kernel (the student's, and the reference solution's own), build the base
layers from the grader's tensors, call the answer's LoRALayer on them and return plain data (shapes, tensors,
which parameters train, gradients after a backward). No expected value is here; checks.py compares."""

from lora_course.grading.probe import each


def _layer(answers, case):
    import torch
    from torch import nn

    out_features, in_features = case["weight"].shape
    base = nn.Linear(in_features, out_features, bias=case["bias"] is not None)
    with torch.no_grad():
        base.weight.copy_(case["weight"])
        if case["bias"] is not None:
            base.bias.copy_(case["bias"])
    return answers.LoRALayer(base, r=case["r"], alpha=case["alpha"])


def test_shapes_and_init(answers, inputs):
    def init(case):
        layer = _layer(answers, case)
        return {"A": layer.A, "B": layer.B, "y": layer(case["x"])}

    return each(inputs["cases"], init)


def test_frozen_base(answers, inputs):
    def backward(case):
        layer = _layer(answers, case)
        trainable = sorted(n for n, p in layer.named_parameters() if p.requires_grad)
        layer(case["x"]).pow(2).sum().backward()
        return {"trainable": trainable,
                "grads": {n: p.grad for n, p in layer.named_parameters() if p.grad is not None}}

    return each(inputs["cases"], backward)


def test_forward_matches_reference(answers, inputs):
    import torch

    def forward(case):
        layer = _layer(answers, case)
        with torch.no_grad():  # pretend training moved A and B: the grader's values
            layer.A.copy_(case["A"])
            layer.B.copy_(case["B"])
        return {"scaling": layer.scaling, "y": layer(case["x"])}

    return each(inputs["cases"], forward)
