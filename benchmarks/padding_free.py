"""Padding-free batches against padded ones: training tokens/s, peak memory, and the losses, which must agree.

    .venv/bin/python benchmarks/padding_free.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--micro-batch 8]

Both sides run the package's trainer (``lora_course.train.train``) on one model with the package's LoRA,
reset to the same initial adapter every round, over the same examples of the bundled instruction set in
file order, in the same micro-batches, with the same optimizer, steps and precision. The only difference
is ``padding_free``: each micro-batch padded to its longest example (``Collator``), or laid end to end in
one row with position ids restarting per example (``PaddingFreeCollator``). Throughput counts real tokens,
the same on both sides; the padded side also computes its pad positions. Their ratio, padded positions /
real tokens, is the most padding-free can gain; the attention of SDPA and eager over the whole row
(N x N, masked to blocks) is what it can lose, more with bigger micro-batches. The eval loss is computed
after the last round the same way for both (padded batches of the test split), so it compares the
trained weights, not the batching.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device, instruction_examples, lora_base, peak_memory, precision  # noqa: E402
from harness import Peer, base_arguments, markdown_table, prepare, ratio, run_interleaved, timed_cpu, write  # noqa: E402

from lora_course import SMOLLM2  # noqa: E402
from lora_course.data import Collator  # noqa: E402
from lora_course.models import TINY  # noqa: E402
from lora_course.train import TrainConfig, evaluate_loss, train  # noqa: E402

# The final training losses must agree: the same sums over the same tokens, added in another order.
LOSS_TOLERANCE = {"fp32": 1e-3, "bf16": 2e-2, "fp16": 2e-2}
EVAL_GOAL = 0.01  # relative eval-loss difference the issue allows
SPEED_GOAL = 1.3  # tokens/s padding-free / padded
SIDES = {"padding_free": True, "padded": False}


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

    def fit(self, padding_free: bool):
        self.reset()
        return train(self.model, self.examples, self.collator, self.config(padding_free), log=None)

    def positions(self) -> dict:
        """Real tokens and the positions each side computes, over the run's micro-batches."""
        a, real, padded = self.args, 0, 0
        for i in range(0, len(self.examples), a.micro_batch):
            lengths = [len(e.input_ids) for e in self.examples[i:i + a.micro_batch]]
            real, padded = real + sum(lengths), padded + max(lengths) * len(lengths)
        return {"real_tokens": real, "padded_positions": padded}


def peer(work: Workload, name: str) -> Peer:
    def run():
        seconds, cpu, result = timed_cpu(lambda: work.fit(SIDES[name]))
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
    args = prepare(parser.parse_args(argv))
    if args.smoke:
        args.model, args.repeats, args.steps, args.micro_batch, args.accumulation = TINY, 1, 2, 4, 2
        args.eval_examples = 8
    print(f"padding-free benchmark: {args.model}, micro-batch {args.micro_batch}", flush=True)
    work = Workload(args)
    attention = getattr(work.model.config, "_attn_implementation", "?")
    counts = work.positions()
    ceiling = counts["padded_positions"] / counts["real_tokens"]

    memory = {}
    if not args.no_memory:
        for name in SIDES:
            memory[name] = peak_memory(lambda name=name: (lambda: work.fit(SIDES[name])))
            print(f"  memory {name}: {memory[name]['added_bytes'] / 2**20:,.0f} MiB added by training", flush=True)

    results = run_interleaved([peer(work, name) for name in SIDES], repeats=args.repeats,
                              warmup=0 if args.smoke else 1)
    eval_loss = {}
    for name in SIDES:  # every round trains the same run, so one more gives each side's trained weights
        work.fit(SIDES[name])
        eval_loss[name] = evaluate_loss(work.model, work.eval_examples, work.collator, args.micro_batch, work.precision)

    tolerance = LOSS_TOLERANCE[work.precision]
    losses = {n: r.median("final_loss") for n, r in results.items()}
    train_gap = abs(losses["padding_free"] - losses["padded"]) / abs(losses["padded"])
    eval_gap = abs(eval_loss["padding_free"] - eval_loss["padded"]) / abs(eval_loss["padded"])
    differs = (f"only the batch layout: micro-batches of {args.micro_batch} padded to their longest example vs one "
               f"row without padding ({attention} attention, {work.precision}); the same model, adapter init, "
               "examples, micro-batches, optimizer and steps")
    ratios = [{**ratio(results, "padding_free", "padded", "tokens_per_s"), "name": "tokens/s padding-free / padded",
               "differs": differs, "note": f"goal >= {SPEED_GOAL}; ceiling (padded positions / real tokens) {ceiling:.3f}"},
              {**ratio(results, "padding_free", "padded", "tokens_per_cpu_s"),
               "name": "tokens per CPU-second padding-free / padded", "differs": differs}]
    if memory:
        a, b = memory["padding_free"]["added_bytes"], memory["padded"]["added_bytes"]
        ratios.append({"name": "memory added by training padding-free / padded", "ratio": a / b if a and b else None,
                       "min": None, "max": None, "note": f"{memory['padded']['meter']}, one run each",
                       "differs": differs})
    ratios.append({"name": "eval loss padding-free / padded", "ratio": eval_loss["padding_free"] / eval_loss["padded"],
                   "min": None, "max": None, "note": f"goal within {EVAL_GOAL:.0%}", "differs": differs})
    rows = [{"side": n, "tokens_per_s": r.median("tokens_per_s"), "tokens_per_cpu_s": r.median("tokens_per_cpu_s"),
             "median_s": r.median("seconds"), "final_loss": losses[n], "eval_loss": eval_loss[n],
             "added_mib": memory[n]["added_bytes"] / 2**20 if memory else None} for n, r in results.items()]
    table = markdown_table(rows, ["side", "tokens_per_s", "tokens_per_cpu_s", "median_s", "final_loss", "eval_loss",
                                  "added_mib"])
    table += "\n\n" + markdown_table(
        [{"ratio": x["name"], "median": x["ratio"], "spread": _spread(x), "what differs": x["differs"]} for x in ratios],
        ["ratio", "median", "spread", "what differs"])
    table += (f"\n\nWhat differs: {differs}. Final train loss relative gap {train_gap:.1e} (enforced <= {tolerance:g}); "
              f"eval loss relative gap {eval_gap:.1e} (enforced <= {EVAL_GOAL:g}). {counts['real_tokens']} real tokens, "
              f"{counts['padded_positions']} padded positions per run (the most padding-free can gain: {ceiling:.3f}x); "
              f"{args.steps} steps x {args.accumulation} x {args.micro_batch}, LoRA r={args.rank} on q,k,v,o; "
              f"{args.repeats} interleaved rounds on {torch.get_num_threads()} thread(s), {device().type}.\n")
    print(table)
    payload = {"model": args.model, "attention": attention, "precision": work.precision,
               "settings": vars(args) | {"out": str(args.out)}, "positions": counts, "ceiling": ceiling,
               "memory": memory, "rows": rows, "ratios": ratios, "results": {n: r.rounds for n, r in results.items()},
               "checks": {"train_loss_relative_gap": train_gap, "train_loss_tolerance": tolerance,
                          "eval_loss_relative_gap": eval_gap, "eval_loss_goal": EVAL_GOAL, "speed_goal": SPEED_GOAL}}
    write("padding_free", payload, table, args.out)
    if train_gap > tolerance or eval_gap > EVAL_GOAL:  # written first, so the numbers that failed can be read
        raise SystemExit(f"padding-free and padded runs ended at different losses (train gap {train_gap:.2e}, "
                         f"tolerance {tolerance:g}; eval gap {eval_gap:.2e}, goal {EVAL_GOAL:g}): they did not train "
                         "the same thing, so their speeds do not compare")
    return payload


def _spread(x: dict) -> str:
    spread = f"{x['min']:.3f} .. {x['max']:.3f}" if x.get("min") is not None else ""
    return "; ".join(s for s in (spread, x.get("note", "")) if s)


if __name__ == "__main__":
    main()
