"""The trainer under ``accelerate launch`` with 2 CPU processes (gloo): the weights after training
equal those of one process with twice the gradient accumulation; the logged loss is the whole
window's, as one process logs it; gradients are all-reduced once per window; only rank 0 writes."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

HELPERS = Path(__file__).resolve().parent / "helpers"


def _launch(script, *args, port):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    # --multi_gpu is accelerate's name for its torchrun launcher; with no CUDA device the processes
    # join a gloo group on the CPU (its --cpu mode would need MPI for more than one process)
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
               str(script), *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_equal_one_process_with_twice_the_accumulation(tmp_path):
    sys.path.insert(0, str(HELPERS))
    from distributed_train import run

    single = run(accumulation=4, out=None)
    _launch(HELPERS / "distributed_train.py", 2, tmp_path / "ddp.pt", port=29517)
    distributed = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert distributed.keys() == single.keys()
    for key in single:
        torch.testing.assert_close(distributed[key], single[key], atol=1e-5, rtol=1e-4)
    # and the runs did train: the adapters moved away from B = 0
    assert all(single[k].abs().max() > 0 for k in single if "lora_B" in k)


@pytest.mark.slow
def test_the_recipe_under_two_processes_logs_the_one_process_loss_syncs_once_per_window_and_writes_once(tmp_path):
    from lora_course.recipes import train_from_yaml

    def config(name, accumulation):
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump({
            "base_model": "lora-course/tiny-random-llama", "output_dir": str(tmp_path / name),
            "datasets": [{"path": "bundled:instructions"}], "sequence_length": 64, "micro_batch_size": 2,
            "gradient_accumulation_steps": accumulation, "max_steps": 3, "learning_rate": 1e-2,
            "lr_scheduler": "constant", "lora_r": 4, "lora_alpha": 8, "seed": 0, "save_steps": 3}))
        return path

    train_from_yaml(config("single", 4), log=None, progress=False)
    _launch(HELPERS / "distributed_recipe.py", config("ddp", 2), tmp_path / "report", port=29519)

    def losses(name):
        return [json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    assert len(losses("ddp")) == 3
    for one, two in zip(losses("single"), losses("ddp")):
        assert two == pytest.approx(one, rel=1e-5)  # the whole window's loss, not rank 0's share of it
    ranks = [json.loads((tmp_path / "report" / f"rank{r}.json").read_text()) for r in (0, 1)]
    written = set(ranks[0]["writes"])
    assert {"metrics.jsonl", "summary.json", "loss.png", "adapter/adapter_config.json", "adapter/lora_course.json",
            "checkpoints/step-000003.pt"} <= written, written
    assert ranks[1]["writes"] == []  # the other rank trains the same weights and writes nothing
    for report in ranks:  # bucket 0 is all-reduced once per optimizer step, not once per micro-batch
        assert report["reductions"].count(0) == report["steps"] == 3, report["reductions"]
