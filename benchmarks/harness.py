"""What every benchmark here shares: interleaved repeats, medians, ratios with their spread, and
results written as JSON and a markdown table.

Peers run A B A B ... in one process, so a noisy neighbour or a thermal dip hits every peer alike;
the ratio of medians is reported with the spread of the per-round ratios (min .. max), which is
the honest error bar when rounds are paired.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

OUT_DIR = Path(__file__).resolve().parent / "out"
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script, the checkout's own lora_course must win over an installed one
    sys.path.insert(1, str(ROOT))


@dataclass
class Peer:
    name: str
    run: Callable[[], dict]  # one timed repetition; returns measurements, e.g. {"seconds": .., "tokens": ..}
    setup: Callable[[], None] | None = None  # untimed warm-up before the first round


@dataclass
class Result:
    name: str
    rounds: list[dict] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [r[key] for r in self.rounds]

    def median(self, key: str) -> float:
        return statistics.median(self.values(key))


def run_interleaved(peers: list[Peer], repeats: int, warmup: int = 1, log=print) -> dict[str, Result]:
    for peer in peers:
        if peer.setup:
            peer.setup()
        for _ in range(warmup):
            peer.run()
    results = {p.name: Result(p.name) for p in peers}
    for i in range(repeats):
        # rotate the order each round so no peer always runs first (caches, allocator state)
        order = peers[i % len(peers):] + peers[: i % len(peers)]
        for peer in order:
            results[peer.name].rounds.append(peer.run())
        log(f"  round {i + 1}/{repeats}: " + ", ".join(f"{p.name} {_short(results[p.name].rounds[-1])}" for p in peers))
    return results


def ratio(results: dict[str, Result], num: str, den: str, key: str) -> dict:
    """Ratio of medians num/den for ``key``, with the spread of the per-round ratios."""
    per_round = [a / b for a, b in zip(results[num].values(key), results[den].values(key)) if b]
    return {
        "ratio": results[num].median(key) / results[den].median(key),
        "min": min(per_round) if per_round else float("nan"),
        "max": max(per_round) if per_round else float("nan"),
        "of": f"{num} / {den}",
        "key": key,
    }


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def timed_cpu(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result). With one thread, CPU time is the work
    done whatever else the machine runs; with more, it also counts threads waiting for each other."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def machine() -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    else:
        info["device"] = f"CPU ({platform.processor() or platform.machine()})"
    return info


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def write(name: str, payload: dict, table: str, out_dir: Path = OUT_DIR) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), **payload}
    (out_dir / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    (out_dir / f"{name}.md").write_text(f"# {name}\n\nMachine: {payload['machine']['device']}\n\n{table}\n")
    return out_dir / f"{name}.json"


def base_arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="one short repeat, only to keep the script from rotting (CI)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help=f"default {OUT_DIR} ({OUT_DIR / 'smoke'} with --smoke)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice); on a shared machine 1 thread makes "
                             "CPU time a clean measure of work, which wall time is not")
    return parser


def prepare(args):
    """Apply the common arguments: the output folder (smoke runs never overwrite the real results
    kept in the repository) and the thread count."""
    args.out = args.out or (OUT_DIR / "smoke" if args.smoke else OUT_DIR)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return args


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _short(m: dict) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in m.items() if isinstance(v, (int, float)))
