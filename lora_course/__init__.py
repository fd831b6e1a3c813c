"""lora_course: LoRA and QLoRA fine-tuning, taught and implemented.

The package is layered (DESIGN.md); each layer imports only from the layers before it in this list
(tests/test_recipes.py checks every import):

    errors      CourseError and its kinds: every mistake a user can make; the CLI catches this one type
    models      load by hub name or path with the offline fallback, the tiny model; dtype tables and the
                hardware rules ("auto" precision, the QLoRA compute dtype)
    lora, quant LoRA from scratch and through PEFT, the method names; NF4 from scratch and bitsandbytes
    data        chat formatting, masking, batching, bundled data sets
    train       the training loop, its loss, optimizers, checkpoints that know their run
    memory, evaluate   estimate and measure; metrics, generation, significance
    adapters, config   adapter metadata, loading a base as its adapter was trained, merging; the YAML schema
    recipes     what a run is: prepare a model for a method, train from a config, evaluate, compare, measure
    cli         argument parsing and one call into the recipes (or the grader) per command

Beside the stack: ``grading`` (the autograder; uses errors and models), ``viz`` (the book's plots and
helpers), ``profiles`` (the book's execution profiles).
"""

import logging

# The version, written once: pyproject.toml reads it from here (tests/test_metadata.py, tests/test_wheel.py).
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
