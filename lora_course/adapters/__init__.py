"""From a trained adapter to something you can ship: metadata that says what it was trained
from, loading that refuses the wrong base, several adapters on one base, adapter arithmetic,
and merging into a standalone model."""

from lora_course.adapters.arithmetic import (
    COMBINATIONS,
    combine_adapters,
    weighted_delta,
)
from lora_course.adapters.merge import (
    MergeReport,
    dequantize,
    max_logit_difference,
    merge_to_directory,
)
from lora_course.adapters.metadata import (
    METADATA_NAME,
    BaseModelMismatchError,
    base_identity,
    check_base,
    load_base_for_adapter,
    load_checked,
    read_metadata,
    save_with_metadata,
)
from lora_course.adapters.multi import AdapterSet

__all__ = [
    "COMBINATIONS", "METADATA_NAME", "AdapterSet", "BaseModelMismatchError", "MergeReport", "base_identity",
    "check_base", "combine_adapters", "load_base_for_adapter", "dequantize", "load_checked", "max_logit_difference", "merge_to_directory",
    "read_metadata", "save_with_metadata", "weighted_delta",
]
