"""Evaluation: metrics agree with scikit-learn, perplexity is token-weighted, the significance
tests give the known answers, generation is batch-invariant."""

import math

import pytest
import torch
from scipy.stats import binomtest
from sklearn import metrics as sk

from lora_course.data import Collator, format_chat, load_bundled
from lora_course.evaluate import (
    classification_report, compare_predictions, evaluate_task, generate, mcnemar, paired_bootstrap, perplexity,
    side_by_side,
)
from lora_course.evaluate.tasks import _label_of
from lora_course.train.loss import summed_token_loss, target_tokens

LABELS = ("negative", "positive")


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_agree_with_sklearn(seed):
    rng = torch.Generator().manual_seed(seed)
    y_true = [LABELS[i] for i in torch.randint(0, 2, (97,), generator=rng).tolist()]
    # some replies are not a label at all (the model said something else): wrong, and in no column
    choices = LABELS + ("unsure",)
    y_pred = [choices[i] for i in torch.randint(0, 3, (97,), generator=rng).tolist()]
    ours = classification_report(y_true, y_pred, LABELS)
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    p, r, f, s = sk.precision_recall_fscore_support(y_true, y_pred, labels=list(LABELS), zero_division=0)
    for i, label in enumerate(LABELS):
        assert ours["per_class"][label]["precision"] == pytest.approx(p[i])
        assert ours["per_class"][label]["recall"] == pytest.approx(r[i])
        assert ours["per_class"][label]["f1"] == pytest.approx(f[i])
        assert ours["per_class"][label]["support"] == s[i]
    assert ours["macro"]["f1"] == pytest.approx(sk.f1_score(y_true, y_pred, labels=list(LABELS), average="macro",
                                                            zero_division=0))
    assert ours["confusion_matrix"] == sk.confusion_matrix(y_true, y_pred, labels=list(LABELS)).tolist()
    assert ours["unparsed"] == y_pred.count("unsure")


def test_a_class_never_predicted_has_zero_precision_not_an_error():
    report = classification_report(["positive", "negative"], ["positive", "positive"], LABELS)
    assert report["per_class"]["negative"]["precision"] == 0.0
    assert report["per_class"]["positive"]["precision"] == 0.5


def test_perplexity_is_weighted_by_target_tokens(tiny):
    model, tokenizer = tiny
    records = load_bundled("instructions", "test", limit=6)
    examples = [format_chat(tokenizer, r["messages"]) for r in records]
    collator = Collator(tokenizer.pad_token_id)
    result = perplexity(model, examples, collator, batch_size=4)  # batches of 4 and 2: unequal
    # reference: every example alone, summed losses over summed tokens
    total = tokens = 0
    with torch.no_grad():
        for example in examples:
            batch = collator([example])
            total += summed_token_loss(model, batch).item()
            tokens += target_tokens(batch["labels"])
    assert result.tokens == tokens
    assert result.loss == pytest.approx(total / tokens, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(total / tokens), rel=1e-5)
    # a random model over 49,152 tokens is about as perplexed as uniform guessing
    assert 0.3 * 49152 < result.perplexity < 3 * 49152


def test_mcnemar_matches_the_exact_binomial_test():
    a = [1] * 30 + [0] * 10 + [1] * 3 + [0] * 57
    b = [1] * 30 + [1] * 10 + [0] * 3 + [0] * 57  # 10 wins for B, 3 for A
    assert mcnemar(a, b) == pytest.approx(binomtest(3, 13, 0.5).pvalue)
    assert mcnemar(a, a) == 1.0


def test_paired_comparison_separates_signal_from_noise():
    base = [0] * 100
    clear = [1] * 40 + [0] * 60
    c = compare_predictions(base, clear, "base", "adapter")
    assert (len(c.wins), len(c.losses), c.ties) == (40, 0, 60)
    assert c.significant and c.bootstrap["ci95"][0] > 0
    noisy = [1, 0] * 50
    shifted = [0, 1] * 50  # same accuracy, every answer different
    c = compare_predictions(noisy, shifted)
    assert not c.significant
    assert c.bootstrap["ci95"][0] < 0 < c.bootstrap["ci95"][1]
    assert paired_bootstrap(noisy, shifted, seed=1) == paired_bootstrap(noisy, shifted, seed=1)


def test_generation_is_the_same_alone_and_in_a_padded_batch(tiny):
    model, tokenizer = tiny
    prompts = ["Hi", "Reverse the word 'orange', please, and then say it twice."]
    together = generate(model, tokenizer, prompts, max_new_tokens=6, batch_size=2)
    alone = [generate(model, tokenizer, [p], max_new_tokens=6)[0] for p in prompts]
    assert together == alone
    assert tokenizer.padding_side == "right"  # restored for training


def test_sentiment_labels_are_parsed_from_replies():
    assert _label_of("Positive.") == "positive"
    assert _label_of("I think it is negative") == "negative"
    assert _label_of("Great movie") is None


def test_task_runs_and_side_by_side_shows_every_model(tiny):
    model, tokenizer = tiny
    result = evaluate_task(model, tokenizer, "sentiment", limit=4)
    assert result.metrics["examples"] == 4 and len(result.correct) == 4
    table = side_by_side([r["prompt"] for r in result.records], {"base": [r["reply"] for r in result.records],
                                                                  "other": ["x|y"] * 4})
    assert table.count("\n") == 5 and "x\\|y" in table
    with pytest.raises(ValueError, match="available"):
        evaluate_task(model, tokenizer, "nope")


def test_evaluation_plots_show_the_numbers():
    import matplotlib

    matplotlib.use("Agg")
    from lora_course.viz.evaluation import plot_confusion, plot_metrics

    ax = plot_metrics({"base": {"exact_match": 0.01}, "adapter": {"exact_match": 0.38}})
    assert sorted(p.get_height() for p in ax.patches) == [0.01, 0.38]
    report = classification_report(["positive", "negative", "negative"], ["positive", "positive", "negative"], LABELS)
    ax = plot_confusion(report)
    assert [t.get_text() for t in ax.texts] == ["1", "1", "0", "1"]
