"""Checkpoints that know the run they belong to.

A checkpoint holds the trainable tensors, the optimizer and scheduler, the loop's counters, the
random states, and the *run signature*: the training settings, a hash of the tokenized training
data, the names and shapes of the trainable tensors, and the caller's whole configuration. Resuming
compares the signature with the run being started. A difference (another micro-batch size, other
data, another sequence length, another LoRA rank) would continue on other batches than the
interrupted run would have seen, silently; so it is refused with every difference listed, unless
the user names the keys that are safe to change (``max_steps``, say) in ``allow_changes``.

Checkpoints are ``<output_dir>/checkpoints/step-000050.pt``; the newest ``save_total_limit`` are kept
(axolotl's and Hugging Face's key; None keeps them all).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch

from lora_course.errors import OutputExistsError, ResumeError

CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
# Keys a resumed run may change when the user says so: they decide how long the run goes on and how
# often it evaluates or saves, never which batch comes next or what the model is.
SAFE_TO_CHANGE = ("max_steps", "num_epochs", "eval_steps", "save_steps", "save_total_limit",
                  "early_stopping_patience",
                  # memory and speed settings: the same batches and the same sums, computed another way
                  "gradient_checkpointing", "loss_chunk_rows", "compile",
                  # the same examples in the same micro-batches (the batch order does not depend on it), the
                  # same target tokens and summed loss (tests/test_train.py); only the pad positions go
                  "padding_free")
_FINGERPRINTED = ("input_ids", "labels", "position_ids")  # what a batch is made of; other keys are the caller's
# Not part of a run's identity: where it is written and whether a progress bar shows.
_RUNTIME_ONLY = ("output_dir", "progress")


def data_fingerprint(examples) -> str:
    """A hash of the tokenized examples (every id and label, in order)."""
    digest = hashlib.sha256()
    for example in examples:
        example = example.as_dict() if hasattr(example, "as_dict") else example  # data.Example or a plain dict
        for key in (k for k in _FINGERPRINTED if k in example):
            digest.update(key.encode())
            digest.update(np.asarray(example[key], dtype=np.int64).tobytes())
    return digest.hexdigest()


def run_signature(train_config, examples, model, run_config: dict | None = None, world_size: int = 1) -> dict:
    """What must stay the same for a resumed run to see the batches the interrupted one would have
    (the number of processes too: each step takes accumulation x processes micro-batches)."""
    settings = {k: v for k, v in dataclasses.asdict(train_config).items() if k not in _RUNTIME_ONLY}
    settings["world_size"] = world_size
    trainable = {n: list(p.shape) for n, p in model.named_parameters() if p.requires_grad}
    signature = {"train": settings, "data_sha256": data_fingerprint(examples), "trainable": trainable}
    if run_config is not None:
        signature["config"] = {k: v for k, v in run_config.items() if k not in _RUNTIME_ONLY}
    return json.loads(json.dumps(signature, default=str))  # plain JSON types, as it comes back from disk


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        flat = {}
        for k, v in value.items():
            flat.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return flat
    return {prefix: value}


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def check_resume(saved: dict | None, current: dict, allow_changes=()) -> list[str]:
    """The differences between the checkpoint's run and this one that ``allow_changes`` permits;
    raises ``ResumeError`` listing the others."""
    allow = set(allow_changes)
    unsafe_asked = sorted(allow - set(SAFE_TO_CHANGE))
    if unsafe_asked:
        raise ResumeError(f"{', '.join(unsafe_asked)} cannot be changed when resuming (they change which batches come "
                          f"next or what is trained). Keys that can: {', '.join(SAFE_TO_CHANGE)}.")
    if saved is None:  # written before checkpoints carried their run: nothing to compare
        return []
    old, new = _flatten(saved), _flatten(current)
    differences = []
    for key in sorted(set(old) | set(new)):
        if key.startswith("trainable.") and (key in old) != (key in new):
            continue  # reported once below, as a count
        if old.get(key, "<absent>") != new.get(key, "<absent>"):
            differences.append(key)
    trainable_changed = set(saved.get("trainable", {})) != set(current.get("trainable", {}))
    allowed = [k for k in differences if k.rsplit(".", 1)[-1] in allow]
    refused = [k for k in differences if k not in allowed]
    lines = [f"{k}: {_short(old.get(k, '<absent>'))} in the checkpoint, {_short(new.get(k, '<absent>'))} now"
             for k in refused if k != "data_sha256"]
    if "data_sha256" in refused:
        lines.append("the tokenized training data differ (another data set, split, sequence length or tokenizer)")
    if trainable_changed:
        lines.append(f"the trainable tensors differ ({len(saved.get('trainable', {}))} in the checkpoint, "
                     f"{len(current.get('trainable', {}))} now: another adapter setup or method)")
    if lines:
        safe = sorted({k.rsplit(".", 1)[-1] for k in refused} & set(SAFE_TO_CHANGE))
        fix = ("Fix: resume with the configuration the checkpoint was written with, or start a new run in another "
               "output_dir")
        if safe:
            fix += f"; to change {', '.join(safe)} on purpose, allow it (--allow-change {' --allow-change '.join(safe)})"
        raise ResumeError("The checkpoint was written by a different run, so resuming would train on other batches "
                          "than the interrupted run:\n" + "\n".join(f"  - {line}" for line in lines) + f"\n{fix}.")
    return allowed


def checkpoint_paths(out: Path | None) -> list[Path]:
    """Saved checkpoints, oldest first."""
    folder = Path(out) / CHECKPOINTS if out else None
    if folder is None or not folder.is_dir():
        return []
    return sorted(folder.glob("step-*.pt"))


def save_checkpoint(out: Path, model, optimizer, scheduler, state: dict, signature: dict,
                    keep: int | None = None, scaler=None) -> Path:
    folder = Path(out) / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "trainable": {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad},
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "state": state, "run": signature,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }
    path = folder / f"step-{state['step']:06d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # a crash while saving leaves the previous checkpoints intact
    if keep is not None:
        for old in checkpoint_paths(out)[:-keep]:
            old.unlink()
    return path


def load_checkpoint(out: Path | None, model, optimizer, scheduler, state: dict, signature: dict,
                    allow_changes=(), log=print, scaler=None) -> Path:
    """Restore the newest checkpoint in ``out`` into the given objects (after checking it is this run's)."""
    paths = checkpoint_paths(out)
    if not paths:
        old = " (a checkpoint.pt from an older lora-course cannot be resumed by this one)" if (
            out and (Path(out) / "checkpoint.pt").is_file()) else ""
        raise ResumeError(f"Nothing to resume: no checkpoint in {Path(out) / CHECKPOINTS if out else 'output_dir'}{old}. "
                          "Fix: start without --resume (or set save_steps so that runs leave checkpoints).")
    path = paths[-1]
    payload = torch.load(path, map_location="cpu", weights_only=False)
    allowed = check_resume(payload.get("run"), signature, allow_changes)
    params = dict(model.named_parameters())
    missing = set(payload["trainable"]) - set(params)
    if missing:
        raise ResumeError(f"The checkpoint {path} belongs to another model setup ({len(missing)} tensors have no "
                          "place here). Fix: resume with the configuration it was trained with.")
    with torch.no_grad():
        for name, value in payload["trainable"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    if scaler is not None and payload.get("scaler"):
        scaler.load_state_dict(payload["scaler"])  # fp16's loss scale, as the interrupted run had tuned it
    state.update(payload["state"])
    torch.set_rng_state(payload["rng"]["torch"])
    random.setstate(payload["rng"]["python"])
    if payload["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
    changed = f" (changed on purpose: {', '.join(allowed)})" if allowed else ""
    log(f"resumed from {path} at step {state['step']}{changed}")
    return path


def refuse_to_overwrite(out: Path) -> None:
    """A fresh run into a folder that holds another run's checkpoints would prune them, or mix with them
    on a later resume: refuse, before anything is written."""
    found = checkpoint_paths(out)
    if found:
        raise OutputExistsError(f"{Path(out)} holds checkpoints of an earlier run ({found[-1].name} and "
                                f"{len(found) - 1} more). Fix: continue it with --resume, choose another output_dir, "
                                f"or delete {Path(out) / CHECKPOINTS} to start over.")


def truncate_metrics(out: Path, step: int) -> int:
    """Drop the logged steps after ``step`` (the crash came after the last checkpoint, and the resumed
    run logs them again). Returns how many lines were dropped."""
    path = Path(out) / METRICS
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    path.write_text("".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):  # a line cut short by the crash, or not a step record
        return None


def append_metrics(out: Path | None, record: dict) -> None:
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")
