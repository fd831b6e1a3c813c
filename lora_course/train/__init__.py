"""The training loop and its parts: token-normalized accumulation, optimizers, schedules, checkpoints."""

from lora_course.train.checkpoint import SAFE_TO_CHANGE, checkpoint_paths
from lora_course.train.loop import TrainConfig, TrainResult, peak_memory, train
from lora_course.train.loss import evaluate_loss, summed_token_loss, target_tokens
from lora_course.train.optim import (
           OPTIMIZERS,
           SCHEDULERS,
           make_optimizer,
           make_scheduler,
)
from lora_course.train.partial import freeze_first_layers

__all__ = ["OPTIMIZERS", "SAFE_TO_CHANGE", "SCHEDULERS", "checkpoint_paths", "TrainConfig", "TrainResult", "evaluate_loss", "freeze_first_layers", "make_optimizer",
           "make_scheduler", "peak_memory", "summed_token_loss", "target_tokens", "train"]
