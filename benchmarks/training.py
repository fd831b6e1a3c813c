"""Training throughput and quality: the package's trainer against TRL's SFTTrainer, the plain
transformers Trainer with PEFT, and a bare PyTorch loop (forward, backward, clip, optimizer step,
nothing else: the practical limit), all over the same PEFT model.

    .venv/bin/python benchmarks/training.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--smoke] [--profile]

Same for every peer: model and adapter initialisation (one set of LoRA weights copied into
each), data and its order (every peer sees the same micro-batches: the bundled instruction set
in file order), micro-batch, accumulation, sequence length, precision, checkpointing setting,
optimizer (AdamW, constant learning rate, clipping at 1.0) and steps. Each round resets the
adapter and starts a fresh optimizer, so every round is the same run and its final loss must
come out the same. Throughput counts real (non-padding) tokens. A fifth peer, the package's
trainer over the package's own LoRA layers, shows what the from-scratch LoRA costs.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (batches_of, device, gemm_peak_flops, instruction_examples, load_base, peak_memory,  # noqa: E402
                    positions, precision, real_tokens, shared_copy, step_flops)
from harness import Peer, base_arguments, markdown_table, ratio, run_interleaved, prepare, timed_cpu, write  # noqa: E402

from lora_course import SMOLLM2  # noqa: E402
from lora_course.data import Collator  # noqa: E402
from lora_course.lora import LoraSettings, get_peft_lora, inject_lora  # noqa: E402
from lora_course.models import TINY  # noqa: E402
from lora_course.models.hardware import autocast  # noqa: E402
from lora_course.train import TrainConfig, evaluate_loss, summed_token_loss, target_tokens, train  # noqa: E402

PEERS = ("package", "trl", "hf_trainer", "bare_same_head", "bare", "package_lora")
DESCRIPTION = {
    "package": "lora_course.train.train over the PEFT model",
    "trl": "trl.SFTTrainer (lora_course.train.trl_route) over the PEFT model",
    "hf_trainer": "transformers.Trainer over the PEFT model, the package's collator",
    "bare_same_head": "the practical limit: a bare PyTorch loop (forward, backward, clip, AdamW step) over the PEFT "
                      "model with the package's loss head (the output head on target positions only)",
    "bare": "plain Hugging Face: a bare PyTorch loop over the PEFT model with the model's own loss (every "
            "position through the output head)",
    "package_lora": "lora_course.train.train over the package's own LoRA layers (inject_lora)",
}


def differs(peer: str, device_type: str) -> str:
    """What differs between the package and ``peer`` besides the loop itself (same data, order, init, optimizer)."""
    text = {
        "trl": "TRL's loss head and its trainer machinery",
        "hf_trainer": "the model's own loss (every position's logits) and the Trainer's machinery",
        "bare_same_head": "only the loop around the same loss (what the package's loop adds: logging, windows, "
                          "checks)",
        "bare": "the loss head: the model's own loss scores every position, the package only target positions",
        "package_lora": "the LoRA layers: the package's own instead of PEFT's",
    }[peer]
    if peer == "trl" and device_type != "cuda":
        text += ("; on a CPU TRL scores every position (its target-only chunked path runs on cuda/xpu only), so "
                 "this ratio measures the loss head and does not carry over to a GPU")
    return text


# The final losses must agree: every peer trains the same adapter on the same batches in the same order.
# fp32 sums in another order differ by rounding; 16-bit autocast rounds more.
LOSS_TOLERANCE = {"fp32": 1e-3, "bf16": 2e-2, "fp16": 2e-2}


class Workload:
    def __init__(self, args):
        self.args = args
        self.base, self.tokenizer = load_base(args.model)
        self.base.requires_grad_(False)
        n = args.steps * args.accumulation * args.micro_batch
        self.examples = instruction_examples(self.tokenizer, n, args.sequence_length)
        self.eval_examples = instruction_examples(self.tokenizer, args.eval_examples, args.sequence_length, "test")
        self.collator = Collator(self.tokenizer.pad_token_id)
        self.batches = [{k: v.to(device()) for k, v in b.items()}
                        for b in batches_of(self.examples, self.collator, args.micro_batch)]
        self.settings = LoraSettings(r=args.rank, alpha=2 * args.rank)
        self.config = TrainConfig(micro_batch_size=args.micro_batch, gradient_accumulation_steps=args.accumulation,
                                  max_steps=args.steps, learning_rate=args.learning_rate, lr_scheduler="constant",
                                  warmup_steps=0, max_grad_norm=1.0, gradient_checkpointing=args.gradient_checkpointing,
                                  precision=precision(), shuffle=False, progress=False, seed=0)
        torch.manual_seed(0)
        self.init = _adapter_weights(get_peft_lora(shared_copy(self.base), self.settings))

    def peft_model(self):
        model = get_peft_lora(shared_copy(self.base), self.settings)
        _load_adapter_weights(model, self.init)
        return model

    def package_lora_model(self):
        model = shared_copy(self.base)
        inject_lora(model, self.settings)
        _load_adapter_weights(model, self.init)
        return model


def _key(name: str) -> str:
    """One name for an adapter weight in both routes: PEFT's 'base_model.model.X.lora_A.default.weight'
    and the package's 'X.lora_A.weight' both become 'X.lora_A.weight'."""
    return name.removeprefix("base_model.model.").replace(".default.", ".")


def _adapter_weights(model) -> dict[str, torch.Tensor]:
    return {_key(n): p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def _load_adapter_weights(model, weights: dict[str, torch.Tensor]) -> None:
    params = {_key(n): p for n, p in model.named_parameters() if p.requires_grad}
    if set(params) != set(weights):
        raise RuntimeError(f"adapter layouts differ: {sorted(set(params) ^ set(weights))[:4]}")
    for name, p in params.items():
        p.copy_(weights[name])


class Runner:
    """One peer: ``fit()`` trains from the shared initial adapter and returns the final loss."""

    def __init__(self, name: str, work: Workload):
        self.name, self.work = name, work
        w, c = work, work.config
        if name in ("package", "package_lora"):
            self.model = w.package_lora_model() if name == "package_lora" else w.peft_model()
            self.fit = lambda: train(self.model, w.examples, w.collator, c, log=None).final_train_loss
        elif name == "trl":
            from lora_course.train.trl_route import sft_trainer

            self.model = w.peft_model()
            self.trainer = sft_trainer(self.model, w.tokenizer, w.examples,
                                       TrainConfig(**{**vars(c), "output_dir": tempfile.mkdtemp(prefix="bench-trl-")}))
            self.fit = self._fit_trainer
        elif name == "hf_trainer":
            self.model = w.peft_model()
            self.trainer = _hf_trainer(self.model, w)
            self.fit = self._fit_trainer
        elif name in ("bare", "bare_same_head"):
            self.model = w.peft_model()
            self.fit = lambda: self._fit_bare(same_head=name == "bare_same_head")
        else:
            raise ValueError(f"unknown peer {name!r}; choose from {PEERS}")
        if hasattr(self, "trainer"):
            self._quiet()

    def reset(self) -> None:
        _load_adapter_weights(self.model, self.work.init)
        if hasattr(self, "trainer"):  # a second .train() would otherwise reuse the first run's optimizer state
            self.trainer.optimizer, self.trainer.lr_scheduler = None, None

    def _quiet(self) -> None:
        from transformers.trainer_callback import PrinterCallback

        self.trainer.remove_callback(PrinterCallback)  # the package's loop prints nothing either

    def _fit_trainer(self) -> float:
        self.trainer.train()
        return [h["loss"] for h in self.trainer.state.log_history if "loss" in h][-1]

    def _fit_bare(self, same_head: bool) -> float:
        w, c = self.work, self.work.config
        model, params = self.model, [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=c.learning_rate, weight_decay=0.0)
        model.train()
        if c.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        scaler = torch.amp.GradScaler(device().type, enabled=c.precision == "fp16")
        for step in range(c.max_steps):
            window = w.batches[step * c.gradient_accumulation_steps:(step + 1) * c.gradient_accumulation_steps]
            n = sum(target_tokens(b["labels"]) for b in window)
            loss_sum = 0.0
            for batch in window:
                with autocast(c.precision, device()):
                    if same_head:
                        loss = summed_token_loss(model, batch) / n
                    else:
                        loss = model(**batch, use_cache=False, num_items_in_batch=n).loss  # summed token loss / n
                scaler.scale(loss).backward()
                loss_sum += loss.item()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        return loss_sum


def _hf_trainer(model, w: Workload):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    c = w.config
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench-hf-"), per_device_train_batch_size=c.micro_batch_size,
        gradient_accumulation_steps=c.gradient_accumulation_steps, max_steps=c.max_steps,
        learning_rate=c.learning_rate, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=c.max_grad_norm, optim="adamw_torch", gradient_checkpointing=c.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if c.gradient_checkpointing else None,
        bf16=c.precision == "bf16", fp16=c.precision == "fp16", use_cpu=device().type == "cpu", seed=c.seed, logging_steps=1,
        save_strategy="no", report_to="none", disable_tqdm=True, train_sampling_strategy="sequential")
    data = Dataset.from_list([e.as_dict() for e in w.examples])
    return Trainer(model=model, args=args, train_dataset=data, data_collator=w.collator)


def peer(runner: Runner, tokens: int) -> Peer:
    def run():
        runner.reset()
        seconds, cpu, loss = timed_cpu(runner.fit)
        return {"seconds": seconds, "tokens_per_s": tokens / seconds, "cpu_seconds": cpu,
                "tokens_per_cpu_s": tokens / cpu, "final_loss": loss}

    return Peer(runner.name, run)


def profile(runner: Runner, out: Path, top: int = 25) -> list[dict]:
    """Where one run's time goes: torch operators by self CPU time (``torch.profiler``)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    runner.reset()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch_profile(activities=activities) as prof:
        runner.fit()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    (out / f"training_profile_{runner.name}.txt").write_text(
        prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top) + "\n")
    return [{"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "share": e.self_cpu_time_total / total,
             "calls": e.count} for e in events[:top]]


def main(argv=None) -> dict:
    parser = base_arguments(__doc__)
    parser.add_argument("--model", default=SMOLLM2, help="a model name, or config:NAME for random weights in that shape")
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per run")
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--accumulation", type=int, default=2)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--eval-examples", type=int, default=64)
    parser.add_argument("--no-memory", action="store_true", help="skip the per-peer memory runs")
    parser.add_argument("--profile", action="store_true", help="also profile one run of each peer (torch.profiler)")
    args = parser.parse_args(argv)
    prepare(args)
    if args.smoke:
        args.model, args.repeats, args.steps, args.micro_batch, args.accumulation = TINY, 1, 2, 2, 2
        args.sequence_length, args.eval_examples = 64, 4
    print(f"training benchmark: {args.model}, peers {', '.join(args.peers)}", flush=True)
    work = Workload(args)
    tokens, computed = real_tokens(work.batches), positions(work.batches)

    memory = {}
    if not args.no_memory:
        for name in args.peers:
            memory[name] = peak_memory(lambda name=name: Runner(name, work).fit)
            print(f"  memory {name}: {_mib(memory[name]['peak_bytes'])} MiB peak, "
                  f"{_mib(memory[name]['added_bytes'])} MiB added by training", flush=True)

    runners = {name: Runner(name, work) for name in args.peers}
    results = run_interleaved([peer(r, tokens) for r in runners.values()], repeats=args.repeats,
                              warmup=0 if args.smoke else 1)
    eval_loss = {name: evaluate_loss(r.model, work.eval_examples, work.collator, args.micro_batch, work.config.precision)
                 for name, r in runners.items()}  # after the last round: every peer's model has trained the same run

    flops = step_flops(runners[args.peers[0]].model, computed, computed / len(work.batches) / args.micro_batch)
    peak = gemm_peak_flops()
    rows, ratios = [], []
    for name, r in results.items():
        seconds = r.median("seconds")
        achieved = flops["total"] / seconds
        rows.append({"peer": name, "tokens_per_s": r.median("tokens_per_s"), "median_s": seconds,
                     "tokens_per_cpu_s": r.median("tokens_per_cpu_s"),
                     "final_loss": r.median("final_loss"), "eval_loss": eval_loss[name],
                     "peak_mib": _mib(memory.get(name, {}).get("peak_bytes")),
                     "added_mib": _mib(memory.get(name, {}).get("added_bytes")),
                     "gflop_per_s": achieved / 1e9,
                     "utilisation": achieved / peak["flops"] if peak["flops"] else None,
                     "loss_spread": max(r.values("final_loss")) - min(r.values("final_loss"))})
    if "package" in results:
        for other in [p for p in args.peers if p != "package"]:
            what = differs(other, device().type)
            ratios.append({**ratio(results, "package", other, "tokens_per_s"), "name": f"tokens/s package / {other}",
                           "differs": what})
            ratios.append({**ratio(results, "package", other, "tokens_per_cpu_s"),
                           "name": f"tokens per CPU-second package / {other}", "differs": what})
        for other in [p for p in args.peers if p != "package" and p in memory]:
            a, b = memory["package"]["added_bytes"], memory[other]["added_bytes"]
            ratios.append({"name": f"memory added by training package / {other}", "ratio": a / b if a and b else None,
                           "min": None, "max": None, "of": f"package / {other}", "key": "added_bytes",
                           "note": "one run each: no spread", "differs": differs(other, device().type)})
    package_loss = results["package"].median("final_loss") if "package" in results else rows[0]["final_loss"]
    tolerance = LOSS_TOLERANCE[work.config.precision]
    gaps = {n: abs(row["final_loss"] - package_loss) / abs(package_loss) for n, row in zip(results, rows)}
    checks = {"same_final_loss_every_round": {n: r["loss_spread"] for n, r in zip(results, rows)},
              "final_loss_relative_gap_vs_package": gaps, "loss_tolerance": tolerance,
              "targets": {"package / bare_same_head tokens/s": ">= 0.97", "package / trl tokens/s (GPU)": ">= 1.0"}}

    profiles = {}
    if args.profile:
        for name, runner in runners.items():
            profiles[name] = profile(runner, args.out)

    table = markdown_table(rows, ["peer", "tokens_per_s", "tokens_per_cpu_s", "median_s", "final_loss", "eval_loss", "peak_mib", "added_mib",
                                  "gflop_per_s", "utilisation"])
    table += "\n\n" + markdown_table([{"ratio": x["name"], "median": x["ratio"], "spread": _spread(x),
                                       "what differs": x.get("differs", "")} for x in ratios],
                                     ["ratio", "median", "spread", "what differs"])
    table += "\n\nFinal loss, relative gap to the package's (enforced <= " + f"{tolerance:g}): " + ", ".join(
        f"{n} {g:.1e}" for n, g in gaps.items()) + "."
    table += (f"\n\n{args.steps} steps x {args.accumulation} micro-batches of {args.micro_batch}, sequence length "
              f"<= {args.sequence_length}, {work.config.precision}, checkpointing "
              f"{'on' if args.gradient_checkpointing else 'off'}, LoRA r={args.rank} on q,k,v,o; {tokens} real tokens "
              f"({computed} positions) per run; {args.repeats} interleaved rounds on {torch.get_num_threads()} "
              f"thread(s). Utilisation: model FLOPs / "
              f"{peak['source']}. Memory: {next(iter(memory.values()))['meter'] if memory else 'not measured'}.\n")
    print(table)
    payload = {"model": args.model, "peers": {p: DESCRIPTION[p] for p in args.peers}, "settings": vars(args) | {"out": str(args.out)},
               "precision": work.config.precision, "real_tokens_per_run": tokens, "positions_per_run": computed,
               "flops_per_run": flops, "peak_flops": peak, "rows": rows, "ratios": ratios, "memory": memory,
               "checks": checks, "profile": profiles, "results": {n: r.rounds for n, r in results.items()}}
    write("training", payload, table, args.out)
    off = {n: g for n, g in gaps.items() if g > tolerance}
    if off:  # written first, so the numbers that failed can be read
        raise SystemExit(f"final losses differ from the package's by more than {tolerance:g} (relative): "
                         + ", ".join(f"{n} {g:.2e}" for n, g in off.items())
                         + ". The peers did not train the same thing; their speed ratios would not compare.")
    return payload


def _mib(n):
    return None if n is None else n / 2**20


def _spread(x: dict) -> str:
    if x.get("min") is None or (isinstance(x["min"], float) and math.isnan(x["min"])):
        return x.get("note", "")
    return f"{x['min']:.3f} .. {x['max']:.3f}"


if __name__ == "__main__":
    main()
