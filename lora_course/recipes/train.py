"""Supervised fine-tuning from a configuration, top to bottom: what ``lora-course train`` runs.

    check the config against the model's architecture (meta device, no weights)
    -> read the data (a missing or malformed file fails here, before any model loads)
    -> check the resume has a checkpoint to resume from
    -> prepare the model for the method (load, NF4 for QLoRA, inject LoRA or freeze layers)
    -> tokenize, check lengths, split off the eval set
    -> train -> save the adapter (PEFT format + metadata) or the model, summary.json, loss.png

Under ``accelerate launch`` every process trains and only the main one writes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from lora_course.adapters import base_identity, save_with_metadata
from lora_course.config import (
    TrainingConfig,
    check_config,
    load_config,
    pitfall_warnings,
)
from lora_course.config.datasets import load_records
from lora_course.config.schema import tokenizer_mismatch
from lora_course.data import (
    Collator,
    check_sequence_length,
    length_stats,
    tokenize_dataset,
)
from lora_course.errors import ResumeError
from lora_course.models import count_parameters
from lora_course.recipes.prepare import prepare_model
from lora_course.train import checkpoint_paths, train

SUMMARY_KEYS = ("steps", "final_train_loss", "final_eval_loss", "tokens_per_s")


def train_from_yaml(path, overrides: dict | None = None, resume: bool = False, allow_changes=(), log=print,
                    progress: bool = True) -> dict:
    """``lora-course train``: read and check ``path`` (with ``overrides`` applied), then train."""
    config = load_config(path, overrides)
    check_config(config, str(path))
    return train_from_config(config, resume=resume, allow_changes=allow_changes, log=log, progress=progress)


def train_from_config(config: TrainingConfig, resume: bool = False, allow_changes=(), log=print,
                      progress: bool = True) -> dict:
    """Train as ``config`` says; write the adapter (or model), ``summary.json`` and ``loss.png`` to its output_dir.

    ``log=None`` and ``progress=False`` make it silent (the book's sweeps print their own tables).
    ``allow_changes``: configuration keys a resume may change on purpose (see ``lora_course.train.SAFE_TO_CHANGE``)."""
    train_log, log = log, log or (lambda *args, **kwargs: None)
    out = Path(config.output_dir)
    records = [r for spec in config.datasets for r in load_records(spec)]
    if resume and not checkpoint_paths(out):
        raise ResumeError(f"Nothing to resume: {out} has no checkpoint. Fix: run without --resume, or point "
                          "output_dir (--output-dir) at the run to continue.")
    prepared = prepare_model(config.base_model, config.method, config.lora_settings(), config.freeze_layers,
                             tokenizer=config.tokenizer, seed=config.seed, log=log)
    model, tokenizer = prepared.model, prepared.tokenizer
    identity = base_identity(model, tokenizer, config.base_model)  # the frozen base: the same before or after
    examples, truncated = tokenize_dataset(records, tokenizer, config.sequence_length, config.train_on_inputs)
    stats = length_stats(examples)
    for warning in check_sequence_length(stats, config.sequence_length) + pitfall_warnings(
            config, len(examples), stats["p95"], tokenizer) + tokenizer_mismatch(config, tokenizer, model):
        log(f"warning: {warning}")
    eval_examples = None
    if config.val_set_size:
        generator = torch.Generator().manual_seed(config.seed)
        order = torch.randperm(len(examples), generator=generator).tolist()
        eval_examples = [examples[i] for i in order[: config.val_set_size]]
        examples = [examples[i] for i in order[config.val_set_size:]]
    counts = count_parameters(model)
    method = (f"partial, first {config.freeze_layers} layers frozen" if config.method == "partial"
              else config.method)
    log(f"training {config.base_model} ({method}): {counts['trainable']:,} of {counts['total']:,} "
        f"parameters trainable, {len(examples)} examples ({truncated} truncated), p95 length {stats['p95']}")
    start = time.perf_counter()
    result = train(model, examples, Collator(tokenizer.pad_token_id), config.train_config(progress=progress),
                   eval_examples, resume=resume, log=train_log, run_config=config.to_dict(),
                   allow_changes=allow_changes)
    summary = {
        "base_model": config.base_model, "adapter": config.adapter, "method": config.method, "parameters": counts,
        "steps": result.steps, "precision": result.precision, "tokens_per_s": result.tokens_per_s,
        "peak_memory_bytes": result.peak_memory_bytes, "final_train_loss": result.final_train_loss,
        "final_eval_loss": result.final_eval_loss, "wall_time_s": time.perf_counter() - start,
        "interrupted": result.interrupted, "stopped_early": result.stopped_early, "examples": len(examples),
        "truncated": truncated, "length_p50_p95_max": [stats["p50"], stats["p95"], stats["max"]],
    }
    if not result.main_process:  # the other processes of a distributed run trained the same weights
        return summary
    if not result.interrupted:
        if config.adapter:
            save_with_metadata(model, tokenizer, out / "adapter", config.base_model, training_config=config.to_dict(),
                               data_records=records, quantization=prepared.quantization, identity=identity)
        else:
            model.save_pretrained(out / "model")
            tokenizer.save_pretrained(out / "model")
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_loss(result.history, out / "loss.png")
    return summary


def plot_loss(history: list[dict], path: Path) -> None:
    """The loss curve as a PNG. A bare ``Figure`` (no pyplot): it leaves a notebook's backend alone."""
    from matplotlib.figure import Figure

    if not history:
        return
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot([r["step"] for r in history], [r["loss"] for r in history], label="train loss (per target token)")
    evals = [r for r in history if "eval_loss" in r]
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)

