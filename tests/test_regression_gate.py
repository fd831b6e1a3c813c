"""The regression gate: a new adapter against the previous one on the same examples, and the
``lora-course eval --previous`` command that a CI job runs."""

import json

import pytest
import torch

import lora_course.recipes.evaluate as recipe
from lora_course.cli import main
from lora_course.errors import SettingsError
from lora_course.evaluate import TaskResult, regression_gate
from lora_course.adapters import save_with_metadata
from lora_course.lora import LoraSettings, inject_lora, lora_layers
from lora_course.models import TINY, tiny_model

def _trained_adapter(path, seed):
    model, tokenizer = tiny_model(0)
    torch.manual_seed(seed)
    inject_lora(model, LoraSettings(r=4, alpha=8))
    for _, layer in lora_layers(model):
        torch.nn.init.normal_(layer.lora_B.weight, std=0.05)  # as after training
    save_with_metadata(model, tokenizer, path, TINY)


PREVIOUS = [1] * 20 + [0] * 20  # 50% on 40 examples


def _new(lost: int, won: int = 0):
    """The previous results with ``lost`` right answers turned wrong and ``won`` wrong ones right."""
    return [0] * lost + [1] * (20 - lost) + [1] * won + [0] * (20 - won)


def test_verdicts_on_planted_results():
    same = regression_gate(PREVIOUS, PREVIOUS, previous="v1", new="v2")
    assert same.verdict == "no regression" and same.passed and same.drop == 0
    clear = regression_gate(PREVIOUS, _new(lost=10), previous="v1", new="v2")  # 10 losses, no wins: p = 0.002
    assert clear.verdict == "regression" and not clear.passed
    assert clear.comparison.losses == list(range(10)) and clear.comparison.wins == []
    assert "FAIL" in clear.summary() and "0 examples won, 10 lost" in clear.summary()
    small = regression_gate(PREVIOUS, _new(lost=2), previous="v1", new="v2")  # a 5-point drop, within noise
    assert small.verdict == "possible regression" and small.passed
    assert not regression_gate(PREVIOUS, _new(lost=2), strict=True).passed
    tolerated = regression_gate(PREVIOUS, _new(lost=2), tolerance=0.05)
    assert tolerated.verdict == "no regression" and tolerated.passed
    # a big drop is a regression however large the tolerance below it
    assert regression_gate(PREVIOUS, _new(lost=10), tolerance=0.2).verdict == "regression"
    traded = regression_gate(PREVIOUS, _new(lost=6, won=6))  # same accuracy, other examples: not a regression
    assert traded.verdict == "no regression" and len(traded.comparison.losses) == 6
    assert regression_gate(PREVIOUS, _new(lost=0, won=10)).verdict == "better"
    assert regression_gate(PREVIOUS, _new(lost=0, won=1)).verdict == "no regression"  # a gain within noise
    assert regression_gate(PREVIOUS, _new(lost=10)).to_dict()["passed"] is False


def test_bad_settings_are_refused():
    for kwargs in (dict(tolerance=-0.1), dict(tolerance=1.0), dict(alpha=0)):
        with pytest.raises(SettingsError):
            regression_gate(PREVIOUS, PREVIOUS, **kwargs)
    with pytest.raises(ValueError, match="same examples"):
        regression_gate(PREVIOUS, PREVIOUS[:-1])


def _planted_task(monkeypatch, results):
    """evaluate_task answers the planted per-example results, in the order the recipe scores the runs."""
    calls = iter(results)

    def fake(model, tokenizer, task, limit=None, batch_size=16):
        correct = next(calls)
        return TaskResult(task, {"exact_match": sum(correct) / len(correct)},
                          [{"correct": bool(c)} for c in correct])

    monkeypatch.setattr(recipe, "evaluate_task", fake)


def test_the_eval_command_fails_a_regressed_adapter(tmp_path, monkeypatch, capsys):
    for name, seed in (("v1", 1), ("v2", 2)):
        _trained_adapter(tmp_path / name, seed=seed)
    _planted_task(monkeypatch, [[0] * 40, PREVIOUS, _new(lost=10)])  # base, the previous adapter, the new one
    out = tmp_path / "r.json"
    assert main(["eval", TINY, "--adapter", str(tmp_path / "v2"), "--previous", str(tmp_path / "v1"),
                 "--task", "instructions", "--json", str(out)]) == 1
    results = json.loads(out.read_text())
    assert list(results["runs"]) == ["base", "previous:v1", "adapter0:v2"]
    gate, = results["regressions"]
    assert (gate["a"], gate["b"], gate["verdict"]) == ("previous:v1", "adapter0:v2", "regression")
    assert "FAIL" in capsys.readouterr().out
    _planted_task(monkeypatch, [[0] * 40, PREVIOUS, _new(lost=1, won=3)])
    assert main(["eval", TINY, "--adapter", str(tmp_path / "v2"), "--previous", str(tmp_path / "v1"),
                 "--task", "instructions"]) == 0
    assert main(["eval", TINY, "--adapter", str(tmp_path / "v2"), "--previous", str(tmp_path / "v1"),
                 "--task", "instructions", "--tolerance", "2"]) == 2  # refused before any model loads
    assert "tolerance" in capsys.readouterr().err


def test_a_real_evaluation_of_two_adapters_gives_one_gate(tmp_path):
    for name, seed in (("v1", 1), ("v2", 2)):
        _trained_adapter(tmp_path / name, seed=seed)
    results = recipe.evaluate_models(TINY, [str(tmp_path / "v2")], "instructions", limit=4, include_base=False,
                                     previous=str(tmp_path / "v1"), tolerance=0.02, log=None)
    gate, = results["regressions"]
    assert gate["tolerance"] == 0.02 and gate["verdict"] in ("no regression", "better", "possible regression")
    assert len(gate["wins"]) + len(gate["losses"]) + gate["ties"] == 4
    assert len(results["runs"]["previous:v1"]["records"]) == len(results["runs"]["adapter0:v2"]["records"]) == 4
    assert results["comparisons"] == []
