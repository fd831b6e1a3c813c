"""What the training benchmarks share: the workload (model, data in a fixed order), models that
share their frozen weights, a peak-memory meter per peer, and the FLOPs a step must do.

Memory on CPU: a peer is built and run once in a forked child whose peak resident set is reset
(``/proc/self/clear_refs``) just before training, so each peer's peak is its own and not the
high-water mark of everything the parent did before. The child runs on one thread: GNU OpenMP
cannot start a new thread pool after fork, and memory does not depend on the thread count. On
CUDA the same question is answered in-process by ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import copy
import os
import pickle
import time
from typing import Callable

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the forked children would warn otherwise

import torch  # noqa: E402

# dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, for model FLOPs utilisation
BF16_PEAK = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
             "A10G": 70e12, "T4": 65e12}


def device() -> torch.device:
    from lora_course.models.loading import default_device

    return torch.device(default_device())


def precision() -> str:
    from lora_course.models.hardware import auto_precision

    return auto_precision().precision


def load_base(name: str, quantization: str | None = None):
    """(model, tokenizer). ``config:NAME`` gives random weights in a shipped config's shape (a
    1B-class model without its weights, for throughput only), with the SmolLM2 tokenizer."""
    from lora_course.models import load_config, load_model, tiny_tokenizer

    if name.startswith("config:"):
        from transformers import AutoModelForCausalLM

        if quantization:
            raise ValueError("config: models are random weights; quantize a real checkpoint instead.")
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(load_config(name.removeprefix("config:"))).to(device())
        return model.eval(), tiny_tokenizer()
    return load_model(name, quantization=quantization, device=str(device()), log=lambda *a, **k: None)


def lora_base(name: str, rank: int):
    """(model, tokenizer, initial adapter): the base with LoRA of ``rank`` on the attention projections, seeded
    the same every time, and a copy of the adapter's starting values, so each side of a comparison can start
    from them."""
    from lora_course.lora import LoraSettings, inject_lora

    model, tokenizer = load_base(name)
    model.requires_grad_(False)
    torch.manual_seed(0)
    inject_lora(model, LoraSettings(r=rank, alpha=2 * rank))
    init = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return model, tokenizer, init


def instruction_examples(tokenizer, n: int, sequence_length: int, split: str = "train"):
    """The first ``n`` conversations of the bundled instruction set, tokenized, in file order."""
    from lora_course.data import load_bundled, tokenize_dataset

    examples, _ = tokenize_dataset(load_bundled("instructions", split, limit=n), tokenizer, sequence_length)
    if len(examples) < n:
        raise ValueError(f"Only {len(examples)} examples in instructions/{split}; asked for {n}.")
    return examples


def shared_copy(model):
    """A copy of ``model`` whose parameters and buffers are the original's tensors (frozen weights
    cost their memory once, however many peers wrap them); anything added later is the copy's own."""
    memo = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    return copy.deepcopy(model, memo)


def batches_of(examples, collator, micro_batch_size: int) -> list[dict]:
    return [collator(examples[i:i + micro_batch_size]) for i in range(0, len(examples), micro_batch_size)]


def real_tokens(batches: list[dict]) -> int:
    """Non-padding tokens: what the issue counts as throughput."""
    return sum(int(b["attention_mask"].sum()) for b in batches)


def positions(batches: list[dict]) -> int:
    """Positions the hardware computes, padding included."""
    return sum(b["input_ids"].numel() for b in batches)


# ---------------------------------------------------------------------------------------------- memory

def _status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set (Linux >= 4.0)
        return True
    except OSError:
        return False


def peak_memory(build: Callable[[], Callable[[], object]]) -> dict:
    """Build a peer (untimed, not counted), then run it once and report the peak memory of the run.

    CUDA: tensor bytes, ``max_memory_allocated``. CPU: the peak resident set of a forked child.
    "peak_bytes": the peak; "added_bytes": the peak above what was held once the peer was built
    (what running it adds); "above_parent_bytes": the peak above what was held before building
    (building included: for peers that load their own model)."""
    if torch.cuda.is_available():
        start = torch.cuda.memory_allocated()
        run = build()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return {"meter": "torch.cuda.max_memory_allocated", "peak_bytes": peak, "added_bytes": peak - before,
                "above_parent_bytes": peak - start}
    return _forked(build)


def _forked(build) -> dict:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: build, reset the high-water mark, run, report
        os.close(read)
        try:
            torch.set_num_threads(1)
            start = _status("VmRSS:")
            run = build()
            before = _status("VmRSS:")
            reset = _reset_peak_rss()
            run()
            peak = _status("VmHWM:")
            ok = reset and peak and before and start
            result = {"meter": "peak resident set of a forked child (VmHWM)" if ok else "unavailable",
                      "peak_bytes": peak if ok else None, "added_bytes": peak - before if ok else None,
                      "above_parent_bytes": peak - start if ok else None}
        except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises
            result = {"error": f"{type(e).__name__}: {e}"}
        os.write(write, pickle.dumps(result))
        os.close(write)
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 1 << 16):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    result = pickle.loads(b"".join(chunks)) if chunks else {"error": "the child died without a report"}
    if "error" in result:
        raise RuntimeError(f"memory measurement failed in the child: {result['error']}")
    return result


# ---------------------------------------------------------------------------------------------- FLOPs

# the package's count (lora_course.memory.cost), the same one the book's cost model uses
from lora_course.memory.cost import step_flops  # noqa: E402,F401


def gemm_peak_flops(seconds: float = 1.0) -> dict:
    """The machine's own matmul ceiling: a large fp32 GEMM on CPU (no data sheet applies to a
    shared vCPU), or the data-sheet bf16 peak of the card on CUDA."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        for key, peak in BF16_PEAK.items():  # "H100 PCIe" before "H100": the dict keeps that order
            if key in name:
                return {"flops": peak, "source": f"data sheet, dense bf16 ({key})"}
        return {"flops": None, "source": f"no data-sheet peak known for {name}"}
    a = torch.randn(1024, 1024)
    torch.mm(a, a)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, a)
        n += 1
    elapsed = time.perf_counter() - start
    return {"flops": n * 2 * 1024 ** 3 / elapsed, "source": f"measured fp32 1024^3 GEMM on {torch.get_num_threads()} threads"}
