"""The output head and loss in chunks of target rows against all rows at once: peak memory and speed
of one training step where the logits dominate, and the loss of each, which must agree.

    .venv/bin/python benchmarks/chunked_loss.py [--sequence-length 4096] [--vocab 128256] [--chunk-rows 1024]

The model is the tiny Llama with Llama-3's vocabulary (128,256 tokens) and every position a target
(a pre-training-style batch of one 4,096-token sequence): the logits are 4,096 x 128,256, 2.1 GB in fp32,
while the rest of the tiny model is a few MB, so the step's peak is the loss head's. Both sides run the
package's own ``summed_token_loss``, LoRA on the attention projections, the head frozen (tied embeddings);
the only difference is ``chunk_rows``. Peak memory: the resident set of a forked child that runs one step
(forward and backward), above what it held before the step; CUDA: ``max_memory_allocated``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device, peak_memory  # noqa: E402
from harness import Peer, base_arguments, markdown_table, prepare, ratio, run_interleaved, timed_cpu, write  # noqa: E402

from lora_course.lora import LoraSettings, inject_lora  # noqa: E402
from lora_course.models import tiny_config  # noqa: E402
from lora_course.train import summed_token_loss  # noqa: E402

LOSS_TOLERANCE = 1e-4  # relative: the two sums differ by rounding only; a bigger gap fails the run


def build(vocab: int):
    from transformers import AutoModelForCausalLM

    config = tiny_config()
    config.vocab_size = vocab
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(device())
    inject_lora(model, LoraSettings(r=8, alpha=16))
    return model


def batch_of(vocab: int, length: int) -> dict:
    ids = torch.randint(3, vocab, (1, length), generator=torch.Generator().manual_seed(0)).to(device())
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def step(model, batch, chunk_rows):
    loss = summed_token_loss(model, batch, chunk_rows)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return loss.item()


def main(argv=None) -> dict:
    parser = base_arguments(__doc__)
    parser.add_argument("--sequence-length", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--chunk-rows", type=int, default=1024)
    args = prepare(parser.parse_args(argv))
    if args.smoke:
        args.sequence_length, args.vocab, args.repeats = 256, 8192, 1
    sides = {"chunked": args.chunk_rows, "whole": None}
    memory = {}
    for name, rows in sides.items():
        def build_run(rows=rows):
            model, batch = build(args.vocab), batch_of(args.vocab, args.sequence_length)
            return lambda: step(model, batch, rows)

        memory[name] = peak_memory(build_run)
        print(f"  memory {name}: {memory[name]['added_bytes'] / 2**20:,.0f} MiB added by the step", flush=True)
    model, batch = build(args.vocab), batch_of(args.vocab, args.sequence_length)
    tokens = args.sequence_length

    def peer(name, rows):
        def run():
            seconds, cpu, loss = timed_cpu(lambda: step(model, batch, rows))
            return {"seconds": seconds, "cpu_seconds": cpu, "tokens_per_s": tokens / seconds, "loss": loss}
        return Peer(name, run)

    results = run_interleaved([peer(n, r) for n, r in sides.items()], repeats=args.repeats,
                              warmup=0 if args.smoke else 1)
    losses = {n: r.median("loss") for n, r in results.items()}
    gap = abs(losses["chunked"] - losses["whole"]) / abs(losses["whole"])
    if gap > LOSS_TOLERANCE:
        raise SystemExit(f"the chunked loss {losses['chunked']} differs from the whole one {losses['whole']} by "
                         f"{gap:.2e} (tolerance {LOSS_TOLERANCE:g}): the two sides do not compute the same thing")
    differs = (f"the same step (tiny Llama, vocabulary {args.vocab:,}, 1 x {args.sequence_length} tokens, every one "
               f"a target, LoRA r=8), the output head and loss in chunks of {args.chunk_rows} rows vs all at once")
    mem_ratio = memory["chunked"]["added_bytes"] / memory["whole"]["added_bytes"]
    ratios = [{**ratio(results, "chunked", "whole", "tokens_per_s"), "name": "tokens/s chunked / whole",
               "differs": differs},
              {**ratio(results, "chunked", "whole", "cpu_seconds"), "name": "CPU time chunked / whole",
               "differs": differs},
              {"name": "step peak memory chunked / whole", "ratio": mem_ratio, "min": None, "max": None,
               "note": f"{memory['whole']['meter']}, one run each", "differs": differs}]
    rows = [{"side": n, "tokens_per_s": r.median("tokens_per_s"), "loss": r.median("loss"),
             "step_added_mib": memory[n]["added_bytes"] / 2**20} for n, r in results.items()]
    table = markdown_table(rows, ["side", "tokens_per_s", "loss", "step_added_mib"])
    table += "\n\n" + markdown_table([{"ratio": x["name"], "median": x["ratio"],
                                       "spread": f"{x['min']:.3f} .. {x['max']:.3f}" if x["min"] is not None
                                       else x["note"]} for x in ratios], ["ratio", "median", "spread"])
    table += (f"\n\nWhat differs: {differs}. Loss agreement: relative gap {gap:.1e} (enforced <= {LOSS_TOLERANCE:g}). "
              f"{args.repeats} interleaved rounds on {torch.get_num_threads()} thread(s), {device().type}.\n")
    print(table)
    payload = {"sequence_length": args.sequence_length, "vocab": args.vocab, "chunk_rows": args.chunk_rows,
               "repeats": args.repeats, "memory": memory, "results": {n: r.rounds for n, r in results.items()},
               "ratios": ratios, "loss_gap": gap}
    write("chunked_loss", payload, table, args.out)
    return payload


if __name__ == "__main__":
    main()
