"""Exercise 8's probes: they run in the kernel (the student's, and the reference solution's own), call the
answers on the grader's inputs and return plain data. No expected value is here; checks.py compares."""

from lora_course.grading.probe import each
from lora_course.models import tiny_model


def test_perplexity(answers, inputs):
    model, _ = tiny_model(seed=inputs["model_seed"])
    model.eval()
    return each(inputs["cases"], lambda batches: answers.perplexity(model, batches))


def test_token_f1(answers, inputs):
    return {"normalize": each({text: text for text in inputs["texts"]}, answers.normalize),
            "f1": each(inputs["pairs"], lambda pair: answers.token_f1(pair[0], pair[1]))}


def test_macro_f1(answers, inputs):
    return each(inputs["cases"], lambda case: answers.macro_f1(list(case[0]), list(case[1])))
