"""The YAML configuration of a training run, validated before any model is loaded."""

from lora_course.config.schema import (
    ConfigError,
    DatasetSpec,
    TrainingConfig,
    check_against_model,
    check_config,
    load_config,
    parse_config,
    pitfall_warnings,
)

__all__ = ["ConfigError", "DatasetSpec", "TrainingConfig", "check_against_model", "check_config", "load_config", "parse_config",
           "pitfall_warnings"]
