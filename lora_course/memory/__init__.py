"""Will it fit? An analytic estimate of training memory and an exact measurement of one real
training step, component by component, so each can check the other."""

from lora_course.memory.breakdown import (
    COMPONENTS,
    METHODS,
    OPTIMIZERS,
    TRANSIENTS,
    Breakdown,
    Setup,
)
from lora_course.memory.estimate import estimate
from lora_course.memory.fit import largest_that_fit, memory_report
from lora_course.memory.measure import measure_peak, measure_step, weight_bytes

__all__ = ["COMPONENTS", "METHODS", "OPTIMIZERS", "TRANSIENTS", "Breakdown", "Setup", "estimate", "largest_that_fit",
           "measure_peak", "measure_step", "memory_report", "weight_bytes"]
