"""How long are the examples? The answer sets ``sequence_length``: too short truncates answers,
far too long spends memory on padding (activation memory grows with the padded length)."""

from __future__ import annotations

import math

from lora_course.errors import DataError


def _length(example) -> int:
    if isinstance(example, int):
        return example
    ids = example.input_ids if hasattr(example, "input_ids") else example["input_ids"]
    return len(ids)


def _percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile: a length that at least q% of examples do not exceed."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def length_stats(examples) -> dict:
    lengths = sorted(_length(e) for e in examples)
    if not lengths:
        raise DataError("No examples: the data set is empty.")
    return {
        "n": len(lengths),
        "mean": sum(lengths) / len(lengths),
        "p50": _percentile(lengths, 50),
        "p95": _percentile(lengths, 95),
        "max": lengths[-1],
        "lengths": lengths,
    }


def check_sequence_length(stats: dict, sequence_length: int, truncate_warn_fraction: float = 0.05) -> list[str]:
    """Warnings about ``sequence_length`` against the length distribution (empty when it fits)."""
    warnings = []
    over = sum(1 for n in stats["lengths"] if n > sequence_length)
    if over / stats["n"] > truncate_warn_fraction:
        warnings.append(
            f"sequence_length={sequence_length} truncates {over} of {stats['n']} examples ({100 * over / stats['n']:.0f}%); "
            f"p95 is {stats['p95']} tokens and the longest {stats['max']}. Fix: raise sequence_length to about p95, "
            "or filter the long examples."
        )
    if sequence_length > 2 * stats["p95"]:
        warnings.append(
            f"sequence_length={sequence_length} is more than twice the p95 length ({stats['p95']} tokens): padded "
            f"batches waste memory and time. Fix: set sequence_length near {stats['p95']}, or pack examples."
        )
    return warnings
