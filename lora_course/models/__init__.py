"""Load causal language models and their tokenizers: from the hub, a local folder, the
offline copy of the course model, or a tiny random model for tests; the attention padding-free
batches run with (``models.attention``)."""

from lora_course.models.attention import PER_EXAMPLE_SDPA, attention_for_padding_free, use_attention
from lora_course.models.errors import ModelNotAvailableError
from lora_course.models.loading import count_parameters, load_config, load_model, load_tokenizer, meta_model
from lora_course.models.tiny import TINY, tiny_config, tiny_model, tiny_qwen2_model, tiny_tokenizer

__all__ = [
    "ModelNotAvailableError",
    "PER_EXAMPLE_SDPA",
    "TINY",
    "attention_for_padding_free",
    "count_parameters",
    "load_config",
    "load_model",
    "load_tokenizer",
    "meta_model",
    "tiny_config",
    "tiny_model",
    "tiny_qwen2_model",
    "tiny_tokenizer",
    "use_attention",
]
