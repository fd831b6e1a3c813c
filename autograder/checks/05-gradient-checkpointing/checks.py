"""Exercise 5's hidden checks, run by the grader only: the inputs (from the grading seed) and the verdicts.

The forward pass is checked against the grader's own run of the blocks (outputs and every gradient), on block
sizes other than the notebook's (a 2-d input, a single block) and on an input that does not require grad, as the
embeddings of a frozen model feed the first block in LoRA: reentrant checkpointing then cuts the graph and the
blocks' weights get no gradient. ``saved_bytes`` is checked against what autograd saves (a formula per op) on
random shapes, float64 and bfloat16 operands (bytes per element are not always 4) and a slice of a larger tensor
(the saved view's bytes, not its storage's). The memory bound is checked with the probe's own count, on the same
kinds of inputs.
"""

import torch
import torch.nn.functional as F


def _block_states(g: torch.Generator, n: int, d: int, hidden: int) -> list[dict]:
    def linear(fan_in, fan_out):
        bound = fan_in ** -0.5
        return ((torch.rand(fan_out, fan_in, generator=g) * 2 - 1) * bound,
                (torch.rand(fan_out, generator=g) * 2 - 1) * bound)

    states = []
    for _ in range(n):
        up_w, up_b = linear(d, hidden)
        down_w, down_b = linear(hidden, d)
        states.append({"up.weight": up_w, "up.bias": up_b, "down.weight": down_w, "down.bias": down_b})
    return states


def make_inputs(g: torch.Generator) -> dict:
    def blocks_case(n, d, hidden, shape, requires_grad=True):
        return {"blocks": _block_states(g, n, d, hidden), "x": torch.randn(*shape, d, generator=g),
                "x_requires_grad": requires_grad}

    def randint(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    rows, cols, inner, k = randint(3, 12), randint(13, 24), randint(5, 30), randint(2, 6)
    return {
        "test_forward_same_result": {"cases": {
            "6 blocks (d 64, hidden 256), an input (4, 32, 64)": blocks_case(6, 64, 256, (4, 32)),
            "3 blocks (d 48, hidden 112), a 2-d input (5, 48)": blocks_case(3, 48, 112, (5,)),
            "a single block (d 32, hidden 80)": blocks_case(1, 32, 80, (2, 3)),
            "an input that does not require grad (as a frozen model's embeddings), 4 blocks":
                blocks_case(4, 32, 80, (2, 7), requires_grad=False),
        }},
        "test_saved_bytes": {"cases": {
            f"a * a, a float32 ({rows}, {cols})": {"op": "square", "tensors": {"a": torch.randn(rows, cols, generator=g)}},
            f"a @ w, float32 ({rows}, {inner}) @ ({inner}, {cols})": {"op": "matmul", "tensors": {
                "a": torch.randn(rows, inner, generator=g), "w": torch.randn(inner, cols, generator=g)}},
            "a.detach() + 1 (no autograd)": {"op": "detached", "tensors": {"a": torch.randn(rows, cols, generator=g)}},
            f"a @ w, float64 ({rows}, {inner}) @ ({inner}, {cols})": {"op": "matmul", "tensors": {
                "a": torch.randn(rows, inner, generator=g, dtype=torch.float64),
                "w": torch.randn(inner, cols, generator=g, dtype=torch.float64)}},
            f"a * a, a bfloat16 ({rows}, {cols})": {"op": "square", "tensors": {
                "a": torch.randn(rows, cols, generator=g).to(torch.bfloat16)}},
            f"a[:, :{k}] * b, a slice of a float32 ({rows}, {cols})": {"op": "slice_times", "tensors": {
                "a": torch.randn(rows, cols, generator=g), "b": torch.randn(rows, k, generator=g)}},
        }},
        "test_checkpointing_saves_memory": {"cases": {
            "6 blocks (d 64, hidden 256), an input (8, 128, 64)": blocks_case(6, 64, 256, (8, 128)),
            "a single block (d 64, hidden 256), an input (4, 64, 64)": blocks_case(1, 64, 256, (4, 64)),
            "3 blocks (d 48, hidden 112), a 2-d input (300, 48)": blocks_case(3, 48, 112, (300,)),
            "an input that does not require grad (as a frozen model's embeddings), 4 blocks, (8, 64, 64)":
                blocks_case(4, 64, 256, (8, 64), requires_grad=False),
        }},
    }


def _ok(result, case: str) -> None:
    assert not (isinstance(result, dict) and "__error__" in result), f"{case}: {result.get('__error__')}"


def _grader_run(spec) -> tuple[torch.Tensor, dict]:
    """The blocks applied in order, and the gradients of the output's sum, computed here."""
    params, names = [], []
    for i, state in enumerate(spec["blocks"]):
        for key in ("up.weight", "up.bias", "down.weight", "down.bias"):
            params.append(state[key].clone().requires_grad_(True))
            names.append(f"{i}.{key}")
    x = spec["x"].clone().requires_grad_(spec["x_requires_grad"])
    y = x
    for i in range(len(spec["blocks"])):
        up_w, up_b, down_w, down_b = params[4 * i: 4 * i + 4]
        y = y + F.linear(F.gelu(F.linear(y, up_w, up_b)), down_w, down_b)
    leaves = params + ([x] if spec["x_requires_grad"] else [])
    grads = dict(zip(names + ["input"], torch.autograd.grad(y.sum(), leaves)))
    grads.setdefault("input", None)
    return y.detach(), grads


def test_forward_same_result(inputs, got, want):
    for case, spec in inputs["cases"].items():
        _ok(got[case], case)
        y_ref, grads_ref = _grader_run(spec)
        for mode in ("plain", "checkpointed"):
            mine = got[case][mode]
            where = f"{case}, checkpointed={mode == 'checkpointed'}"
            y = mine["y"]
            assert isinstance(y, torch.Tensor) and y.shape == y_ref.shape, (
                f"{where}: forward must return the last block's output, shaped like the input {tuple(y_ref.shape)}")
            assert torch.allclose(y, y_ref, atol=1e-5), f"{where}: the output differs from applying every block in order"
            assert mine["grads"] is not None, (
                f"{where}: the output does not require grad, so the blocks' weights cannot be trained")
            for name, g_ref in grads_ref.items():
                g = mine["grads"].get(name)
                what = "the input" if name == "input" else f"parameter {name}"
                if g_ref is None:
                    assert g is None, f"{where}: {what} got a gradient it should not have"
                    continue
                assert g is not None, f"{where}: {what} got no gradient"
                assert torch.allclose(g, g_ref, atol=1e-5), f"{where}: the gradient of {what} differs from the plain pass's"


def _saved_by(spec) -> int:
    """What autograd saves for each op of the probe (the operands the backward needs), in bytes."""
    t = spec["tensors"]
    nbytes = lambda x: x.numel() * x.element_size()  # noqa: E731
    if spec["op"] == "square":
        return 2 * nbytes(t["a"])  # both operands of a * a, the same tensor twice
    if spec["op"] == "matmul":
        return nbytes(t["a"]) + nbytes(t["w"])
    if spec["op"] == "detached":
        return 0
    if spec["op"] == "slice_times":
        return 2 * nbytes(t["b"])  # the slice (a view, as large as b) and b
    raise ValueError(spec["op"])


def test_saved_bytes(inputs, got, want):
    for case, spec in inputs["cases"].items():
        _ok(got[case], case)
        expected = _saved_by(spec)
        assert want[case] == expected, f"the reference counts {want[case]} bytes for {case}, not {expected}"
        mine = got[case]
        assert isinstance(mine, (int, float)) and not isinstance(mine, bool), f"{case}: saved_bytes must return a number of bytes"
        assert mine == expected, f"{case}: autograd saved {expected} bytes, you counted {mine}"


def test_checkpointing_saves_memory(inputs, got, want):
    for case, spec in inputs["cases"].items():
        _ok(got[case], case)
        plain, ckpt = got[case]["plain"], got[case]["checkpointed"]
        x = spec["x"]
        block_inputs = len(spec["blocks"]) * x.numel() * x.element_size()
        params = sum(v.numel() * v.element_size() for state in spec["blocks"] for v in state.values())
        assert ckpt < plain / 4, (
            f"{case}: checkpointing should keep far less ({ckpt} vs {plain} bytes saved): is every block checkpointed?")
        assert ckpt <= block_inputs + params, (
            f"{case}: a checkpointed run keeps at most each block's input (plus parameters), not {ckpt} bytes")
