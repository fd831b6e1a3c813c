"""The trainer under ``accelerate launch`` with 2 CPU processes (gloo): the weights after training
equal those of one process with twice the gradient accumulation."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HELPER = Path(__file__).resolve().parent / "helpers" / "distributed_train.py"


@pytest.mark.slow
def test_two_processes_equal_one_process_with_twice_the_accumulation(tmp_path):
    sys.path.insert(0, str(HELPER.parent))
    from distributed_train import run

    single = run(accumulation=4, out=None)
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    # --multi_gpu is accelerate's name for its torchrun launcher; with no CUDA device the processes
    # join a gloo group on the CPU (its --cpu mode would need MPI for more than one process)
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
               str(HELPER), "2", str(tmp_path / "ddp.pt")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    distributed = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert distributed.keys() == single.keys()
    for key in single:
        torch.testing.assert_close(distributed[key], single[key], atol=1e-5, rtol=1e-4)
    # and the runs did train: the adapters moved away from B = 0
    assert all(single[k].abs().max() > 0 for k in single if "lora_B" in k)
