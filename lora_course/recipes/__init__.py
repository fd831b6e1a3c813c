"""What a run is, written once: prepare a model for a method, train from a configuration, evaluate
base against adapters, compare methods, measure a setup's memory. The command line, the book, the
scripts and the benchmarks call these; none of them assembles a run by hand."""

from lora_course.recipes.compare import compare_from_yaml, methods
from lora_course.recipes.evaluate import evaluate_models
from lora_course.recipes.measure import measure, measure_peak_of, prepare_for_setup
from lora_course.recipes.prepare import Prepared, make_trainable, prepare_model
from lora_course.recipes.train import plot_loss, train_from_config, train_from_yaml

__all__ = ["Prepared", "compare_from_yaml", "evaluate_models", "make_trainable", "measure", "measure_peak_of", "methods", "plot_loss", "prepare_for_setup",
           "prepare_model", "train_from_config", "train_from_yaml"]
