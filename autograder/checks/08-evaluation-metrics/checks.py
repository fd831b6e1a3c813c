"""Exercise 8's hidden checks, run by the grader only: the inputs (from the grading seed) and the verdicts.

Every expected value is computed here: the perplexity from the tiny model's log-probabilities in float64, the
token F1 by SQuAD's own rules (written out below), the macro F1 by scikit-learn. Besides random batches, texts
and labels, the inputs hold the cases a correct answer must handle and a typical wrong one does not: a batch
with no target at all (every label -100: a mean loss over it is NaN), a padding-only row, right padding, a
single row of two tokens; words that end in "a", "an" or "the" (only whole words are articles), answers that
normalise to nothing, tabs and newlines; a class that is predicted but never true, int and bool labels, a single
example.
"""

import math
import re
import string
from collections import Counter

import torch

# random answers' words: none ends in "a", "an" or "the" (those are the edge texts' own, so that each edge
# case is the only input that holds it)
WORDS = ["paris", "eiffel", "tower", "river", "seine", "new", "york", "city", "capital", "france", "1889",
         "gustave", "iron", "lattice", "another", "theater", "atlas"]
EDGE_TEXTS = ["Japan's capital", "a pizza in Japan", "Soothe the banana", "another theater, an atlas",
              "new\tYork\n", "  Paris \n\t France ", "The", "an!", "...", "", "don't (stop)", "The  Eiffel-Tower, in Paris!"]
EDGE_PAIRS = {
    "two empty answers": ("", ""),
    "answers that normalise to nothing": ("The", "an!"),
    "punctuation only against an answer": ("...", "Paris"),
    "words ending in a / an / the": ("a pizza in Japan", "pizza japan"),
    "words ending in the, and another article": ("Soothe the banana", "soothe banana"),
    "tabs and newlines": ("new\tYork\n", "New York"),
    "duplicates on both sides": ("new new york", "new york york"),
}


def _batches(g, shapes, pad_end=False):
    out = []
    for rows, length, masked in shapes:
        ids = torch.randint(3, 3000, (rows, length), generator=g)
        labels = ids.clone()
        labels[:, :masked] = -100
        if pad_end:  # right padding: each row's tail is padding (no target), one row is all padding
            for row in range(rows):
                labels[row, int(torch.randint(1, length, (1,), generator=g)):] = -100
            labels[rows - 1] = -100
        out.append({"input_ids": ids, "labels": labels})
    return out


def make_inputs(g: torch.Generator) -> dict:
    def pick(n):
        return [WORDS[int(i)] for i in torch.randint(0, len(WORDS), (n,), generator=g)]

    def dress(words):  # capitals, punctuation, articles and extra spaces, as answers are written
        out = []
        for w in words:
            if float(torch.rand(1, generator=g)) < 0.3:
                out.append(["the", "a", "an", "The"][int(torch.randint(0, 4, (1,), generator=g))])
            out.append(w.capitalize() if float(torch.rand(1, generator=g)) < 0.4 else w)
            if float(torch.rand(1, generator=g)) < 0.2:
                out[-1] += [",", ".", "!", "'s"][int(torch.randint(0, 4, (1,), generator=g))]
        return ("  " if float(torch.rand(1, generator=g)) < 0.3 else " ").join(out)

    pairs = {f"random answers {i}": (dress(pick(int(torch.randint(1, 6, (1,), generator=g)))),
                                      dress(pick(int(torch.randint(1, 6, (1,), generator=g))))) for i in range(6)}
    classes = ["pos", "neg", "neu", "mixed"]

    def labels(n, k, kinds):  # every class occurs in y_true (the case with one that does not is separate)
        t = list(kinds[:k]) + [kinds[int(i)] for i in torch.randint(0, k, (n - k,), generator=g)]
        p = [x if float(torch.rand(1, generator=g)) < 0.6 else kinds[int(torch.randint(0, k, (1,), generator=g))] for x in t]
        return t, p

    only_predicted_t, only_predicted_p = labels(20, 3, classes)
    only_predicted_t = [c if c != "mixed" else "neg" for c in only_predicted_t]
    only_predicted_p[int(torch.randint(0, 20, (1,), generator=g))] = "mixed"
    return {
        "test_perplexity": {"model_seed": int(torch.randint(0, 1000, (1,), generator=g)), "cases": {
            "batches of different lengths": _batches(g, [(2, 10, 4), (1, 4, 0), (3, 7, 2)]),
            "a single row of two tokens (one target)": _batches(g, [(1, 2, 0)]),
            "right-padded rows and a padding-only row": _batches(g, [(4, 9, 0), (2, 6, 1)], pad_end=True),
            "a batch with no target at all (every label -100) among others":
                _batches(g, [(2, 8, 3), (2, 5, 5), (1, 6, 0)]),
        }},
        "test_token_f1": {"texts": EDGE_TEXTS + [dress(pick(4)) for _ in range(4)], "pairs": {**EDGE_PAIRS, **pairs}},
        "test_macro_f1": {"cases": {
            "string labels": labels(30, 4, classes),
            "int labels": labels(25, 3, [0, 1, 2]),
            "bool labels": labels(12, 2, [True, False]),
            "a class that is predicted but never true": (only_predicted_t, only_predicted_p),
            "a single example, right": (["pos"], ["pos"]),
            "a single example, wrong": ([1], [0]),
            "one class everywhere": (["neu"] * 5, ["neu"] * 5),
        }},
    }


def _ok(result, case: str) -> None:
    assert not (isinstance(result, dict) and "__error__" in result), f"{case}: {result.get('__error__')}"


def _grader_perplexity(model, batches) -> float:
    total, n = 0.0, 0
    with torch.no_grad():
        for b in batches:
            logp = torch.log_softmax(model(input_ids=b["input_ids"]).logits[:, :-1].double(), -1)
            labels = b["labels"][:, 1:]
            mask = labels != -100
            total -= logp.gather(-1, labels.clamp_min(0)[..., None])[..., 0][mask].sum().item()
            n += int(mask.sum())
    return math.exp(total / n)


def test_perplexity(inputs, got, want):
    from lora_course.models import tiny_model

    model, _ = tiny_model(seed=inputs["model_seed"])
    model.eval()
    for case, batches in inputs["cases"].items():
        mine = got[case]
        _ok(mine, case)
        assert isinstance(mine, float), f"{case}: perplexity must return a float, not {type(mine).__name__}"
        expected = _grader_perplexity(model, batches)
        assert math.isfinite(mine), f"{case}: the perplexity is {mine} (a batch without targets must add nothing)"
        assert abs(mine - expected) / expected < 1e-4, (
            f"{case}: perplexity {mine:.4f}, expected {expected:.4f} (token-weighted over all targets of all batches)")


def _squad_normalize(text: str) -> str:
    """SQuAD v1.1's normalize_answer: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _squad_f1(prediction: str, reference: str) -> float:
    pred, ref = _squad_normalize(prediction).split(), _squad_normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def test_token_f1(inputs, got, want):
    for text in inputs["texts"]:
        mine = got["normalize"][text]
        _ok(mine, f"normalize({text!r})")
        assert mine == _squad_normalize(text), f"normalize({text!r}) gave {mine!r}, expected {_squad_normalize(text)!r}"
    for case, (prediction, reference) in inputs["pairs"].items():
        mine = got["f1"][case]
        _ok(mine, f"token_f1({prediction!r}, {reference!r})")
        expected = _squad_f1(prediction, reference)
        assert isinstance(mine, (int, float)) and abs(mine - expected) < 1e-9, (
            f"{case}: token_f1({prediction!r}, {reference!r}) gave {mine}, expected {expected:.4f}")


def test_macro_f1(inputs, got, want):
    from sklearn.metrics import f1_score

    for case, (y_true, y_pred) in inputs["cases"].items():
        mine = got[case]
        _ok(mine, case)
        expected = float(f1_score(list(y_true), list(y_pred), average="macro", zero_division=0))
        assert isinstance(mine, (int, float)) and abs(mine - expected) < 1e-9, (
            f"{case}: macro F1 {mine}, scikit-learn says {expected:.4f} for {list(y_true)} / {list(y_pred)}")
