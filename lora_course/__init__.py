"""lora_course: LoRA and QLoRA fine-tuning, taught and implemented.

The package is layered (see DESIGN.md); each layer imports only from those above it:

    models -> lora, quant -> data -> memory -> train -> evaluate, adapters -> config, cli -> viz
"""

__version__ = "0.1.0"

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
