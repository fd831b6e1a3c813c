"""Will it fit, and what will it cost? An analytic estimate of training memory and an exact
measurement of one real training step, component by component, so each can check the other; the
FLOPs of a run and what they cost in GPU-hours and money."""

from lora_course.memory.breakdown import (
    COMPONENTS,
    METHODS,
    OPTIMIZERS,
    TRANSIENTS,
    Breakdown,
    Setup,
)
from lora_course.memory.cost import (
    ASSUMED_GPUS,
    GPU,
    CostEstimate,
    flops_per_token,
    step_flops,
    tokens_for_budget,
    training_cost,
    training_tokens,
)
from lora_course.memory.estimate import estimate
from lora_course.memory.fit import largest_that_fit, memory_report
from lora_course.memory.measure import measure_peak, measure_step, weight_bytes

__all__ = ["ASSUMED_GPUS", "COMPONENTS", "GPU", "CostEstimate", "flops_per_token", "step_flops", "tokens_for_budget",
           "training_cost", "training_tokens", "METHODS", "OPTIMIZERS", "TRANSIENTS", "Breakdown", "Setup", "estimate", "largest_that_fit",
           "measure_peak", "measure_step", "memory_report", "weight_bytes"]
