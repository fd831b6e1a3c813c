"""Execution profiles: one switch that decides how big every chapter's run is.

``LORA_COURSE_PROFILE`` picks one of three:

* ``fast``: the tiny random Llama and a handful of steps. For CI: every cell still runs,
  the numbers mean nothing.
* ``cpu``:  the real SmolLM2-135M-Instruct (offline copy), small step counts; a chapter
  takes minutes on two cores.
* ``gpu``:  SmolLM2 from the hub plus a bigger model for QLoRA, real step counts and data sets.

Unset, it is ``gpu`` where CUDA is available and ``cpu`` elsewhere. A chapter reads everything
size-related from ``current_profile()`` and uses ``profile.pick(...)`` for its own numbers, so a
build in one profile never needs a different notebook.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from lora_course import SMOLLM2
from lora_course.errors import SettingsError
from lora_course.models import TINY

ENV_VAR = "LORA_COURSE_PROFILE"
NAMES = ("fast", "cpu", "gpu")
# The gpu profile's model for QLoRA and scaling: ungated, so it loads on a fresh Colab runtime with no
# login, and the seeds' own model (PEFT with LoRA on Qwen2.5-3B). LARGE_MODEL_VAR picks another.
LARGE_MODEL = "Qwen/Qwen2.5-3B-Instruct"
LARGE_MODEL_VAR = "LORA_COURSE_LARGE_MODEL"
# Models behind a license click on the hub: they load only for a logged-in account that accepted it.
GATED_PREFIXES = ("meta-llama/", "google/gemma", "mistralai/")


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    model: str  # the model chapters load, inject into and train
    large_model: str  # the model of the QLoRA / scaling chapters (the same as ``model`` off the GPU)
    device: str
    train_steps: int  # optimizer steps of a chapter's training run
    seq_len: int  # maximum tokens per example
    batch_size: int  # examples per micro-batch
    grad_accum: int  # micro-batches per optimizer step
    eval_examples: int  # held-out examples an evaluation looks at
    use_hub: bool  # whether chapters may download models and data sets from the hub

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.grad_accum

    def pick(self, *, fast: Any, cpu: Any, gpu: Any = dataclasses.MISSING) -> Any:
        """A chapter's own number for this profile, e.g. ``profile.pick(fast=2, cpu=20, gpu=200)``.

        Left out, ``gpu`` takes the ``cpu`` value: most chapter numbers only shrink for CI.
        """
        if self.name == "fast":
            return fast
        if self.name == "cpu" or gpu is dataclasses.MISSING:
            return cpu
        return gpu

    def __str__(self) -> str:
        text = (f"profile {self.name!r}: {self.model} on {self.device}\n"
                f"  {self.train_steps} steps of {self.batch_size}x{self.grad_accum} examples, "
                f"seq_len {self.seq_len}, {self.eval_examples} eval examples")
        if self.large_model != self.model:
            text += f"\n  large model (QLoRA chapters): {self.large_model}"
        if gated(self.large_model):
            text += f"\n  note: {login_note(self.large_model)}"
        return text


def gated(model: str) -> bool:
    return model.startswith(GATED_PREFIXES)


def login_note(model: str) -> str:
    return (f"{model} is gated on the Hugging Face hub: accept its license on the model's page with your account, "
            "then log in here (from huggingface_hub import login; login()) before a chapter loads it; or unset "
            f"{LARGE_MODEL_VAR} to use {LARGE_MODEL}, which needs no login.")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def profile(name: str) -> Profile:
    """The profile called ``name`` (one of ``fast``, ``cpu``, ``gpu``)."""
    if name == "fast":
        return Profile(name="fast", model=TINY, large_model=TINY, device="cpu", train_steps=3, seq_len=64,
                       batch_size=2, grad_accum=2, eval_examples=4, use_hub=False)
    if name == "cpu":
        return Profile(name="cpu", model=SMOLLM2, large_model=SMOLLM2, device="cpu", train_steps=30, seq_len=256,
                       batch_size=4, grad_accum=2, eval_examples=32, use_hub=False)
    if name == "gpu":
        large = os.environ.get(LARGE_MODEL_VAR, "").strip() or LARGE_MODEL
        return Profile(name="gpu", model=SMOLLM2, large_model=large, device="cuda", train_steps=300,
                       seq_len=1024, batch_size=8, grad_accum=4, eval_examples=200, use_hub=True)
    raise SettingsError(f"Unknown execution profile {name!r}. Fix: set {ENV_VAR} to one of {', '.join(NAMES)} "
                     "(or unset it for the default: gpu with CUDA, else cpu).")


def current_profile() -> Profile:
    """The profile named by ``LORA_COURSE_PROFILE``; unset or empty: ``gpu`` with CUDA, else ``cpu``."""
    name = os.environ.get(ENV_VAR, "").strip().lower()
    if not name:
        name = "gpu" if _cuda_available() else "cpu"
    chosen = profile(name)
    if chosen.name == "gpu" and not _cuda_available():
        raise SettingsError(f"{ENV_VAR}=gpu but this machine has no CUDA device. "
                         "Fix: use LORA_COURSE_PROFILE=cpu (or fast), or run on a GPU machine.")
    return chosen
