"""The same LoRA through PEFT, for users who want the library everyone else uses.

Both routes take the same ``LoraSettings``; the tests check that they count the same
parameters and compute the same logits, and that each loads the other's saved adapters.
"""

from __future__ import annotations

from lora_course.lora.settings import LoraSettings


def get_peft_lora(model, settings: LoraSettings, **extra):
    """Wrap ``model`` with ``peft.get_peft_model`` using the same settings."""
    from peft import get_peft_model

    return get_peft_model(model, settings.to_peft(**extra))


def load_peft_adapter(model, adapter_dir, is_trainable: bool = False):
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=is_trainable)
