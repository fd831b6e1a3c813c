"""What fits a given amount of GPU memory: the largest micro-batch and the longest sequence, by method."""

from __future__ import annotations

import dataclasses

from lora_course.lora.counting import WHOLE_MODEL_METHODS
from lora_course.memory.breakdown import Breakdown, Setup
from lora_course.memory.estimate import estimate


def largest(fits, upper: int) -> int:
    """The largest n in 1..upper with fits(n), assuming fits is monotone (0 when even 1 fails)."""
    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= upper and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, upper + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def largest_that_fit(config, setup: Setup, method: str, capacity: int) -> dict:
    """``{"micro_batch_size": ..., "sequence_length": ...}``: each as large as fits ``capacity`` bytes
    with the other held at the setup's value."""
    base = dataclasses.replace(setup, method=method, frozen_layers=0)
    max_len = getattr(config, "max_position_embeddings", 131072)
    return {
        "micro_batch_size": largest(lambda b: estimate(config, dataclasses.replace(base, micro_batch_size=b)).total
                                    <= capacity, 4096),
        "sequence_length": largest(lambda t: estimate(config, dataclasses.replace(base, sequence_length=t)).total
                                   <= capacity, max_len),
    }


@dataclasses.dataclass
class MemoryReport:
    model: str
    setup: Setup
    breakdown: Breakdown
    capacity: int | None = None  # bytes of GPU memory asked about
    fits: bool | None = None
    largest_that_fit: dict | None = None  # per method: the largest micro-batch and sequence that fit

    def to_dict(self) -> dict:
        d = {"model": self.model, "setup": dataclasses.asdict(self.setup), "breakdown": self.breakdown.to_dict()}
        if self.capacity:
            d.update(gpu_memory_bytes=self.capacity, fits=self.fits, largest_that_fit=self.largest_that_fit)
        return d


def memory_report(model: str, setup: Setup, capacity: int | None = None) -> MemoryReport:
    """The estimate for ``setup`` on ``model`` (read from its config alone) and, given ``capacity`` in
    bytes, whether it fits and what would, per method."""
    from lora_course.models import load_config

    config = load_config(model)
    breakdown = estimate(config, setup)
    report = MemoryReport(model, setup, breakdown)
    if capacity:
        report.capacity, report.fits = capacity, breakdown.total <= capacity
        report.largest_that_fit = {m: largest_that_fit(config, setup, m, capacity) for m in WHOLE_MODEL_METHODS}
    return report
