"""A regression gate: is the new adapter at least as good as the one it replaces, on the same eval set?

Comparing a new adapter only with the base model hides a step backwards: v2 can beat the base and
still lose to v1. The gate compares v2 with v1 example by example (the paired counts of
``compare_predictions``) and gives one of four verdicts:

    better                 v2's accuracy is higher, and McNemar's test says more than noise
    no regression          v2's accuracy is not lower than v1's by more than ``tolerance``
    regression             it is lower by more than ``tolerance``, and McNemar's test says more than noise
    possible regression    lower by more than ``tolerance``, but within noise for this many examples

A CI job fails on ``regression``; with ``strict=True`` also on ``possible regression`` (the eval set
is too small to clear v2, so a larger one is needed before shipping it).
"""

from __future__ import annotations

from dataclasses import dataclass

from lora_course.errors import SettingsError
from lora_course.evaluate.significance import Comparison, compare_predictions

VERDICTS = ("better", "no regression", "possible regression", "regression")


@dataclass
class RegressionGate:
    comparison: Comparison  # a: the previous adapter, b: the new one
    tolerance: float  # the accuracy drop (absolute, 0.02 = two points) that is accepted
    alpha: float
    verdict: str
    strict: bool = False

    @property
    def drop(self) -> float:
        """How much accuracy the new adapter lost (negative: it gained)."""
        return self.comparison.accuracy_a - self.comparison.accuracy_b

    @property
    def passed(self) -> bool:
        return self.verdict != "regression" and not (self.strict and self.verdict == "possible regression")

    def summary(self) -> str:
        c = self.comparison
        return (f"{c.b} vs {c.a}: {'PASS' if self.passed else 'FAIL'} ({self.verdict}); accuracy "
                f"{c.accuracy_b:.1%} vs {c.accuracy_a:.1%} (tolerance {self.tolerance:.1%}); "
                f"{len(c.wins)} examples won, {len(c.losses)} lost, {c.ties} unchanged; McNemar p = {c.mcnemar_p:.3g}")

    def to_dict(self) -> dict:
        return {**self.comparison.to_dict(), "tolerance": self.tolerance, "alpha": self.alpha, "verdict": self.verdict,
                "drop": self.drop, "passed": self.passed, "strict": self.strict, "summary": self.summary()}


def check_gate_settings(tolerance: float, alpha: float = 0.05) -> None:
    """Raise ``SettingsError`` for a tolerance or significance level the gate cannot use."""
    if not 0 <= tolerance < 1:
        raise SettingsError(f"tolerance is an accuracy drop in [0, 1) (0.02 = two points), got {tolerance}.")
    if not 0 < alpha < 1:
        raise SettingsError(f"alpha must be in (0, 1), got {alpha}.")


def regression_gate(previous_correct, new_correct, tolerance: float = 0.0, previous: str = "previous",
                    new: str = "new", alpha: float = 0.05, strict: bool = False) -> RegressionGate:
    """Compare the new adapter's per-example results with the previous adapter's (the same examples,
    in the same order) and decide whether the new one may replace it."""
    check_gate_settings(tolerance, alpha)
    comparison = compare_predictions(previous_correct, new_correct, previous, new)
    drop = comparison.accuracy_a - comparison.accuracy_b
    noise = comparison.mcnemar_p >= alpha
    if drop < 0 and not noise:
        verdict = "better"
    elif drop <= tolerance + 1e-12:
        verdict = "no regression"
    else:
        verdict = "possible regression" if noise else "regression"
    return RegressionGate(comparison, tolerance, alpha, verdict, strict)
