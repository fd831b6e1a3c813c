"""Exercise 3's hidden checks, run by the grader only: the inputs (from the grading seed) and the verdicts.

Each case is a tiny model of a random seed, depth and width; the grader builds the same model and computes what a
correct answer must give: the parameter counts (each shared tensor once), the dotted names of the linear layers
whose own name is a target, r (d_in + d_out) trainable parameters per wrapped layer. Edge cases: a model whose
output layer does not share the embedding (an answer that subtracts lm_head by hand to undo double counting gets
its total wrong), a target that is only part of a layer's name ("proj": an answer matching by suffix wraps
every projection), a target that names a module that is not a linear layer ("mlp").
"""

import torch

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
ALL_PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _pick(g, options):
    return options[int(torch.randint(0, len(options), (1,), generator=g))]


def _model_spec(g, **config):
    return {"seed": int(torch.randint(0, 10_000, (1,), generator=g)),
            "config": {"num_hidden_layers": _pick(g, [1, 2, 3]), "hidden_size": _pick(g, [32, 48, 64]), **config}}


def make_inputs(g: torch.Generator) -> dict:
    attention = [t for t, keep in zip(ATTENTION, torch.rand(4, generator=g) < 0.5) if keep] or ["q_proj", "v_proj"]
    return {
        "test_count": {"cases": {
            "tiny model (tied embeddings)": {**_model_spec(g), "r": _pick(g, [2, 4, 8])},
            "tiny model whose lm_head does not share the embedding": {
                **_model_spec(g, tie_word_embeddings=False), "r": _pick(g, [2, 4, 8])},
        }},
        "test_inject_attention": {"cases": {
            f"targets {attention}": {**_model_spec(g), "r": _pick(g, [2, 4, 8]), "alpha": 8, "targets": attention},
            "targets ['proj', 'v_proj'] ('proj' is no layer's own name)": {
                **_model_spec(g), "r": 4, "alpha": 8, "targets": ["proj", "v_proj"]},
            "targets ['mlp', 'k_proj'] ('mlp' is not a linear layer)": {
                **_model_spec(g), "r": 2, "alpha": 4, "targets": ["mlp", "k_proj"]},
        }},
        "test_inject_all_linear": {"cases": {
            "every projection": {**_model_spec(g), "r": _pick(g, [4, 8, 16]), "alpha": 16, "targets": ALL_PROJ,
                                 "ids": torch.randint(0, 1000, (2, 6), generator=g)},
        }},
    }


def _ok(result, case: str) -> None:
    assert not (isinstance(result, dict) and "__error__" in result), f"{case}: {result.get('__error__')}"


_expected: dict = {}


def _expect(case) -> dict:
    """What a correct answer gives on this case's model, computed here (cached: the grader asks per student)."""
    key = repr((case["seed"], sorted(case["config"].items()), case.get("r"), case.get("targets")))
    if key not in _expected:
        from torch import nn

        from lora_course.models import count_parameters, tiny_model

        model, _ = tiny_model(seed=case["seed"], **case["config"])
        n = count_parameters(model)
        embed = model.model.embed_tokens.weight.numel()
        linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
        qv = sum(m.in_features + m.out_features for name, m in linears.items() if name.rsplit(".", 1)[-1] in ("q_proj", "v_proj"))
        out = {"fresh": (n["trainable"], n["total"]),
               "embeddings frozen": (n["trainable"] - embed, n["total"]),
               "with LoRA adapters": (case["r"] * qv, n["total"] + case["r"] * qv)}
        if "targets" in case:
            names = sorted(name for name in linears if name.rsplit(".", 1)[-1] in case["targets"])
            adapter = sum(case["r"] * (linears[name].in_features + linears[name].out_features) for name in names)
            out["names"] = names
            out["count"] = {"total": n["total"] + adapter, "trainable": adapter}
        _expected[key] = out
    return _expected[key]


def _as_counts(value):
    """(trainable, total) as ints; 0-d integer tensors (a sum of numel()s kept as a tensor) count as ints."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return None
    out = []
    for v in value:
        if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_floating_point():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool):
            return None
        out.append(v)
    return tuple(out)


def test_count(inputs, got, want):
    for case, spec in inputs["cases"].items():
        mine = got[case]
        _ok(mine, case)
        expected = _expect(spec)
        for phase in ("fresh", "embeddings frozen", "with LoRA adapters"):
            counts = _as_counts(mine[phase])
            assert counts is not None, f"{case}: count_parameters must return two ints (trainable, total), got {mine[phase]!r}"
            assert counts == expected[phase], (
                f"{case}, {phase}: expected (trainable, total) = {expected[phase]}, got {counts} (each tensor "
                "once even when two modules share it; a frozen tensor counts in total only)")


def _check_inject(case, spec, mine) -> None:
    expected = _expect(spec)
    names = mine["names"]
    assert isinstance(names, list) and names == expected["names"], (
        f"{case}: inject returned {names}, expected the sorted full names {expected['names']}")
    assert mine["lora_layers"] == expected["names"], (
        f"{case}: the layers wrapped in LoRALinear are {mine['lora_layers']}, expected {expected['names']}")
    assert mine["count"] == expected["count"], (
        f"{case}: after injection the model has {mine['count']} parameters, expected {expected['count']} (is "
        "everything but the adapters frozen? r (d_in + d_out) trainable per wrapped layer)")


def test_inject_attention(inputs, got, want):
    for case, spec in inputs["cases"].items():
        _ok(got[case], case)
        _check_inject(case, spec, got[case])


def test_inject_all_linear(inputs, got, want):
    for case, spec in inputs["cases"].items():
        mine = got[case]
        _ok(mine, case)
        assert "lm_head" not in " ".join(mine["names"]), f"{case}: lm_head is not a projection of a decoder layer"
        _check_inject(case, spec, mine)
        count = _expect(spec)["count"]
        assert _as_counts(mine["student_count"]) == (count["trainable"], count["total"]), (
            f"{case}: count_parameters on the adapted model gives {mine['student_count']}, expected "
            f"{(count['trainable'], count['total'])}")
        assert torch.allclose(mine["logits"], want[case]["logits"], atol=1e-5), (
            f"{case}: with B at zero the adapted model must equal the base model")
