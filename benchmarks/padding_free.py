"""Padding-free batches against padded ones: training tokens/s, peak memory, and the losses, which must agree.

    .venv/bin/python benchmarks/padding_free.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--micro-batch 8]
                                                [--threads 1] [--no-dense]

Every side runs the package's trainer (``lora_course.train.train``) on one model with the package's LoRA,
reset to the same initial adapter every round, over the same examples of the bundled instruction set in
file order, in the same micro-batches, with the same optimizer, steps and precision. What differs is
``padding_free``: each micro-batch padded to its longest example (``Collator``), or laid end to end in
one row with position ids restarting per example (``PaddingFreeCollator``). Throughput counts real tokens,
the same on both sides; the padded side also computes its pad positions. Their ratio, padded positions /
real tokens, is the most padding-free can gain.

The padding-free side attends as the trainer chooses (``models.attention.attention_for_padding_free``):
without flash attention, ``per_example_sdpa``, one causal SDPA call per example. A third side,
``padding_free_dense`` (skip it with ``--no-dense``), keeps the model's own attention over the whole row,
N x N masked to the examples' blocks (transformers' SDPA with its block mask): what per-example attention
saves, more with bigger micro-batches. The eval loss is computed after the last round the same way for
every side (padded batches of the test split), so it compares the trained weights, not the batching.
"""

from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device, instruction_examples, lora_base, peak_memory, precision  # noqa: E402
from harness import Peer, base_arguments, markdown_table, prepare, ratio, run_interleaved, timed_cpu, write  # noqa: E402

from lora_course import SMOLLM2  # noqa: E402
from lora_course.data import Collator  # noqa: E402
from lora_course.models import TINY, attention_for_padding_free  # noqa: E402
from lora_course.models.attention import AttentionChoice  # noqa: E402
from lora_course.train import TrainConfig, evaluate_loss, train  # noqa: E402

# The final training losses must agree: the same sums over the same tokens, added in another order.
LOSS_TOLERANCE = {"fp32": 1e-3, "bf16": 2e-2, "fp16": 2e-2}
EVAL_GOAL = 0.01  # relative eval-loss difference the issue allows
SPEED_GOAL = 1.3  # tokens/s padding-free / padded
SIDES = ("padding_free", "padding_free_dense", "padded")


def _own_attention(model) -> AttentionChoice:
    """The trainer's choice replaced for the dense side: the model's own attention over the whole row."""
    own = model.config._attn_implementation
    return AttentionChoice(own, False, f"{own} kept (benchmark): the whole row, masked to blocks")


class Workload:
    def __init__(self, args):
        self.model, self.tokenizer, self.init = lora_base(args.model, args.rank)
        n = args.steps * args.accumulation * args.micro_batch
        self.examples = instruction_examples(self.tokenizer, n, args.sequence_length)
        self.eval_examples = instruction_examples(self.tokenizer, args.eval_examples, args.sequence_length, "test")
        self.collator = Collator(self.tokenizer.pad_token_id)
        self.precision = precision()
        self.args = args

    def config(self, padding_free: bool) -> TrainConfig:
        a = self.args
        return TrainConfig(micro_batch_size=a.micro_batch, gradient_accumulation_steps=a.accumulation,
                           max_steps=a.steps, learning_rate=a.learning_rate, lr_scheduler="constant",
                           max_grad_norm=1.0, precision=self.precision, padding_free=padding_free, shuffle=False,
                           progress=False, seed=0)

    @torch.no_grad()
    def reset(self) -> None:
        for name, p in self.model.named_parameters():
            if name in self.init:
                p.copy_(self.init[name])

    def fit(self, side: str):
        self.reset()
        if side == "padding_free_dense":
            with mock.patch("lora_course.train.loop.attention_for_padding_free", _own_attention):
                return train(self.model, self.examples, self.collator, self.config(True), log=None)
        return train(self.model, self.examples, self.collator, self.config(side == "padding_free"), log=None)

    def attention(self, side: str) -> str:
        own = self.model.config._attn_implementation
        return attention_for_padding_free(self.model).implementation if side == "padding_free" else own

    def positions(self) -> dict:
        """Real tokens and the positions each side computes, over the run's micro-batches."""
        a, real, padded = self.args, 0, 0
        for i in range(0, len(self.examples), a.micro_batch):
            lengths = [len(e.input_ids) for e in self.examples[i:i + a.micro_batch]]
            real, padded = real + sum(lengths), padded + max(lengths) * len(lengths)
        return {"real_tokens": real, "padded_positions": padded}


def peer(work: Workload, name: str) -> Peer:
    def run():
        seconds, cpu, result = timed_cpu(lambda: work.fit(name))
        return {"seconds": seconds, "cpu_seconds": cpu, "tokens_per_s": result.input_tokens / seconds,
                "tokens_per_cpu_s": result.input_tokens / cpu, "final_loss": result.final_train_loss,
                "tokens": result.input_tokens}

    return Peer(name, run)


def main(argv=None) -> dict:
    parser = base_arguments(__doc__)
    parser.add_argument("--model", default=SMOLLM2, help="a model name, or config:NAME for random weights in that shape")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per run")
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--accumulation", type=int, default=2)
    parser.add_argument("--sequence-length", type=int, default=256)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--eval-examples", type=int, default=64)
    parser.add_argument("--no-memory", action="store_true", help="skip the per-side memory runs")
    parser.add_argument("--no-dense", action="store_true", help="skip the padding-free side with the dense block mask")
    args = prepare(parser.parse_args(argv))
    if args.smoke:
        args.model, args.repeats, args.steps, args.micro_batch, args.accumulation = TINY, 1, 2, 4, 2
        args.eval_examples = 8
    print(f"padding-free benchmark: {args.model}, micro-batch {args.micro_batch}", flush=True)
    work = Workload(args)
    sides = [s for s in SIDES if not (args.no_dense and s == "padding_free_dense")]
    attention = {side: work.attention(side) for side in sides}
    counts = work.positions()
    ceiling = counts["padded_positions"] / counts["real_tokens"]

    memory = {}
    if not args.no_memory:
        for name in sides:
            memory[name] = peak_memory(lambda name=name: (lambda: work.fit(name)))
            print(f"  memory {name}: {memory[name]['added_bytes'] / 2**20:,.0f} MiB added by training", flush=True)

    results = run_interleaved([peer(work, name) for name in sides], repeats=args.repeats,
                              warmup=0 if args.smoke else 1)
    eval_loss = {}
    for name in sides:  # every round trains the same run, so one more gives each side's trained weights
        work.fit(name)
        eval_loss[name] = evaluate_loss(work.model, work.eval_examples, work.collator, args.micro_batch, work.precision)

    tolerance = LOSS_TOLERANCE[work.precision]
    losses = {n: r.median("final_loss") for n, r in results.items()}
    train_gap = {n: abs(losses[n] - losses["padded"]) / abs(losses["padded"]) for n in sides if n != "padded"}
    eval_gap = {n: abs(eval_loss[n] - eval_loss["padded"]) / abs(eval_loss["padded"]) for n in sides if n != "padded"}
    same = (f"the same model, adapter init, examples, micro-batches of {args.micro_batch}, optimizer and steps "
            f"({work.precision})")
    differs = {"padding_free": f"padded to the longest example ({attention['padded']}) vs one row without padding "
                               f"attended per example ({attention['padding_free']}); {same}",
               "padding_free_dense": f"padded to the longest example vs one row without padding attended whole, "
                                     f"masked to blocks ({attention.get('padding_free_dense')}); {same}"}
    label = {"padding_free": "padding-free", "padding_free_dense": "padding-free dense block mask"}
    ratios = []
    for name in (n for n in sides if n != "padded"):
        goal = {"note": f"goal >= {SPEED_GOAL}; ceiling (padded positions / real tokens) {ceiling:.3f}"}
        ratios += [{**ratio(results, name, "padded", "tokens_per_s"), "name": f"tokens/s {label[name]} / padded",
                    "differs": differs[name], **(goal if name == "padding_free" else {})},
                   {**ratio(results, name, "padded", "tokens_per_cpu_s"),
                    "name": f"tokens per CPU-second {label[name]} / padded", "differs": differs[name]}]
    if "padding_free_dense" in sides:
        ratios.append({**ratio(results, "padding_free", "padding_free_dense", "tokens_per_cpu_s"),
                       "name": "tokens per CPU-second per-example / dense block mask (both padding-free)",
                       "differs": f"only the attention: {attention['padding_free']} vs {attention['padding_free_dense']} "
                                  "over the examples' blocks"})
    for name in (n for n in sides if n != "padded") if memory else ():
        a, b = memory[name]["added_bytes"], memory["padded"]["added_bytes"]
        ratios.append({"name": f"memory added by training {label[name]} / padded", "ratio": a / b if a and b else None,
                       "min": None, "max": None, "note": f"{memory['padded']['meter']}, one run each",
                       "differs": differs[name]})
    for name in (n for n in sides if n != "padded"):
        ratios.append({"name": f"eval loss {label[name]} / padded", "ratio": eval_loss[name] / eval_loss["padded"],
                       "min": None, "max": None, "note": f"goal within {EVAL_GOAL:.0%}", "differs": differs[name]})
    rows = [{"side": n, "attention": attention[n], "tokens_per_s": r.median("tokens_per_s"),
             "tokens_per_cpu_s": r.median("tokens_per_cpu_s"), "median_s": r.median("seconds"),
             "final_loss": losses[n], "eval_loss": eval_loss[n],
             "added_mib": memory[n]["added_bytes"] / 2**20 if memory else None} for n, r in results.items()]
    table = markdown_table(rows, ["side", "attention", "tokens_per_s", "tokens_per_cpu_s", "median_s", "final_loss",
                                  "eval_loss", "added_mib"])
    table += "\n\n" + markdown_table(
        [{"ratio": x["name"], "median": x["ratio"], "spread": _spread(x), "what differs": x["differs"]} for x in ratios],
        ["ratio", "median", "spread", "what differs"])
    gaps = "; ".join(f"{label[n]}: final train loss relative gap {train_gap[n]:.1e}, eval loss {eval_gap[n]:.1e}"
                     for n in train_gap)
    table += (f"\n\nWhat differs: {differs['padding_free']}. Against the padded run ({gaps}; enforced: train <= "
              f"{tolerance:g}, eval <= {EVAL_GOAL:g}). {counts['real_tokens']} real tokens, "
              f"{counts['padded_positions']} padded positions per run (the most padding-free can gain: {ceiling:.3f}x); "
              f"{args.steps} steps x {args.accumulation} x {args.micro_batch}, LoRA r={args.rank} on q,k,v,o; "
              f"{args.repeats} interleaved rounds on {torch.get_num_threads()} thread(s), {device().type}.\n")
    print(table)
    payload = {"model": args.model, "attention": attention, "precision": work.precision,
               "settings": vars(args) | {"out": str(args.out)}, "positions": counts, "ceiling": ceiling,
               "memory": memory, "rows": rows, "ratios": ratios, "results": {n: r.rounds for n, r in results.items()},
               "checks": {"train_loss_relative_gap": train_gap["padding_free"], "train_loss_tolerance": tolerance,
                          "eval_loss_relative_gap": eval_gap["padding_free"], "eval_loss_goal": EVAL_GOAL,
                          "speed_goal": SPEED_GOAL, "dense_train_loss_relative_gap": train_gap.get("padding_free_dense"),
                          "dense_eval_loss_relative_gap": eval_gap.get("padding_free_dense")}}
    write("padding_free", payload, table, args.out)
    failed = {n: (train_gap[n], eval_gap[n]) for n in train_gap if train_gap[n] > tolerance or eval_gap[n] > EVAL_GOAL}
    if failed:  # written first, so the numbers that failed can be read
        raise SystemExit("padding-free and padded runs ended at different losses ("
                         + "; ".join(f"{label[n]}: train gap {t:.2e}, eval gap {e:.2e}" for n, (t, e) in failed.items())
                         + f"; tolerance {tolerance:g}, eval goal {EVAL_GOAL:g}): they did not train the same thing, "
                           "so their speeds do not compare")
    return payload


def _spread(x: dict) -> str:
    spread = f"{x['min']:.3f} .. {x['max']:.3f}" if x.get("min") is not None else ""
    return "; ".join(s for s in (spread, x.get("note", "")) if s)


if __name__ == "__main__":
    main()
