"""Inference latency: the base model, the same model with an adapter (unmerged: two extra small
matmuls per adapted layer) and with the adapter merged (the base's architecture again).

    .venv/bin/python benchmarks/inference.py [--adapter runs/smollm2-lora-instructions/adapter] [--smoke]

Every peer generates the same number of new tokens (greedy, EOS ignored), so latencies compare
like with like. Merged should match the base (the target: within 3%).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Peer, base_arguments, markdown_table, ratio, run_interleaved, prepare, timed_cpu, write  # noqa: E402

from lora_course import SMOLLM2  # noqa: E402
from lora_course.lora import LoraSettings, inject_lora, load_adapter, lora_layers, merge_and_unload  # noqa: E402
from lora_course.models import TINY, load_model  # noqa: E402

PROMPTS = ["What is the capital of France?", "Reverse the word 'orange'.", "Compute 92 plus 93.",
           "Name three colours.", "How many days are in a week?", "Sort these words: pear, apple, fig.",
           "Convert 4 kilograms to grams.", "What is 7 times 8?"]


def models(name: str, adapter: str | None):
    base, tokenizer = load_model(name)
    unmerged = copy.deepcopy(base)
    if adapter:
        load_adapter(unmerged, adapter)
    else:  # no trained adapter given: a random one of the course's default shape (r=16, q,k,v,o)
        inject_lora(unmerged, LoraSettings(r=16, alpha=32))
        for _, layer in lora_layers(unmerged):
            torch.nn.init.normal_(layer.lora_B.weight, std=0.02)
    merged = merge_and_unload(copy.deepcopy(unmerged))
    return {"base": base, "unmerged": unmerged, "merged": merged}, tokenizer


def generation_peer(name: str, model, tokenizer, new_tokens: int, batch_size: int) -> Peer:
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in PROMPTS[:batch_size]]
    tokenizer.padding_side = "left"
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    model.eval()

    @torch.no_grad()
    def run():
        seconds, cpu, out = timed_cpu(lambda: model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                                             do_sample=False, pad_token_id=tokenizer.pad_token_id))
        generated = (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
        return {"seconds": seconds, "tokens_per_s": generated / seconds, "cpu_seconds": cpu}

    return Peer(name, run)


def main(argv=None) -> dict:
    parser = base_arguments(__doc__)
    parser.add_argument("--model", default=SMOLLM2)
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    prepare(args)
    if args.smoke:
        args.model, args.adapter, args.repeats, args.new_tokens = TINY, None, 1, 4
    torch.manual_seed(0)
    peers_models, tokenizer = models(args.model, args.adapter)
    peers = [generation_peer(n, m, tokenizer, args.new_tokens, args.batch_size) for n, m in peers_models.items()]
    results = run_interleaved(peers, repeats=args.repeats, warmup=0 if args.smoke else 1)
    what = {"unmerged": "two extra small matmuls per adapted layer (the adapter beside the base)",
            "merged": "nothing in the architecture: the merged model is the base's shape with other weights, so a "
                      "ratio away from 1 is noise; read the spread"}
    ratios = [{**ratio(results, peer, "base", key), "name": f"{label} {peer} / base", "differs": what[peer]}
              for key, label in (("seconds", "latency"), ("cpu_seconds", "CPU time")) for peer in ("unmerged", "merged")]
    rows = [{"peer": n, "median_s": r.median("seconds"), "tokens_per_s": r.median("tokens_per_s")}
            for n, r in results.items()]
    rows += [{"peer": x["name"], "median_s": x["ratio"], "tokens_per_s": f"{x['min']:.3f} .. {x['max']:.3f}"}
             for x in ratios]
    table = markdown_table(rows, ["peer", "median_s", "tokens_per_s"])
    merged = next(x for x in ratios if x["name"] == "latency merged / base")
    parity = merged["min"] <= 1.0 <= merged["max"]
    table += (f"\n\nMerged vs base latency: {merged['ratio']:.3f}, rounds {merged['min']:.3f} .. {merged['max']:.3f} "
              f"({'parity: the spread includes 1' if parity else 'the spread excludes 1'}; target: within 3%, "
              f"{'met' if abs(merged['ratio'] - 1) <= 0.03 else 'missed'}); {args.batch_size} prompts, "
              f"{args.new_tokens} new tokens each, greedy, {args.repeats} interleaved rounds on "
              f"{torch.get_num_threads()} thread(s).\n")
    print(table)
    payload = {"model": args.model, "adapter": args.adapter, "new_tokens": args.new_tokens,
               "batch_size": args.batch_size, "repeats": args.repeats,
               "results": {n: r.rounds for n, r in results.items()}, "ratios": ratios}
    write("inference", payload, table, args.out)
    return payload


if __name__ == "__main__":
    main()
