"""Exercise 4's probes: they run in the kernel (the student's, and the reference solution's own), build the tiny
model the grader describes, run the answers on the grader's micro-batches and return plain data (counts, the
window's loss, every parameter's gradient). No expected value is here; checks.py compares."""

from lora_course.grading.probe import each


def _model(case):
    from lora_course.models import tiny_model

    model, _ = tiny_model(seed=case["seed"], **case["config"])
    return model


def test_count_targets(answers, inputs):
    return each(inputs["labels"], answers.count_targets)


def test_accumulate_loss(answers, inputs):
    def run(case):
        model = _model(case)
        loss = answers.accumulate(model, case["micro_batches"])
        return {"loss": loss, "without_grad": [n for n, p in model.named_parameters() if p.grad is None]}

    return each(inputs["windows"], run)


def test_accumulate_gradient(answers, inputs):
    def run(case):
        model = _model(case)
        answers.accumulate(model, case["micro_batches"])
        return {n: p.grad for n, p in model.named_parameters()}

    return each(inputs["windows"], run)
