"""Evaluation results drawn for the book: metrics side by side, and a confusion matrix."""

from __future__ import annotations


def plot_metrics(runs: dict, metrics=("exact_match", "parsed_match", "accuracy"), ax=None):
    """Grouped bars: one group per metric, one bar per run (``{name: metrics dict}``)."""
    import matplotlib.pyplot as plt

    shown = [m for m in metrics if any(m in r for r in runs.values())]
    if ax is None:
        _, ax = plt.subplots(figsize=(1.5 + 1.2 * len(shown) * len(runs) / 2, 3.5))
    width = 0.8 / max(len(runs), 1)
    for i, (name, values) in enumerate(runs.items()):
        xs = [j + i * width for j in range(len(shown))]
        bars = ax.bar(xs, [values.get(m, 0) for m in shown], width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks([j + width * (len(runs) - 1) / 2 for j in range(len(shown))], [m.replace("_", " ") for m in shown])
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax


def plot_confusion(report: dict, ax=None, title: str = ""):
    """The confusion matrix of ``classification_report``: rows true, columns predicted."""
    import matplotlib.pyplot as plt

    matrix, labels = report["confusion_matrix"], report["labels"]
    if ax is None:
        _, ax = plt.subplots(figsize=(3.4, 3))
    ax.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    ax.figure.tight_layout()
    return ax
