"""Exercise 6's probes: they run in the kernel (the student's, and the reference solution's own), call the
answers on the grader's inputs and return plain data. No expected value is here; checks.py compares."""

from lora_course.grading.probe import each


def test_roundtrip(answers, inputs):
    def roundtrip(w):
        codes, absmax = answers.quantize_nf4(w)
        return {"codes": codes, "absmax": absmax, "w_hat": answers.dequantize_nf4(codes, absmax)}

    return each(inputs["weights"], roundtrip)


def test_matches_bitsandbytes(answers, inputs):
    def roundtrip(case):
        codes, absmax = answers.quantize_nf4(case["w"], case["blocksize"])
        return answers.dequantize_nf4(codes, absmax, case["blocksize"])

    return {"levels": answers.NF4_LEVELS, "dequantized": each(inputs["cases"], roundtrip)}


def test_double_quant(answers, inputs):
    def roundtrip(case):
        q, c, mean = answers.double_quantize(case["absmax"], case["blocksize"])
        return {"q": q, "c": c, "mean": mean, "back": answers.double_dequantize(q, c, mean, case["blocksize"])}

    return each(inputs["cases"], roundtrip)


def test_bits_per_weight(answers, inputs):
    return each(inputs["calls"], lambda kwargs: answers.bits_per_weight(**kwargs))
