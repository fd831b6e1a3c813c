"""``compile: true`` against eager training: steady-state tokens/s after warm-up, the warm-up's cost, and the
losses after the same steps, which must agree.

    .venv/bin/python benchmarks/torch_compile.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--warmup-steps 4]

Both sides run the package's trainer on one model with the package's LoRA, reset to the same initial
adapter every round, over the same micro-batches of the bundled instruction set in file order, with the
same optimizer, steps and precision; the only difference is ``compile`` (``torch.compile`` of the decoder,
dynamic shapes, after LoRA is injected; the output head and loss stay eager). Steady state: the real
tokens of the steps after the first ``--warmup-steps`` over those steps' own time (each step's time as the
trainer logs it), so compilation and the recompiles of the first shapes stay out of it; the warm-up's
time is reported on its own. The same is counted in CPU seconds of this process (the clock read when the
trainer collates each step's batch), the clean measure on a shared machine with one thread. A compiled
run's first round pays the compilation; later rounds reuse dynamo's cache, and their warm-up shows what
remains.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device, instruction_examples, lora_base, precision  # noqa: E402
import time  # noqa: E402

from harness import Peer, base_arguments, markdown_table, prepare, ratio, run_interleaved, timed, write  # noqa: E402

from lora_course import SMOLLM2  # noqa: E402
from lora_course.data import Collator  # noqa: E402
from lora_course.models import TINY  # noqa: E402
from lora_course.train import TrainConfig, train  # noqa: E402

LOSS_TOLERANCE = 1e-3  # absolute, on the final training loss: the bound for compiled vs eager
SPEED_GOAL_GPU = 1.15  # steady-state tokens/s compiled / eager, on a GPU; on a CPU reported as measured
SIDES = {"compiled": True, "eager": False}


class Workload:
    def __init__(self, args):
        self.model, self.tokenizer, self.init = lora_base(args.model, args.rank)
        self.steps = args.warmup_steps + args.steps
        self.examples = instruction_examples(self.tokenizer, self.steps * args.micro_batch, args.sequence_length)
        self.collator = Collator(self.tokenizer.pad_token_id)
        self.precision = precision()
        self.args = args

    @torch.no_grad()
    def reset(self) -> None:
        for name, p in self.model.named_parameters():
            if name in self.init:
                p.copy_(self.init[name])

    def fit(self, compiled: bool, collator=None):
        self.reset()
        config = TrainConfig(micro_batch_size=self.args.micro_batch, max_steps=self.steps,
                             learning_rate=self.args.learning_rate, lr_scheduler="constant", max_grad_norm=1.0,
                             precision=self.precision, compile=compiled, shuffle=False, progress=False, seed=0)
        return train(self.model, self.examples, collator or self.collator, config, log=None)


class _Clock:
    """The collator, reading the CPU clock each time a step starts (one call per step: no accumulation)."""

    def __init__(self, collator):
        self.collator, self.cpu = collator, []

    def __call__(self, examples):
        self.cpu.append(time.process_time())
        return self.collator(examples)


def peer(work: Workload, name: str) -> Peer:
    warmup = work.args.warmup_steps

    def run():
        clock = _Clock(work.collator)
        seconds, result = timed(lambda: work.fit(SIDES[name], clock))
        end_cpu = time.process_time()
        step_s = [r["input_tokens"] / r["tokens_per_s"] for r in result.history]
        steady_tokens = sum(r["input_tokens"] for r in result.history[warmup:])
        return {"seconds": seconds, "warmup_s": sum(step_s[:warmup]), "steady_s": sum(step_s[warmup:]),
                "tokens_per_s": steady_tokens / sum(step_s[warmup:]), "final_loss": result.final_train_loss,
                "warmup_cpu_s": clock.cpu[warmup] - clock.cpu[0],
                "tokens_per_cpu_s": steady_tokens / (end_cpu - clock.cpu[warmup])}

    return Peer(name, run)


def main(argv=None) -> dict:
    parser = base_arguments(__doc__)
    parser.set_defaults(repeats=3)
    parser.add_argument("--model", default=SMOLLM2, help="a model name, or config:NAME for random weights in that shape")
    parser.add_argument("--warmup-steps", type=int, default=4, help="steps left out of the steady state")
    parser.add_argument("--steps", type=int, default=8, help="steps measured after the warm-up")
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--sequence-length", type=int, default=256)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = prepare(parser.parse_args(argv))
    if args.smoke:
        args.model, args.repeats, args.warmup_steps, args.steps, args.micro_batch = TINY, 1, 2, 2, 2
    print(f"torch.compile benchmark: {args.model}, {args.warmup_steps} warm-up + {args.steps} measured steps",
          flush=True)
    work = Workload(args)
    # no untimed warm-up round: the compiled side's first round is where compilation shows
    results = run_interleaved([peer(work, name) for name in SIDES], repeats=args.repeats, warmup=0)
    losses = {n: r.median("final_loss") for n, r in results.items()}
    gap = abs(losses["compiled"] - losses["eager"])
    cuda = device().type == "cuda"
    differs = (f"only compile: torch.compile of the decoder (dynamic shapes) vs eager; the same model, LoRA r={args.rank}, "
               f"micro-batches, optimizer, steps and precision ({work.precision}); steady state = the steps after "
               f"the first {args.warmup_steps}")
    first = {n: r.rounds[0]["warmup_s"] for n, r in results.items()}
    ratios = [{**ratio(results, "compiled", "eager", "tokens_per_s"), "name": "steady tokens/s compiled / eager",
               "differs": differs, "note": f"goal >= {SPEED_GOAL_GPU} on a GPU" if cuda else "CPU: as measured"},
              {**ratio(results, "compiled", "eager", "tokens_per_cpu_s"),
               "name": "steady tokens per CPU-second compiled / eager", "differs": differs,
               "note": "CPU time of this process"},
              {**ratio(results, "compiled", "eager", "warmup_s"), "name": "warm-up seconds compiled / eager",
               "differs": differs, "note": f"first round (compilation): {first['compiled'] / first['eager']:.1f}x"}]
    rows = [{"side": n, "steady_tokens_per_s": r.median("tokens_per_s"),
             "steady_tokens_per_cpu_s": r.median("tokens_per_cpu_s"), "warmup_s": r.median("warmup_s"),
             "first_round_warmup_s": first[n], "steady_s": r.median("steady_s"), "final_loss": losses[n]}
            for n, r in results.items()]
    table = markdown_table(rows, ["side", "steady_tokens_per_s", "steady_tokens_per_cpu_s", "warmup_s", "first_round_warmup_s", "steady_s",
                                  "final_loss"])
    table += "\n\n" + markdown_table(
        [{"ratio": x["name"], "median": x["ratio"], "spread": f"{x['min']:.3f} .. {x['max']:.3f}; {x['note']}",
          "what differs": x["differs"]} for x in ratios], ["ratio", "median", "spread", "what differs"])
    table += (f"\n\nWhat differs: {differs}. Final train loss difference {gap:.1e} (enforced <= {LOSS_TOLERANCE:g}). "
              f"Micro-batches of {args.micro_batch}, {args.repeats} interleaved rounds on {torch.get_num_threads()} "
              f"thread(s), {device().type}.\n")
    print(table)
    payload = {"model": args.model, "precision": work.precision, "settings": vars(args) | {"out": str(args.out)},
               "rows": rows, "ratios": ratios, "results": {n: r.rounds for n, r in results.items()},
               "checks": {"final_loss_difference": gap, "loss_tolerance": LOSS_TOLERANCE,
                          "speed_goal_gpu": SPEED_GOAL_GPU}}
    write("torch_compile", payload, table, args.out)
    if gap > LOSS_TOLERANCE:  # written first, so the numbers that failed can be read
        raise SystemExit(f"the compiled run's final loss {losses['compiled']} differs from the eager run's "
                         f"{losses['eager']} by {gap:.2e} (tolerance {LOSS_TOLERANCE:g}): not the same training")
    return payload


if __name__ == "__main__":
    main()
