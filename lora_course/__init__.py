"""lora_course: LoRA and QLoRA fine-tuning, taught and implemented.

The package is layered (see DESIGN.md); each layer imports only from those above it:

    models -> lora, quant -> data -> memory -> train -> evaluate, adapters -> config, cli -> viz
"""

import warnings

__version__ = "0.1.0"

# bitsandbytes >= 0.49 looks for an optional hub-downloaded CPU kernel at import and warns when it
# is absent; 4-bit layers then use its built-in CPU path, which is what this course measures.
warnings.filterwarnings("ignore", message="Failed to load CPU gemm_4bit_forward")

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
