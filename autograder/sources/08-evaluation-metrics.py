# %% markdown
# # Exercise 8: evaluation metrics
#
# The training loss says how well the model predicts the training tokens. To compare runs you need metrics on
# held-out data: **perplexity**, $\exp$ of the mean negative log-likelihood per target token, and task metrics such
# as **F1**: the token-overlap F1 of extractive question answering (SQuAD), and the macro-averaged F1 of a
# classification task.
# %% setup
# %% code id=imports
import math
import re
import string
import warnings
from collections import Counter

import torch
import torch.nn.functional as F

from lora_course.models import tiny_model

warnings.filterwarnings("ignore")
torch.manual_seed(0)


def eval_batches(seed: int = 0) -> list[dict]:
    """Held-out batches of different lengths; -100 marks the positions that are not targets."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for rows, length, masked in [(2, 10, 4), (1, 4, 0), (3, 7, 2)]:
        ids = torch.randint(3, 3000, (rows, length), generator=g)
        labels = ids.clone()
        labels[:, :masked] = -100
        out.append({"input_ids": ids, "labels": labels})
    return out
# %% markdown
# ## 8.1 Perplexity
#
# Write `perplexity(model, batches)`: exp of the mean token negative log-likelihood over **all** target tokens of
# all batches (with the usual shift: position t predicts token t+1). Not the mean of the batches' perplexities.
# A row, or a whole batch, may have no target at all (every label -100, as padding has): it adds nothing (a mean
# loss over no tokens is NaN). Work under `torch.no_grad()`; return a float.
# %% answer id=perplexity
def perplexity(model, batches: list[dict]) -> float:
    ### BEGIN SOLUTION
    nll, n = 0.0, 0
    with torch.no_grad():
        for b in batches:
            logits = model(input_ids=b["input_ids"]).logits
            labels = b["labels"][:, 1:]
            nll += F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels.reshape(-1),
                                   ignore_index=-100, reduction="sum").item()
            n += int((labels != -100).sum())
    return math.exp(nll / n)
    ### END SOLUTION
# %% test id=test_perplexity points=4
model, _ = tiny_model(seed=0)
model.eval()
ppl = perplexity(model, eval_batches())
print(f"perplexity of the tiny random model: {ppl:.1f} (the vocabulary has {model.config.vocab_size} tokens)")
assert isinstance(ppl, float) and ppl > 1
### BEGIN HIDDEN TESTS
def _reference_ppl(model, batches):
    total, n = 0.0, 0
    with torch.no_grad():
        for b in batches:
            logp = torch.log_softmax(model(input_ids=b["input_ids"]).logits[:, :-1].double(), -1)
            labels = b["labels"][:, 1:]
            mask = labels != -100
            picked = logp.gather(-1, labels.clamp_min(0)[..., None])[..., 0]
            total -= picked[mask].sum().item()
            n += int(mask.sum())
    return math.exp(total / n)

for seed in (0, 1):
    ref = _reference_ppl(model, eval_batches(seed))
    got = perplexity(model, eval_batches(seed))
    assert abs(got - ref) / ref < 1e-4, f"perplexity {got:.3f}, expected {ref:.3f} (token-weighted over all batches)"
padded = eval_batches(2)
padded[0]["labels"][:, 6:] = -100  # right padding
padded[2]["labels"][1] = -100  # a padding-only row
padded.append({"input_ids": padded[1]["input_ids"].clone(), "labels": torch.full((1, 4), -100)})  # no target at all
ref = _reference_ppl(model, padded)
got = perplexity(model, padded)
assert math.isfinite(got) and abs(got - ref) / ref < 1e-4, (
    f"perplexity {got:.3f}, expected {ref:.3f} with padding and a batch without targets (they add nothing)")
### END HIDDEN TESTS
# %% markdown
# ## 8.2 Token F1 (SQuAD)
#
# Write `normalize(text)` (lower case, remove punctuation, remove the articles a/an/the, collapse whitespace) and
# `token_f1(prediction, reference)`: the F1 of the two normalised token **multisets** (a token that appears twice
# in both counts twice). Only whole words are articles ("pizza" keeps its "a"); any whitespace (tabs, newlines)
# collapses to single spaces. Two answers that are empty once normalised (`""`, `"The"`) have F1 1.0; one empty
# answer gives 0.0.
# %% answer id=token_f1
def normalize(text: str) -> str:
    ### BEGIN SOLUTION
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())
    ### END SOLUTION


def token_f1(prediction: str, reference: str) -> float:
    ### BEGIN SOLUTION
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)
    ### END SOLUTION
# %% test id=test_token_f1 points=3
assert token_f1("Paris", "paris") == 1.0
print(token_f1("The capital is Paris", "Paris"))
### BEGIN HIDDEN TESTS
assert normalize("The  Eiffel-Tower, in Paris!") == "eiffeltower in paris", normalize("The  Eiffel-Tower, in Paris!")
assert abs(token_f1("the capital is Paris", "Paris") - 2 * (1 / 3) * 1 / (1 / 3 + 1)) < 1e-9
assert abs(token_f1("new new york", "new york") - 0.8) < 1e-9, "duplicates: count tokens as a multiset"
assert abs(token_f1("new york", "new new york") - 0.8) < 1e-9
assert token_f1("", "") == 1.0 and token_f1("a", "Paris") == 0.0 and token_f1("Lyon", "Paris") == 0.0
assert normalize("a pizza in Japan") == "pizza in japan", "only whole words are articles"
assert normalize("Soothe the banana") == "soothe banana", "only whole words are articles"
assert normalize("new\tYork\n") == "new york", "tabs and newlines collapse to single spaces"
assert token_f1("The", "an!") == 1.0, "two answers that normalise to nothing have F1 1.0"
### END HIDDEN TESTS
# %% markdown
# ## 8.3 Macro F1
#
# Write `macro_f1(y_true, y_pred)`: the unweighted mean over the classes that occur in `y_true` or `y_pred` of each
# class's F1 (a class with no true positives has F1 0, also one that is predicted but never true). Labels may be
# strings, ints or bools. Do not use scikit-learn; the test compares with it.
# %% answer id=macro_f1
def macro_f1(y_true: list, y_pred: list) -> float:
    ### BEGIN SOLUTION
    scores = []
    for c in sorted(set(y_true) | set(y_pred)):
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred))
        fp = sum(t != c and p == c for t, p in zip(y_true, y_pred))
        fn = sum(t == c and p != c for t, p in zip(y_true, y_pred))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)
    ### END SOLUTION
# %% test id=test_macro_f1 points=3
from sklearn.metrics import f1_score

y_true = ["pos", "neg", "neg", "neu", "pos", "neg"]
y_pred = ["pos", "neg", "pos", "neu", "neg", "neg"]
print(f"macro F1 {macro_f1(y_true, y_pred):.3f}")
assert 0 <= macro_f1(y_true, y_pred) <= 1
### BEGIN HIDDEN TESTS
import random

rng = random.Random(0)
cases = [(y_true, y_pred), ([0, 0, 0, 0, 1], [0, 0, 0, 0, 0]), ([1, 2, 3], [3, 2, 1])]
cases += [(["pos", "neg", "neg", "pos"], ["pos", "neu", "neg", "pos"]),  # "neu" is predicted, never true
          ([True, False, True], [True, True, False]), ([1], [1]), ([1], [0])]
for _ in range(5):
    t = [rng.choice("abcd") for _ in range(30)]
    cases.append((t, [x if rng.random() < 0.6 else rng.choice("abcd") for x in t]))
for t, p in cases:
    ref = f1_score(t, p, average="macro", zero_division=0)
    assert abs(macro_f1(t, p) - ref) < 1e-9, f"macro F1 {macro_f1(t, p):.4f}, scikit-learn says {ref:.4f} for {t} / {p}"
### END HIDDEN TESTS
# %% markdown
# On an imbalanced data set (90% of one class), why can accuracy look good while macro F1 is poor? (Graded by hand.)
# %% written id=imbalance points=1
# Predicting the majority class everywhere already gives 90% accuracy, but every minority class then has F1 0 and
# macro F1 averages classes equally, so it drops to about 0.47 for two classes: it shows that the rare classes are
# never found.
