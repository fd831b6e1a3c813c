"""Classification metrics written out, so the chapter can show what each number counts.
A test checks every one against scikit-learn on the same predictions."""

from __future__ import annotations


def confusion_matrix(y_true, y_pred, labels) -> list[list[int]]:
    """Rows: the true class; columns: the predicted class (scikit-learn's convention). A prediction
    outside ``labels`` (a reply that is neither "positive" nor "negative") counts in no column:
    it is simply not a correct answer for its row."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for t, p in zip(y_true, y_pred, strict=True):
        if t in index and p in index:
            matrix[index[t]][index[p]] += 1
    return matrix


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0  # scikit-learn's zero_division=0


def classification_report(y_true, y_pred, labels) -> dict:
    """Accuracy; precision, recall and F1 per class; their macro averages; the confusion matrix."""
    y_true, y_pred = list(y_true), list(y_pred)
    if not y_true:
        raise ValueError("No predictions to score.")
    matrix = confusion_matrix(y_true, y_pred, labels)
    per_class = {}
    for i, label in enumerate(labels):
        true_positive = matrix[i][i]
        predicted = sum(1 for p in y_pred if p == label)
        actual = sum(1 for t in y_true if t == label)
        precision, recall = _ratio(true_positive, predicted), _ratio(true_positive, actual)
        per_class[label] = {"precision": precision, "recall": recall, "support": actual,
                            "f1": _ratio(2 * precision * recall, precision + recall) if precision + recall else 0.0}
    macro = {k: sum(c[k] for c in per_class.values()) / len(labels) for k in ("precision", "recall", "f1")}
    return {
        "accuracy": sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true),
        "per_class": per_class,
        "macro": macro,
        "confusion_matrix": matrix,
        "labels": list(labels),
        "unparsed": sum(1 for p in y_pred if p not in labels),
    }
