"""Benchmarks run in smoke mode (one short repeat on the tiny model) only so they cannot rot; the
numbers they print are not checked here — timings are never asserted in tests."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("script", ["inference.py"])
def test_benchmark_runs_in_smoke_mode(script, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert result["machine"]["torch"] and result["ratios"]
    assert all(r["ratio"] > 0 for r in result["ratios"])


def test_memory_plot_draws_one_bar_per_setup():
    import matplotlib

    matplotlib.use("Agg")
    from lora_course.memory import Setup, estimate
    from lora_course.viz.memory import memory_panel, plot_breakdowns

    setups = {m: estimate("lora-course/tiny-random-llama", Setup(method=m, sequence_length=64))
              for m in ("full", "lora", "qlora")}
    ax = plot_breakdowns(setups, capacity=2**20)
    heights = {}
    for patch in ax.patches:
        x = round(patch.get_x(), 3)
        heights[x] = heights.get(x, 0) + patch.get_height()
    assert len(heights) == 3
    totals = sorted(b.total / 2**30 for b in setups.values())
    assert sorted(heights.values()) == pytest.approx(totals, rel=1e-6)
    assert memory_panel("lora-course/tiny-random-llama") is not None  # ipywidgets is installed
