"""Will it fit? An analytic estimate of training memory and an exact measurement of one real
training step, component by component, so each can check the other."""

from lora_course.memory.breakdown import COMPONENTS, METHODS, Breakdown, Setup
from lora_course.memory.estimate import estimate
from lora_course.memory.measure import measure_step, weight_bytes

__all__ = ["COMPONENTS", "METHODS", "Breakdown", "Setup", "estimate", "measure_step", "weight_bytes"]
