"""Is the adapter any good? Perplexity, task metrics, generation side by side, whether a
difference between two adapters is more than noise, and whether a new adapter regressed against the previous one."""

from lora_course.evaluate.generation import generate, side_by_side
from lora_course.evaluate.metrics import classification_report, confusion_matrix
from lora_course.evaluate.perplexity import Perplexity, perplexity
from lora_course.evaluate.regression import VERDICTS, RegressionGate, regression_gate
from lora_course.evaluate.significance import Comparison, compare_predictions, mcnemar, paired_bootstrap
from lora_course.evaluate.tasks import TASKS, TaskResult, evaluate_task

__all__ = [
    "TASKS", "VERDICTS", "Comparison", "Perplexity", "RegressionGate", "TaskResult", "classification_report", "compare_predictions",
    "confusion_matrix", "evaluate_task", "generate", "mcnemar", "paired_bootstrap", "perplexity", "regression_gate", "side_by_side",
]
