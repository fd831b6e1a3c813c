"""Exercise 1's hidden checks, run by the grader only: the inputs (from the grading seed) and the verdicts.

The estimates are compared with what PyTorch really allocates for the same model, measured here in the grader
(a tiny model of a random seed and width, full fine-tuning and LoRA with a random rank and targets), and the
direct calls with the formula. Edge cases: names that look like dtypes but are not among the five (an answer
that reads the bit width off the name accepts them), and weights and gradients in different dtypes (mixed
precision: bf16 weights with fp32 gradients; QLoRA: NF4 weights with fp32 gradients), which an answer that
keeps gradients in the weights' dtype gets wrong.
"""

import torch

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 1, "nf4": 0.5}
LOOKALIKES = ["float8_e9", "float8_e4m3", "int16", "uint8", "fp32", "nf2"]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
KEYS = ("weights", "gradients", "optimizer", "total")


def _pick(g, options):
    return options[int(torch.randint(0, len(options), (1,), generator=g))]


def _model_spec(g):
    return {"seed": int(torch.randint(0, 10_000, (1,), generator=g)),
            "config": {"num_hidden_layers": _pick(g, [1, 2, 3]), "hidden_size": _pick(g, [32, 48, 64])}}


def make_inputs(g: torch.Generator) -> dict:
    known = [list(BYTES)[i] for i in torch.randperm(len(BYTES), generator=g)]
    unknown = ["float64", "int4", _pick(g, LOOKALIKES)]
    targets = [t for t, keep in zip(TARGETS, torch.rand(len(TARGETS), generator=g) < 0.5) if keep] or ["q_proj"]
    n_total = int(torch.randint(10**8, 10**10, (1,), generator=g))
    n_lora = int(torch.randint(10**5, 10**8, (1,), generator=g))
    return {
        "test_bytes_per_parameter": {"known": known, "unknown": unknown},
        "test_full_finetuning": _model_spec(g),
        "test_lora_finetuning": {**_model_spec(g), "r": _pick(g, [1, 2, 4, 8, 16]), "alpha": _pick(g, [1, 8, 16, 32]),
                                 "targets": targets, "calls": {
            "full fine-tuning in bf16": (n_total, n_total, "bfloat16", "bfloat16"),
            "QLoRA (NF4 weights, default fp32 gradients)": (n_total, n_lora, "nf4"),
            "mixed precision (bf16 weights, fp32 gradients)": (n_total, n_lora, "bfloat16", "float32"),
            "int8 weights, fp16 gradients": (n_total, n_lora, "int8", "float16"),
        }},
    }


def _ok(result, case: str) -> None:
    assert not (isinstance(result, dict) and "__error__" in result), f"{case}: {result.get('__error__')}"


_measured: dict = {}


def _measured_bytes(spec, lora=None) -> dict:
    """The bytes PyTorch holds after one AdamW step on the described model (cached: the grader asks per student)."""
    key = repr((spec["seed"], sorted(spec["config"].items()), lora))
    if key not in _measured:
        from lora_course.lora import LoraSettings, inject_lora
        from lora_course.models import tiny_model

        with torch.random.fork_rng(devices=[]):
            model, _ = tiny_model(seed=spec["seed"], **spec["config"])
            if lora:
                inject_lora(model, LoraSettings(r=lora[0], alpha=lora[1], target_modules=list(lora[2])))
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=1e-3)
            ids = torch.randint(0, 1000, (1, 8))
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        grads = sum(p.grad.numel() * p.grad.element_size() for p in params)
        states = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                     if torch.is_tensor(t) and t.dim() > 0)
        _measured[key] = {"weights": weights, "gradients": grads, "optimizer": states,
                          "total": weights + grads + states}
    return _measured[key]


def _compare(est, real, what: str, source: str = "PyTorch holds") -> None:
    assert isinstance(est, dict) and set(est) == set(KEYS), (
        f"{what}: memory_breakdown must return a dict with exactly the keys {', '.join(KEYS)}")
    for key in KEYS:
        assert isinstance(est[key], (int, float)) and est[key] == real[key], (
            f"{what}, {key}: your estimate {est[key]} bytes, {source} {real[key]} bytes")


def test_bytes_per_parameter(inputs, got, want):
    for name in inputs["known"]:
        _ok(got[name], f"bytes_per_parameter({name!r})")
        value = got[name].get("value")
        assert isinstance(value, (int, float)) and value == BYTES[name] == want[name]["value"], (
            f"bytes_per_parameter({name!r}) returned {value}, expected {BYTES[name]}")
    for name in inputs["unknown"]:
        assert got[name] == {"value_error": True}, (
            f"bytes_per_parameter({name!r}) must raise ValueError: only the five listed names are known "
            f"(got {got[name].get('value', got[name].get('__error__'))})")


def describe(spec, lora=None) -> str:
    c = spec["config"]
    model = f"tiny model (seed {spec['seed']}, {c['num_hidden_layers']} layers, width {c['hidden_size']})"
    return model + (f" with LoRA r={lora[0]} on {', '.join(lora[2])}" if lora else "")


def test_full_finetuning(inputs, got, want):
    _compare(got["estimate"], _measured_bytes(inputs), f"full fine-tuning of a {describe(inputs)}")


def test_lora_finetuning(inputs, got, want):
    lora = (inputs["r"], inputs["alpha"], tuple(inputs["targets"]))
    est = got["estimate"]
    assert isinstance(est, dict) and est.get("gradients", 0) < est.get("weights", 0), (
        "with LoRA only the adapter has gradients")
    _compare(est, _measured_bytes(inputs, lora), f"LoRA fine-tuning of a {describe(inputs, lora)}")
    for case, args in inputs["calls"].items():
        mine = got["calls"][case]
        _ok(mine, case)
        n_total, n_trainable, weight_dtype = args[:3]
        grad_dtype = args[3] if len(args) > 3 else "float32"
        weights, grads = n_total * BYTES[weight_dtype], n_trainable * BYTES[grad_dtype]
        real = {"weights": weights, "gradients": grads, "optimizer": 8 * n_trainable,
                "total": weights + grads + 8 * n_trainable}
        call = f"memory_breakdown({', '.join(repr(a) for a in args)})"
        _compare(mine, real, f"{case}: {call}", "expected")
