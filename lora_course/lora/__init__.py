"""LoRA from scratch (layer, inject, merge, PEFT-format save/load), and the same through PEFT."""

from lora_course.lora.inject import (
                                       find_targets,
                                       inject_lora,
                                       linear_module_names,
                                       lora_layers,
                                       trainable_parameter_names,
)
from lora_course.lora.io import (
                                       AdapterFormatError,
                                       adapter_state_dict,
                                       load_adapter,
                                       read_adapter_config,
                                       save_adapter,
)
from lora_course.lora.layer import LoRALinear
from lora_course.lora.merge import (
                                       adapter_disabled,
                                       merge_and_unload,
                                       merge_lora,
                                       set_adapter_enabled,
                                       unmerge_lora,
)
from lora_course.lora.peft_route import get_peft_lora, load_peft_adapter
from lora_course.lora.settings import (
                                       ADAPTER_METHODS,
                                       ALL_LINEAR,
                                       ATTENTION,
                                       LLAMA_PROJECTIONS,
                                       METHODS,
                                       MLP,
                                       LoraSettings,
                                       quantization_for,
)

__all__ = [
    "ADAPTER_METHODS", "ALL_LINEAR", "ATTENTION", "LLAMA_PROJECTIONS", "METHODS", "MLP", "quantization_for", "AdapterFormatError", "LoRALinear", "LoraSettings", "adapter_disabled",
    "adapter_state_dict", "find_targets", "get_peft_lora", "inject_lora", "linear_module_names", "load_adapter",
    "load_peft_adapter", "lora_layers", "merge_and_unload", "merge_lora", "read_adapter_config", "save_adapter",
    "set_adapter_enabled", "trainable_parameter_names", "unmerge_lora",
]
