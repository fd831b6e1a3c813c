"""One training loop, readable in one sitting: the book, the command line and the benchmarks use it.

    for each optimizer step:
        take the next k micro-batches (the accumulation window)
        count the window's target tokens
        for each micro-batch: loss = summed token loss / window tokens; backward
        clip, step, schedule, zero the gradients
        now and then: log, evaluate, save a checkpoint

Everything else (precision, checkpointing, resuming) is a few lines around that skeleton.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import resource
import time
from pathlib import Path

import torch

from lora_course.data import PaddingFreeCollator
from lora_course.errors import DataError, SettingsError
from lora_course.models.attention import attention_for_padding_free, use_attention
from lora_course.models.hardware import PRECISIONS, autocast, resolve_precision
from lora_course.train.checkpoint import (
    append_metrics,
    load_checkpoint,
    refuse_to_overwrite,
    run_signature,
    save_checkpoint,
    truncate_metrics,
)
from lora_course.train.loss import evaluate_loss, on_device, summed_token_loss, target_tokens
from lora_course.train.optim import make_optimizer, make_scheduler


@dataclasses.dataclass
class TrainConfig:
    micro_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_steps: int | None = None  # optimizer steps; None: num_epochs over the data
    num_epochs: float = 1.0
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    lr_scheduler: str = "cosine"
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    gradient_checkpointing: bool = False
    precision: str = "auto"  # auto: bf16 on cards with native bf16, fp16 on older CUDA cards, fp32 on CPU
    eval_steps: int | None = None
    early_stopping_patience: int | None = None  # evaluations without a better eval loss
    save_steps: int | None = None
    save_total_limit: int | None = None  # keep the newest N checkpoints (None: all)
    loss_chunk_rows: int | None = None  # output head + loss this many target rows at a time (None: all at once)
    compile: bool = False  # torch.compile the decoder (after LoRA is injected); the head and loss stay eager
    # each micro-batch as one row: examples end to end, position ids restarting, no padding (data.PaddingFreeCollator)
    padding_free: bool = False
    output_dir: str | None = None
    seed: int = 0
    shuffle: bool = True  # False: batches in the order given (to compare trainers batch for batch)
    progress: bool = True

    def __post_init__(self):
        for name in ("micro_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.precision not in PRECISIONS:
            raise SettingsError(f"precision must be one of {PRECISIONS}, got {self.precision!r}.")
        if self.loss_chunk_rows is not None and self.loss_chunk_rows < 1:
            raise SettingsError(f"loss_chunk_rows must be at least 1 (or None), got {self.loss_chunk_rows}.")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise SettingsError(f"save_total_limit must be at least 1 (or None to keep every checkpoint), "
                                f"got {self.save_total_limit}.")


@dataclasses.dataclass
class TrainResult:
    history: list[dict]
    steps: int
    wall_time_s: float
    tokens: int  # target tokens trained on
    input_tokens: int  # non-padding tokens processed
    peak_memory_bytes: int
    final_train_loss: float | None
    final_eval_loss: float | None
    stopped_early: bool = False
    interrupted: bool = False
    optimizer_state_bytes: int = 0  # what the optimizer holds per trainable parameter, in bytes, at the end
    precision: str = "fp32"  # what "auto" (or the setting) came to on this device
    main_process: bool = True  # False on every rank but 0 of a distributed run: only the main process writes

    @property
    def tokens_per_s(self) -> float:
        return self.input_tokens / self.wall_time_s if self.wall_time_s else 0.0


def train(model, train_data, collator, config: TrainConfig, eval_data=None, resume: bool = False, log=print,
          run_config: dict | None = None, allow_changes=()) -> TrainResult:
    """Train ``model`` on ``train_data`` (a list of examples ``collator`` turns into batches).

    ``run_config``: the caller's whole configuration, stored in each checkpoint so that a resume with
    another one is refused; ``allow_changes``: keys that may differ on resume (e.g. ``["max_steps"]``).
    ``config.padding_free``: each micro-batch (training and evaluation) is one unpadded row from
    ``PaddingFreeCollator``, and ``collator`` is not used. The model attends as
    ``models.attention.attention_for_padding_free`` says: flash attention stays, SDPA and eager become
    ``per_example_sdpa`` (one call per example, not one masked product over the row) for the run, its
    evaluations included, and the model's own implementation is set back when ``train`` returns or raises."""
    device = next(p.device for p in model.parameters())
    choice = resolve_precision(config.precision, device)
    precision = choice.precision
    rank, world = _join_process_group()
    log = log if (rank == 0 and log) else (lambda *args, **kwargs: None)
    if config.precision == "auto":
        log(f"precision: {choice.reason}")
    attention = attention_for_padding_free(model) if config.padding_free else None
    if attention:
        collator = PaddingFreeCollator(flash_kwargs=attention.boundaries)
        log(f"attention: {attention.reason}")
    batches = _BatchOrder(len(train_data), config.micro_batch_size, config.seed, config.shuffle)
    window_size = config.gradient_accumulation_steps * world  # micro-batches per optimizer step, all ranks
    total_steps = config.max_steps or max(1, int(config.num_epochs * batches.per_epoch / window_size))
    optimizer = make_optimizer(model.parameters(), config.optimizer, config.learning_rate, config.weight_decay)
    scheduler = make_scheduler(optimizer, config.lr_scheduler, config.warmup_steps, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=choice.needs_grad_scaler)
    out = Path(config.output_dir) if config.output_dir else None
    writes = out if rank == 0 else None  # one process writes logs and checkpoints
    signature = run_signature(config, train_data, model, run_config, world) if out else None  # what checkpoints record
    state = {"step": 0, "micro_batches_seen": 0, "history": [], "best_eval": None, "evals_without_gain": 0}
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    if resume:
        load_checkpoint(out, model, optimizer, scheduler, state, signature, allow_changes, log, scaler)
    elif out:
        refuse_to_overwrite(out)
    if writes:  # a resumed run logs again the steps after its checkpoint; a fresh run starts a fresh log
        truncate_metrics(writes, state["step"])

    def checkpoint():
        save_checkpoint(out, model, optimizer, scheduler, state, signature, config.save_total_limit, scaler)

    undo_compile = _compile_decoder(model) if config.compile else (lambda: None)
    restore_mode = _enter_training_mode(model, config.gradient_checkpointing)
    restore_attention = use_attention(model, attention.implementation) if attention else (lambda: None)

    def restore():
        undo_compile()
        restore_mode()
        restore_attention()
    forward_model = _wrap_ddp(model, device) if world > 1 else model
    _reset_peak_memory(device)
    progress = _progress(total_steps, state["step"], config.progress and rank == 0)
    started, trained_tokens, input_tokens = time.perf_counter(), 0, 0
    stopped_early = interrupted = False
    try:
        while state["step"] < total_steps:
            # rank r takes micro-batches r, r + world, ...: together the ranks cover the same window
            # that one process with world x the accumulation would
            window = [collator([train_data[i] for i in batches.indices(state["micro_batches_seen"] + j * world + rank)])
                      for j in range(config.gradient_accumulation_steps)]
            window = [on_device(b, device) for b in window]
            window_tokens = _global_sum(sum(target_tokens(b["labels"]) for b in window), device)
            step_start, window_loss = time.perf_counter(), 0.0
            for i, batch in enumerate(window):
                # DDP all-reduces gradients in backward; once per window is enough, on its last micro-batch
                last = i == len(window) - 1
                with (forward_model.no_sync() if world > 1 and not last else contextlib.nullcontext()):
                    with autocast(precision, device):
                        # DDP averages gradients over ranks; times world makes that average a sum
                        loss = summed_token_loss(forward_model, batch, config.loss_chunk_rows) / window_tokens * world
                    scaler.scale(loss).backward()
                window_loss += loss.item() / world
            window_loss = _global_sum(window_loss, device)  # this rank's share -> the whole window's loss
            if config.max_grad_norm:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            state["micro_batches_seen"] += window_size
            n_input = sum(int(b["attention_mask"].sum()) if "attention_mask" in b else b["input_ids"].numel() for b in window)
            trained_tokens += window_tokens
            input_tokens += n_input
            record = {"step": state["step"], "loss": window_loss, "lr": lr, "target_tokens": window_tokens,
                      "input_tokens": n_input, "tokens_per_s": n_input / (time.perf_counter() - step_start),
                      "elapsed_s": time.perf_counter() - started, "peak_memory_bytes": peak_memory(device)}
            if eval_data is not None and config.eval_steps and state["step"] % config.eval_steps == 0:
                record["eval_loss"] = evaluate_loss(model, eval_data, collator, config.micro_batch_size, precision,
                                                    config.loss_chunk_rows)
                stopped_early = _early_stop(state, record["eval_loss"], config.early_stopping_patience)
                stopped_early = bool(_global_sum(int(stopped_early), device))  # every rank stops, or none
            state["history"].append(record)
            append_metrics(writes, record)
            progress.update(1)
            progress.set_postfix(loss=f"{window_loss:.3f}", **({"eval": f"{record['eval_loss']:.3f}"} if "eval_loss" in record else {}))
            if writes and config.save_steps and state["step"] % config.save_steps == 0:
                checkpoint()
            if stopped_early:
                log(f"early stopping at step {state['step']}: no better eval loss in {config.early_stopping_patience} evaluations")
                break
    except KeyboardInterrupt:
        interrupted = True
        if writes:
            checkpoint()
            log(f"interrupted at step {state['step']}; checkpoint saved in {out} (resume to continue)")
        else:
            raise
    finally:
        progress.close()
        restore()
    final_eval = None
    if eval_data is not None and not interrupted:
        restore_attention = use_attention(model, attention.implementation) if attention else (lambda: None)
        try:
            final_eval = evaluate_loss(model, eval_data, collator, config.micro_batch_size, precision,
                                       config.loss_chunk_rows)
        finally:
            restore_attention()
    history = state["history"]
    return TrainResult(
        history=history, steps=state["step"], wall_time_s=time.perf_counter() - started, tokens=trained_tokens,
        input_tokens=input_tokens, peak_memory_bytes=peak_memory(device),
        final_train_loss=history[-1]["loss"] if history else None, final_eval_loss=final_eval,
        stopped_early=stopped_early, interrupted=interrupted, optimizer_state_bytes=_state_bytes(optimizer),
        precision=precision, main_process=rank == 0,
    )


def _state_bytes(optimizer) -> int:
    return sum(t.nbytes for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t))


class _BatchOrder:
    """Which examples make micro-batch number n: a seeded shuffle per epoch (or the given order),
    so a resumed run sees exactly the batches the uninterrupted run would have seen."""

    def __init__(self, n_examples: int, batch_size: int, seed: int, shuffle: bool = True):
        if n_examples == 0:
            raise DataError("The training set is empty. Fix: check the data set's path and split, and that "
                            "its examples are not all longer than sequence_length.")
        self.n, self.batch_size, self.seed, self.shuffle = n_examples, batch_size, seed, shuffle
        self.per_epoch = max(1, n_examples // batch_size)  # the ragged last batch is dropped
        self._epoch, self._perm = -1, None

    def indices(self, micro_batch: int) -> list[int]:
        epoch, within = divmod(micro_batch, self.per_epoch)
        if epoch != self._epoch and not self.shuffle:
            self._perm, self._epoch = list(range(self.n)), epoch
        elif epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perm, self._epoch = torch.randperm(self.n, generator=generator).tolist(), epoch
        start = within * self.batch_size
        return self._perm[start:start + self.batch_size]


def _enter_training_mode(model, gradient_checkpointing: bool):
    """Train mode, KV cache off, checkpointing as asked; returns a function that undoes it."""
    was_training, use_cache = model.training, getattr(model.config, "use_cache", None)
    # transformers 5 renamed gradient_* to activation_* checkpointing; older releases have only the old names
    new_api = hasattr(model, "activation_checkpointing_enable")
    had_checkpointing = getattr(model, "is_activation_checkpointing" if new_api else "is_gradient_checkpointing", False)
    model.train()
    if use_cache is not None:
        model.config.use_cache = False  # a cache is useless in training and breaks checkpointing
    if gradient_checkpointing and not had_checkpointing:
        # Non-reentrant checkpointing works when the inputs of a block need no gradient (frozen
        # embeddings under LoRA); the reentrant kind drops the adapters' gradients there (torch only warns that
        # "None of the inputs have requires_grad=True").
        if new_api:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def restore():
        model.train(was_training)
        if use_cache is not None:
            model.config.use_cache = use_cache
        if gradient_checkpointing and not had_checkpointing:
            (model.activation_checkpointing_disable if new_api else model.gradient_checkpointing_disable)()

    return restore


def _compile_decoder(model):
    """``torch.compile`` the decoder stack in place (the model's ``.model``); returns the function that undoes it.

    The output head stays outside the compiled graph: the loss hands it only the target rows through a
    forward pre-hook that changes every batch, which a compiled graph would see as a new graph each step."""
    decoder = getattr(model, "model", None)
    if not isinstance(decoder, torch.nn.Module):
        raise SettingsError(f"compile: {type(model).__name__} has no .model decoder to compile.")
    had_own = "forward" in decoder.__dict__  # e.g. accelerate's hooks put an instance forward there
    previous = decoder.__dict__.get("forward")
    decoder.forward = torch.compile(decoder.forward, dynamic=True)

    def undo():
        if had_own:
            decoder.forward = previous
        else:
            del decoder.forward

    return undo


def _join_process_group() -> tuple[int, int]:
    """(rank, world size). Under ``accelerate launch`` or ``torchrun`` (WORLD_SIZE > 1) join the
    process group the launcher set up: gloo on CPU, nccl on CUDA, as accelerate chooses."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        PartialState()
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _wrap_ddp(model, device):
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _global_sum(value, device):
    """``value`` summed over all processes (the window's target tokens, so that every rank divides by the
    same count; the window's loss, so that every rank logs the whole window's, not its share)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], device=device, dtype=torch.float64 if isinstance(value, float) else torch.int64)
    dist.all_reduce(t)
    return type(value)(t.item())


def peak_memory(device) -> int:
    """CUDA: peak bytes allocated by tensors. CPU: the process's peak resident set size."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _reset_peak_memory(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _early_stop(state: dict, eval_loss: float, patience: int | None) -> bool:
    if state["best_eval"] is None or eval_loss < state["best_eval"]:
        state["best_eval"], state["evals_without_gain"] = eval_loss, 0
        return False
    state["evals_without_gain"] += 1
    return patience is not None and state["evals_without_gain"] >= patience


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="training", unit="step", disable=not enabled)
