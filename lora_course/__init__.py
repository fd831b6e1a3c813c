"""lora_course: LoRA and QLoRA fine-tuning, taught and implemented.

The package is layered (see DESIGN.md); each layer imports only from those above it:

    models -> lora, quant -> data -> memory -> train -> evaluate, adapters -> config, cli -> viz
"""

import logging

__version__ = "0.1.0"


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


# bitsandbytes >= 0.49 looks for an optional, hub-downloaded CPU kernel at import and logs a warning
# when it is absent; 4-bit layers then use its built-in CPU path, which is what this course measures.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropMessage("Failed to load CPU gemm_4bit_forward"))

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
