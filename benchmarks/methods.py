"""Fine-tuning methods side by side through the package's trainer: full, LoRA, QLoRA. Used by
lora_vs_full.py and qlora_vs_lora.py; each method trains the same data, in the same order, with
the same micro-batch, sequence length, precision and checkpointing setting.

Step time is a run's time over its steps, on the wall clock and in CPU time (on a shared machine
with one thread, the CPU time is the clean measure of work). Memory comes two ways: the package's
exact tensor accounting of one step (weights, gradients, optimizer states, activations, logits:
``lora_course.memory.measure_step``) and, on CPU, the peak resident set of a forked child that
loads the model and trains it (what the operating system sees, allocator and runtime included),
counted above what the parent held when it forked.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (batches_of, device, instruction_examples, load_base, peak_memory, positions,  # noqa: E402
                    precision, real_tokens, step_flops)
from harness import Peer, markdown_table, ratio, run_interleaved, timed_cpu  # noqa: E402

from lora_course.data import Collator  # noqa: E402
from lora_course.lora import ATTENTION, LoraSettings, quantization_for  # noqa: E402
from lora_course.memory import COMPONENTS  # noqa: E402
from lora_course.memory.measure import measure_step  # noqa: E402
from lora_course.recipes import make_trainable  # noqa: E402
from lora_course.train import TrainConfig, train  # noqa: E402


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per run")
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--targets", default=",".join(ATTENTION), help="LoRA target modules, or all-linear")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--no-memory", action="store_true")


def smoke(args) -> None:
    from lora_course.models import TINY

    args.model, args.repeats, args.steps, args.micro_batch, args.sequence_length = TINY, 1, 2, 2, 64


def build(method: str, args):
    """(model, tokenizer) ready to train by ``method``: loaded here (``config:`` models too), made trainable
    by the recipes' one preparation step."""
    model, tokenizer = load_base(args.model, quantization=quantization_for(method))
    make_trainable(model, method, LoraSettings(r=args.rank, alpha=2 * args.rank, target_modules=args.targets))
    return model, tokenizer


class Method:
    def __init__(self, name: str, args, examples, collator):
        self.name, self.args, self.examples, self.collator = name, args, examples, collator
        self.model, _ = build(name, args)
        self.init = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        self.config = TrainConfig(micro_batch_size=args.micro_batch, max_steps=args.steps, learning_rate=1e-4,
                                  lr_scheduler="constant", max_grad_norm=1.0, precision=precision(), shuffle=False,
                                  gradient_checkpointing=args.gradient_checkpointing, progress=False)

    @torch.no_grad()
    def reset(self) -> None:
        for n, p in self.model.named_parameters():
            if n in self.init:
                p.copy_(self.init[n])

    def fit(self):
        return train(self.model, self.examples, self.collator, self.config, log=None)

    def peer(self, tokens: int) -> Peer:
        def run():
            self.reset()
            seconds, cpu, result = timed_cpu(self.fit)
            steps = result.steps
            return {"step_s": seconds / steps, "cpu_step_s": cpu / steps, "first_step_s": result.history[0]["elapsed_s"],
                    "tokens_per_s": tokens / seconds, "final_loss": result.final_train_loss}

        return Peer(self.name, run)


def compare(methods: list[str], args) -> dict:
    """Memory (forked, before anything big lives in this process), then interleaved timing."""
    tokenizer = load_base(args.model)[1] if args.model.startswith("config:") else _tokenizer(args.model)
    n = args.steps * args.micro_batch
    examples = instruction_examples(tokenizer, n, args.sequence_length)
    collator = Collator(tokenizer.pad_token_id)
    batches = batches_of(examples, collator, args.micro_batch)
    tokens, computed = real_tokens(batches), positions(batches)

    process = {}
    if not args.no_memory:
        for name in methods:
            process[name] = peak_memory(lambda name=name: _load_and_train(name, args, examples, collator))
            print(f"  memory {name}: {_mib(process[name].get('above_parent_bytes'))} MiB above the parent", flush=True)

    peers = {name: Method(name, args, examples, collator) for name in methods}
    meter = {}
    for name, m in peers.items():  # exact tensor accounting of one step on the same model (then reset)
        breakdown = measure_step(m.model, examples, collator, args.micro_batch, args.gradient_checkpointing,
                                 precision=precision())
        meter[name] = {c: getattr(breakdown, c) for c in COMPONENTS if c != "overhead"} | {"tensors": breakdown.tensors}
        if breakdown.cuda_peak is not None:
            meter[name]["cuda_peak"] = breakdown.cuda_peak
    flops = {name: step_flops(m.model, computed // args.steps, computed / len(batches) / args.micro_batch)
             for name, m in peers.items()}
    results = run_interleaved([m.peer(tokens) for m in peers.values()], repeats=args.repeats,
                              warmup=0 if args.smoke else 1)
    del peers
    gc.collect()
    return {"results": results, "meter": meter, "process": process, "flops": flops, "tokens": tokens,
            "positions": computed}


def _tokenizer(name: str):
    from lora_course.models import load_tokenizer

    return load_tokenizer(name, log=lambda *a, **k: None)


def _load_and_train(name, args, examples, collator):
    """Run in the forked child: the load is part of what is measured, so the build happens inside the run."""
    def run():
        method = Method(name, args, examples, collator)
        method.fit()

    return run


def tables(methods: list[str], out: dict, pairs: list[tuple[str, str]]) -> tuple[list[dict], list[dict], str]:
    results, meter, process, flops = out["results"], out["meter"], out["process"], out["flops"]
    rows = []
    for name in methods:
        r = results[name]
        rows.append({"method": name, "step_s": r.median("step_s"), "cpu_step_s": r.median("cpu_step_s"),
                     "first_step_s": r.median("first_step_s"),
                     "tokens_per_s": r.median("tokens_per_s"), "final_loss": r.median("final_loss"),
                     "tensors_mib": meter[name]["tensors"] / 2**20,
                     "process_mib": _mib(process.get(name, {}).get("above_parent_bytes")),
                     "step_gflop": flops[name]["total"] / 1e9,
                     "optimizer_elements": flops[name]["optimizer_elements"]})
    ratios = []
    for num, den in pairs:
        what = differs(num, den)
        ratios.append({**ratio(results, num, den, "step_s"), "name": f"step time {num} / {den}", "differs": what})
        ratios.append({**ratio(results, num, den, "cpu_step_s"), "name": f"CPU time per step {num} / {den}",
                       "differs": what})
        ratios.append({"name": f"tensor memory {num} / {den}", "ratio": meter[num]["tensors"] / meter[den]["tensors"],
                       "min": None, "max": None, "note": "exact accounting, deterministic", "differs": what})
        if process:
            a, b = process[num]["above_parent_bytes"], process[den]["above_parent_bytes"]
            ratios.append({"name": f"process memory {num} / {den}", "ratio": a / b if a and b else None,
                           "min": None, "max": None, "note": "one run each", "differs": what})
        ratios.append({"name": f"step FLOPs {num} / {den}", "ratio": flops[num]["total"] / flops[den]["total"],
                       "min": None, "max": None, "note": "analytic", "differs": what})
    table = markdown_table(rows, list(rows[0]))
    breakdown = [{"method": n, **{c: v / 2**20 for c, v in meter[n].items()}} for n in methods]
    table += "\n\nExact tensor accounting of one step, MiB:\n\n" + markdown_table(breakdown, list(breakdown[0]))
    table += "\n\n" + markdown_table([{"ratio": x["name"], "median": x["ratio"], "spread": spread(x)} for x in ratios],
                                     ["ratio", "median", "spread"])
    return rows, ratios, table


def differs(num: str, den: str) -> str:
    """What differs between two methods' runs (same data, order, micro-batch, precision, optimizer)."""
    what = {("full", "lora"): "what trains: every weight vs LoRA adapters on the attention projections",
            ("qlora", "lora"): "the base's storage: NF4 dequantized for each matmul vs fp32"}.get((num, den), f"{num} vs {den}")
    if "qlora" in (num, den) and device().type != "cuda":
        what += ("; on a CPU bitsandbytes runs its built-in fallback for 4-bit matmuls (no CPU kernel loaded): "
                 "a CPU handicap, not QLoRA's cost on a GPU")
    return what


def spread(x: dict) -> str:
    return f"{x['min']:.3f} .. {x['max']:.3f}" if x.get("min") is not None else x.get("note", "")


def _mib(n):
    return None if n is None else n / 2**20


def describe_setup(args, out) -> str:
    return (f"{args.model}; {args.steps} steps of micro-batch {args.micro_batch} (no accumulation), sequence length "
            f"<= {args.sequence_length}, {precision()} on {device().type}, checkpointing "
            f"{'on' if args.gradient_checkpointing else 'off'}, AdamW; LoRA r={args.rank} on {args.targets}; "
            f"{out['tokens']} real tokens ({out['positions']} positions) per run; {args.repeats} interleaved rounds on "
            f"{torch.get_num_threads()} thread(s).")
