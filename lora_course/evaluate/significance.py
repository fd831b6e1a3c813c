"""Is adapter B better than adapter A on the same eval set, or is the difference noise?

Both tests are paired: they look at the same examples answered by both, which is far more
sensitive than comparing two accuracies as if they came from different samples.
- McNemar's exact test uses only the examples where the two disagree (b: A right and B wrong,
  c: A wrong and B right); under "no difference" each disagreement is a fair coin.
- The paired bootstrap resamples examples with replacement and reports how often B's advantage
  vanishes, with a 95% interval for the accuracy difference.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


def mcnemar(a_correct, b_correct) -> float:
    """Two-sided exact McNemar p-value (a binomial test on the discordant pairs)."""
    a_correct, b_correct = list(a_correct), list(b_correct)
    if len(a_correct) != len(b_correct):
        raise ValueError(f"Paired results must have the same length: {len(a_correct)} and {len(b_correct)}.")
    only_a = sum(1 for a, b in zip(a_correct, b_correct) if a and not b)
    only_b = sum(1 for a, b in zip(a_correct, b_correct) if b and not a)
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_bootstrap(a_correct, b_correct, samples: int = 10_000, seed: int = 0) -> dict:
    """Accuracy difference B - A, its 95% interval, and the share of resamples where B <= A."""
    a = [float(x) for x in a_correct]
    b = [float(x) for x in b_correct]
    if len(a) != len(b) or not a:
        raise ValueError("Paired results must be non-empty and of the same length.")
    rng = random.Random(seed)
    n = len(a)
    diffs = []
    for _ in range(samples):
        idx = [rng.randrange(n) for _ in range(n)]
        diffs.append(sum(b[i] - a[i] for i in idx) / n)
    diffs.sort()
    return {
        "difference": (sum(b) - sum(a)) / n,
        "ci95": (diffs[int(0.025 * samples)], diffs[min(samples - 1, int(0.975 * samples))]),
        "p_b_not_better": sum(1 for d in diffs if d <= 0) / samples,
    }


@dataclass
class Comparison:
    a: str
    b: str
    wins: list[int] = field(default_factory=list)  # indices B got right and A did not
    losses: list[int] = field(default_factory=list)  # indices A got right and B did not
    ties: int = 0
    accuracy_a: float = 0.0
    accuracy_b: float = 0.0
    mcnemar_p: float = 1.0
    bootstrap: dict = field(default_factory=dict)

    @property
    def significant(self) -> bool:
        return self.mcnemar_p < 0.05

    def summary(self) -> str:
        verdict = "a real difference" if self.significant else "within noise"
        return (f"{self.b} vs {self.a}: accuracy {self.accuracy_b:.1%} vs {self.accuracy_a:.1%}; "
                f"{len(self.wins)} wins, {len(self.losses)} losses, {self.ties} ties; "
                f"McNemar p = {self.mcnemar_p:.3g} ({verdict}); bootstrap 95% CI of the difference "
                f"[{self.bootstrap['ci95'][0]:+.1%}, {self.bootstrap['ci95'][1]:+.1%}]")

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "wins": self.wins, "losses": self.losses, "ties": self.ties,
                "accuracy_a": self.accuracy_a, "accuracy_b": self.accuracy_b, "mcnemar_p": self.mcnemar_p,
                "bootstrap": self.bootstrap, "significant": self.significant}


def compare_predictions(a_correct, b_correct, a_name: str = "A", b_name: str = "B", seed: int = 0) -> Comparison:
    a_correct, b_correct = [bool(x) for x in a_correct], [bool(x) for x in b_correct]
    if len(a_correct) != len(b_correct):
        raise ValueError("The two runs must be scored on the same examples, in the same order.")
    wins = [i for i, (a, b) in enumerate(zip(a_correct, b_correct)) if b and not a]
    losses = [i for i, (a, b) in enumerate(zip(a_correct, b_correct)) if a and not b]
    return Comparison(
        a=a_name, b=b_name, wins=wins, losses=losses, ties=len(a_correct) - len(wins) - len(losses),
        accuracy_a=sum(a_correct) / len(a_correct), accuracy_b=sum(b_correct) / len(b_correct),
        mcnemar_p=mcnemar(a_correct, b_correct), bootstrap=paired_bootstrap(a_correct, b_correct, seed=seed))
