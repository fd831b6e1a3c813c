"""Exercise 1's probes: they run in the kernel (the student's, and the reference solution's own), call the
answers on the grader's inputs and return plain data. No expected value is here; checks.py compares."""

from lora_course.grading.probe import each


def _bytes_or_value_error(answers, name):
    try:
        return {"value": answers.bytes_per_parameter(name)}
    except ValueError:
        return {"value_error": True}


def _model(inputs):
    from lora_course.models import tiny_model

    model, _ = tiny_model(seed=inputs["seed"], **inputs["config"])
    return model


def test_bytes_per_parameter(answers, inputs):
    return each({name: name for name in inputs["known"] + inputs["unknown"]},
                lambda name: _bytes_or_value_error(answers, name))


def test_full_finetuning(answers, inputs):
    from lora_course.models import count_parameters

    n = count_parameters(_model(inputs))
    return {"estimate": answers.memory_breakdown(n["total"], n["trainable"], "float32")}


def test_lora_finetuning(answers, inputs):
    from lora_course.lora import LoraSettings, inject_lora
    from lora_course.models import count_parameters

    model = _model(inputs)
    inject_lora(model, LoraSettings(r=inputs["r"], alpha=inputs["alpha"], target_modules=inputs["targets"]))
    n = count_parameters(model)
    return {"estimate": answers.memory_breakdown(n["total"], n["trainable"], "float32"),
            "calls": each(inputs["calls"], lambda args: answers.memory_breakdown(*args))}
