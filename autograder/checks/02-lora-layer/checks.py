"""Exercise 2's hidden checks, run by the grader only: the inputs (from the grading seed) and the verdicts.

The base layers are random, never square (r != in != out, wider and narrower outputs), the inputs 2-d and 3-d.
The verdicts compute what a LoRA layer must give here from the formula (h = W0 x + b + alpha/r B A x); after a
backward, only A and B may hold gradients and B's must not be zero. Edge cases: a base layer without a bias
(an answer that adds ``base.bias`` by hand fails on it), a rank larger than the input width, alpha smaller than r.
"""

import torch
import torch.nn.functional as F


def make_inputs(g: torch.Generator) -> dict:
    def base(in_f, out_f, bias=True):
        bound = in_f ** -0.5
        return {"weight": (torch.rand(out_f, in_f, generator=g) * 2 - 1) * bound,
                "bias": (torch.rand(out_f, generator=g) * 2 - 1) * bound if bias else None}

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    def moved(case):  # A and B as training could have left them
        return {**case, "A": randn(case["r"], case["weight"].shape[1]) * 0.3, "B": randn(case["weight"].shape[0], case["r"])}

    return {
        "test_shapes_and_init": {"cases": {
            "Linear(32, 48), r=4, alpha=8, input (5, 32)": {**base(32, 48), "r": 4, "alpha": 8, "x": randn(5, 32)},
            "Linear(40, 12), r=3, alpha=6, input (2, 7, 40)": {**base(40, 12), "r": 3, "alpha": 6, "x": randn(2, 7, 40)},
        }},
        "test_frozen_base": {"cases": {
            "Linear(16, 16), r=2, alpha=4": {**base(16, 16), "r": 2, "alpha": 4, "x": randn(3, 16)},
            "Linear(20, 36), r=5, alpha=10": {**base(20, 36), "r": 5, "alpha": 10, "x": randn(4, 20)},
        }},
        "test_forward_matches_reference": {"cases": {
            "Linear(24, 40), r=8, alpha=16, input (7, 24)": moved({**base(24, 40), "r": 8, "alpha": 16, "x": randn(7, 24)}),
            "Linear(12, 20), r=1, alpha=1, 3-d input": moved({**base(12, 20), "r": 1, "alpha": 1, "x": randn(2, 3, 12)}),
            "Linear(12, 20), r=4, alpha=32, 3-d input": moved({**base(12, 20), "r": 4, "alpha": 32, "x": randn(2, 3, 12)}),
            "Linear(12, 20), r=16 (more than the input width), alpha=8, 3-d input":
                moved({**base(12, 20), "r": 16, "alpha": 8, "x": randn(2, 3, 12)}),
            "Linear(30, 18) without bias, r=6, alpha=3": moved({**base(30, 18, bias=False), "r": 6, "alpha": 3, "x": randn(5, 30)}),
        }},
    }


def _ok(result, case: str) -> None:
    assert not (isinstance(result, dict) and "__error__" in result), f"{case}: {result.get('__error__')}"


def _tensor(value, case: str, what: str) -> torch.Tensor:
    assert isinstance(value, torch.Tensor), f"{case}: {what} must be a tensor (an nn.Parameter)"
    return value


def _base(case, x):
    return F.linear(x, case["weight"], case["bias"])


def test_shapes_and_init(inputs, got, want):
    for case, spec in inputs["cases"].items():
        mine = got[case]
        _ok(mine, case)
        out_f, in_f = spec["weight"].shape
        A, B = _tensor(mine["A"], case, "A"), _tensor(mine["B"], case, "B")
        assert tuple(A.shape) == (spec["r"], in_f), f"{case}: A should be (r, in_features) = {(spec['r'], in_f)}, got {tuple(A.shape)}"
        assert tuple(B.shape) == (out_f, spec["r"]), f"{case}: B should be (out_features, r) = {(out_f, spec['r'])}, got {tuple(B.shape)}"
        y = _tensor(mine["y"], case, "the output")
        assert tuple(y.shape) == tuple(spec["x"].shape[:-1]) + (out_f,), f"{case}: the output has the wrong shape {tuple(y.shape)}"
        assert torch.all(B == 0), f"{case}: B must start at zero, so that the adapted layer equals the base layer at step 0"
        assert A.abs().sum() > 0, f"{case}: A must start random (not zero), or B never receives a gradient"
        assert torch.allclose(y, _base(spec, spec["x"]), atol=1e-6), f"{case}: at initialisation the LoRA layer must return exactly base(x)"


def test_frozen_base(inputs, got, want):
    for case, spec in inputs["cases"].items():
        mine = got[case]
        _ok(mine, case)
        trainable = mine["trainable"]
        assert {"A", "B"} <= set(trainable), f"{case}: A and B must be trainable, trainable parameters are {trainable}"
        assert set(trainable) == {"A", "B"}, f"{case}: only A and B may be trainable (the base layer is frozen); trainable: {trainable}"
        grads = mine["grads"]
        assert set(grads) == {"A", "B"}, f"{case}: after a backward only A and B may have gradients, got {sorted(grads)}"
        out_f, r = spec["weight"].shape[0], spec["r"]
        assert isinstance(grads["B"], torch.Tensor) and tuple(grads["B"].shape) == (out_f, r), (
            f"{case}: B's gradient must have B's shape {(out_f, r)}")
        assert torch.isfinite(grads["B"]).all() and grads["B"].abs().sum() > 0, (
            f"{case}: B gets no gradient at step 0: is A initialised to zero?")


def test_forward_matches_reference(inputs, got, want):
    for case, spec in inputs["cases"].items():
        mine = got[case]
        _ok(mine, case)
        scaling = spec["alpha"] / spec["r"]
        got_scaling = mine["scaling"]
        if isinstance(got_scaling, torch.Tensor) and got_scaling.numel() == 1:
            got_scaling = float(got_scaling)
        assert isinstance(got_scaling, (int, float)) and abs(got_scaling - scaling) < 1e-6 * max(1.0, scaling), (
            f"{case}: scaling must be alpha / r = {scaling:g}, got {mine['scaling']}")
        x = spec["x"]
        expected = _base(spec, x) + scaling * (x @ spec["A"].T @ spec["B"].T)
        y = _tensor(mine["y"], case, "the output")
        assert y.shape == expected.shape and torch.allclose(y, expected, rtol=1e-5, atol=1e-5), (
            f"{case}: forward differs from the reference LoRA layer (check the alpha/r scaling and the order of A and B)")
