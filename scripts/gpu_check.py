"""Every check that needs a GPU, in one run of at most about 8 minutes: `python scripts/gpu_check.py`.

On a CUDA machine it prints
  (a) the precision "auto" chooses on this card, and why;
  (b) LoRA and QLoRA training steps of SmolLM2-135M-Instruct and of the gpu profile's large model, in that
      precision: tokens/s and torch.cuda.max_memory_allocated, next to `lora-course memory`'s estimate
      for the same setup (micro-batch, sequence length, precision, checkpointing);
  (c) the QLoRA chapter (book/07) executed in the gpu profile.
Without CUDA it says so and exits 0. `--skip-chapter` leaves (c) out; `--budget` bounds (b) and (c).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def train_step_report(model_name: str, method: str, steps: int, micro_batch: int, seq_len: int,
                      checkpointing: bool) -> dict:
    """Train ``steps`` steps of ``method`` on full-length sequences; measured beside the estimate."""
    import torch

    from lora_course.data import Collator
    from lora_course.lora import LoraSettings
    from lora_course.memory import Setup, estimate
    from lora_course.models.dtypes import dtype_name
    from lora_course.models.hardware import auto_precision
    from lora_course.recipes import prepare_model
    from lora_course.train import TrainConfig, train

    choice = auto_precision()
    dtype = dtype_name(choice.precision)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    prepared = prepare_model(model_name, method, LoraSettings(r=16, alpha=32), dtype=dtype,
                             attn_implementation="sdpa", log=None)
    model, tokenizer = prepared.model, prepared.tokenizer
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (micro_batch * (steps + 1), seq_len), generator=generator).tolist()
    examples = [{"input_ids": row, "labels": row} for row in ids]
    config = TrainConfig(micro_batch_size=micro_batch, max_steps=steps, learning_rate=1e-4, lr_scheduler="constant",
                         precision="auto", gradient_checkpointing=checkpointing, progress=False, shuffle=False)
    result = train(model, examples, Collator(tokenizer.pad_token_id or 0), config, log=None)
    setup = Setup(method=method, r=16, param_dtype=dtype, mixed_precision=choice.precision != "fp32",
                  micro_batch_size=micro_batch, sequence_length=seq_len, gradient_checkpointing=checkpointing,
                  attn_implementation="sdpa", device="cuda" if cuda else "cpu")
    estimated = estimate(model_name, setup).allocated  # max_memory_allocated sees no context, no allocator slack
    peak = torch.cuda.max_memory_allocated() if cuda else result.peak_memory_bytes  # CPU: the process's peak RSS
    del model, prepared
    if cuda:
        torch.cuda.empty_cache()
    return {"model": model_name, "method": method, "precision": result.precision, "steps": steps,
            "micro_batch": micro_batch, "seq_len": seq_len, "checkpointing": checkpointing,
            "tokens_per_s": result.tokens_per_s, "max_memory_allocated_gb": peak / 1e9,
            "estimate_gb": estimated / 1e9, "estimate_over_measured": estimated / peak if peak else None,
            "final_loss": result.final_train_loss}


def run_chapter(path: Path, timeout: int) -> dict:
    import nbformat
    from nbclient import NotebookClient

    os.environ["LORA_COURSE_PROFILE"] = "gpu"
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if o.get("output_type") == "stream"]
    return {"chapter": path.name, "seconds": time.perf_counter() - start, "last_prints": outputs[-3:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--skip-chapter", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--dry-run", action="store_true", help="on a CPU, run (b) on the tiny model: checks the "
                        "script before GPU time is spent on it (the memory column is then the process's RSS)")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.dry_run:
        print("gpu_check: no CUDA device on this machine; nothing to check here (run it on a GPU machine).")
        return 0
    from lora_course.models.hardware import auto_precision
    from lora_course.profiles import profile

    started = time.perf_counter()
    choice = auto_precision()
    print(f"(a) precision: {choice.precision} ({choice.reason})", flush=True)
    runs = [("HuggingFaceTB/SmolLM2-135M-Instruct", 8, 512, False), (profile("gpu").large_model, 4, 512, True)]
    if args.dry_run:
        from lora_course.models import TINY

        runs, args.skip_chapter = [(TINY, 2, 64, False), (TINY, 2, 64, True)], True
    results = []
    for model_name, micro_batch, seq_len, checkpointing in runs:
        for method in ("lora", "qlora"):
            row = train_step_report(model_name, method, args.steps, micro_batch, seq_len, checkpointing)
            results.append(row)
            print(f"(b) {model_name} {method} {row['precision']} B={micro_batch} T={seq_len} "
                  f"ckpt={'on' if checkpointing else 'off'}: {row['tokens_per_s']:,.0f} tokens/s, "
                  f"max_memory_allocated {row['max_memory_allocated_gb']:.2f} GB, estimate {row['estimate_gb']:.2f} GB "
                  f"({row['estimate_over_measured']:.2f}x)", flush=True)
    chapter = None
    if not args.skip_chapter:
        chapter = run_chapter(ROOT / "book" / "07-mixed-precision-and-qlora.ipynb", timeout=300)
        print(f"(c) {chapter['chapter']} in the gpu profile: {chapter['seconds']:.0f} s", flush=True)
        for text in chapter["last_prints"]:
            print("    " + text.strip().replace("\n", "\n    "))
    print(f"gpu_check: done in {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"precision": choice.__dict__, "steps": results, "chapter": chapter},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
