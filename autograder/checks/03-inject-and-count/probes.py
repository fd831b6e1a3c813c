"""Exercise 3's probes: they run in the kernel (the student's, and the reference solution's own), build the tiny
models the grader describes, call the answers on them and return plain data (counts, wrapped names, which layers
are LoRALinear, logits). No expected value is here; checks.py compares."""

from lora_course.grading.probe import each


def _model(case):
    from lora_course.models import tiny_model

    model, _ = tiny_model(seed=case["seed"], **case["config"])
    return model


def test_count(answers, inputs):
    from lora_course.lora import LoraSettings, inject_lora

    def counts(case):
        model = _model(case)
        out = {"fresh": answers.count_parameters(model)}
        model.model.embed_tokens.weight.requires_grad_(False)
        out["embeddings frozen"] = answers.count_parameters(model)
        inject_lora(model, LoraSettings(r=case["r"], alpha=2 * case["r"], target_modules=["q_proj", "v_proj"]))
        out["with LoRA adapters"] = answers.count_parameters(model)
        return out

    return each(inputs["cases"], counts)


def _inject(answers, case):
    from lora_course.lora import LoRALinear
    from lora_course.models import count_parameters

    model = _model(case)
    names = answers.inject(model, r=case["r"], alpha=case["alpha"], targets=list(case["targets"]))
    lora = sorted(n for n, m in model.named_modules() if isinstance(m, LoRALinear))
    return model, {"names": names, "lora_layers": lora, "count": count_parameters(model)}


def test_inject_attention(answers, inputs):
    return each(inputs["cases"], lambda case: _inject(answers, case)[1])


def test_inject_all_linear(answers, inputs):
    import torch

    def run(case):
        model, out = _inject(answers, case)
        out["student_count"] = answers.count_parameters(model)
        with torch.no_grad():
            out["logits"] = model(case["ids"]).logits
        return out

    return each(inputs["cases"], run)
