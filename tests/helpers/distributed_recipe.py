"""Run under ``accelerate launch`` by tests/test_distributed.py: ``lora-course train``'s recipe, unchanged,
with three instruments around it, each written to a file of this rank's:

- every file this process opens for writing inside the run's output folder (an audit hook);
- every gradient all-reduce DDP makes, by bucket (a communication hook), to count synchronisations;
- nothing else: the logged losses are read from the run's own metrics.jsonl.
"""

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

config_path, report_dir = sys.argv[1], Path(sys.argv[2])
rank = int(os.environ.get("RANK", "0"))
output_dir = Path(json.loads(json.dumps(__import__("yaml").safe_load(Path(config_path).read_text())))["output_dir"])
writes, reductions = [], []


def _record(target):
    path = Path(os.fspath(target)).resolve()
    if output_dir.resolve() in path.parents:
        writes.append(str(path.relative_to(output_dir.resolve())))


def audit(event, args):
    """Python-level writes: open() for writing, and renames (a checkpoint is written, then renamed into place).
    safetensors writes from Rust, unseen; the adapter_config.json written beside it is seen."""
    if event == "open" and args and isinstance(args[0], (str, os.PathLike)):
        mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
        if any(c in mode for c in "wax+"):
            _record(args[0])
    elif event == "os.rename" and len(args) > 1 and isinstance(args[1], (str, os.PathLike)):
        _record(args[1])


class CountingDDP(torch.nn.parallel.DistributedDataParallel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

        def hook(state, bucket):
            reductions.append(bucket.index())
            return allreduce_hook(state, bucket)

        self.register_comm_hook(dist.group.WORLD, hook)


torch.nn.parallel.DistributedDataParallel = CountingDDP
sys.addaudithook(audit)

from lora_course.recipes import train_from_yaml  # noqa: E402

summary = train_from_yaml(config_path, log=None, progress=False)
report_dir.mkdir(parents=True, exist_ok=True)
(report_dir / f"rank{rank}.json").write_text(json.dumps({"writes": sorted(set(writes)), "reductions": reductions,
                                                         "steps": summary["steps"]}))
