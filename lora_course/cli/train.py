"""``lora-course train CONFIG.yml``: the supervised fine-tuning recipe, top to bottom.

validate config -> check targets on a meta model -> load data -> load model -> LoRA/QLoRA/full
-> tokenize, check lengths -> train -> save adapter (PEFT format) or model, metrics, summary, plot.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a model from a YAML configuration",
                       description="Fine-tune from a YAML file (see examples/). Ctrl-C saves a checkpoint; --resume continues.")
    p.add_argument("config", help="YAML configuration file")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in output_dir")
    p.add_argument("--max-steps", type=int, default=None, help="override max_steps")
    p.add_argument("--output-dir", default=None, help="override output_dir")
    p.set_defaults(func=run)


def run(args) -> int:
    from lora_course.cli import UserError
    from lora_course.config import ConfigError, check_against_model, load_config
    from lora_course.models import ModelNotAvailableError

    overrides = {k: v for k, v in (("max_steps", args.max_steps), ("output_dir", args.output_dir)) if v is not None}
    try:
        config = load_config(args.config, overrides)
        problems = check_against_model(config)
        if problems:
            raise ConfigError(args.config, problems)
    except (ConfigError, ModelNotAvailableError) as e:
        raise UserError(str(e)) from e
    summary = train_from_config(config, resume=args.resume)
    print(json.dumps({k: summary[k] for k in ("steps", "final_train_loss", "final_eval_loss", "tokens_per_s")}, indent=2))
    return 130 if summary["interrupted"] else 0


def train_from_config(config, resume: bool = False, log=print, progress: bool = True) -> dict:
    """Train as ``config`` says; write the adapter (or model), ``summary.json`` and ``loss.png`` to its output_dir.

    ``log=None`` and ``progress=False`` make it silent (the book's sweeps print their own tables)."""
    import torch

    from lora_course.adapters import base_identity, save_with_metadata
    from lora_course.config import pitfall_warnings
    from lora_course.config.schema import tokenizer_mismatch
    from lora_course.config.datasets import load_records
    from lora_course.data import Collator, check_sequence_length, length_stats, tokenize_dataset
    from lora_course.lora import LoraSettings, inject_lora
    from lora_course.models import count_parameters, load_model, load_tokenizer
    from lora_course.train import TrainConfig, freeze_first_layers, train

    train_log, log = log, log or (lambda *args, **kwargs: None)
    out = Path(config.output_dir)
    records = [r for spec in config.datasets for r in load_records(spec)]
    quantization = "nf4" if config.adapter == "qlora" else None
    model, tokenizer = load_model(config.base_model, quantization=quantization)
    if config.tokenizer and config.tokenizer != config.base_model:
        tokenizer = load_tokenizer(config.tokenizer)
    identity = base_identity(model, tokenizer, config.base_model)  # before training touches anything
    if config.freeze_layers:
        freeze_first_layers(model, config.freeze_layers)
    if config.adapter:
        torch.manual_seed(config.seed)  # the adapter's random A: the same seed gives the same run, in any launcher
        inject_lora(model, LoraSettings(r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                                        target_modules=config.lora_targets, use_rslora=config.use_rslora))
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
    precision = "fp16" if config.fp16 else {True: "bf16", False: "fp32", "auto": "auto"}[config.bf16]
    train_config = TrainConfig(
        micro_batch_size=config.micro_batch_size, gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_steps=config.max_steps, num_epochs=config.num_epochs, learning_rate=config.learning_rate,
        weight_decay=config.weight_decay, optimizer=config.optimizer, lr_scheduler=config.lr_scheduler,
        warmup_steps=config.warmup_steps, max_grad_norm=config.max_grad_norm,
        gradient_checkpointing=config.gradient_checkpointing, precision=precision, eval_steps=config.eval_steps,
        early_stopping_patience=config.early_stopping_patience, save_steps=config.save_steps,
        output_dir=str(out), seed=config.seed, progress=progress)
    counts = count_parameters(model)
    method = config.adapter or (f"partial, first {config.freeze_layers} layers frozen" if config.freeze_layers else "full")
    log(f"training {config.base_model} ({method}): {counts['trainable']:,} of {counts['total']:,} "
        f"parameters trainable, {len(examples)} examples ({truncated} truncated), p95 length {stats['p95']}")
    start = time.perf_counter()
    result = train(model, examples, Collator(tokenizer.pad_token_id), train_config, eval_examples, resume=resume, log=train_log)
    if not result.interrupted:
        if config.adapter:
            save_with_metadata(model, tokenizer, out / "adapter", config.base_model, training_config=config.to_dict(),
                               data_records=records, quantization=quantization, identity=identity)
        else:
            model.save_pretrained(out / "model")
            tokenizer.save_pretrained(out / "model")
    summary = {
        "base_model": config.base_model, "adapter": config.adapter, "parameters": counts, "steps": result.steps,
        "tokens_per_s": result.tokens_per_s, "peak_memory_bytes": result.peak_memory_bytes,
        "final_train_loss": result.final_train_loss, "final_eval_loss": result.final_eval_loss,
        "wall_time_s": time.perf_counter() - start, "interrupted": result.interrupted,
        "stopped_early": result.stopped_early, "examples": len(examples), "truncated": truncated,
        "length_p50_p95_max": [stats["p50"], stats["p95"], stats["max"]],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_loss(result.history, out / "loss.png")
    return summary


def plot_loss(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in history], [r["loss"] for r in history], label="train loss (per target token)")
    evals = [r for r in history if "eval_loss" in r]
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
