"""The YAML configuration: every user mistake is one clear error before any model loads."""

import json
from pathlib import Path

import pytest

from lora_course.cli import main
from lora_course.config import ConfigError, check_against_model, load_config, parse_config

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yml"))
MINIMAL = {"base_model": "lora-course/tiny-random-llama", "output_dir": "out", "datasets": ["bundled:instructions"]}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_is_valid(path):
    config = load_config(path)
    assert check_against_model(config) == []


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match="unknown key 'lora_rank'. Did you mean 'lora_r'"):
        parse_config({**MINIMAL, "lora_rank": 8})


@pytest.mark.parametrize("change, message", [
    ({"lora_r": "16"}, "'lora_r' must be int"),
    ({"lora_r": 0}, "lora_r must be a positive integer"),
    ({"micro_batch_size": True}, "'micro_batch_size' must be int"),
    ({"optimizer": "adam"}, "optimizer 'adam' is unknown"),
    ({"adapter": "dora"}, "adapter must be lora, qlora or null"),
    ({"datasets": [{"type": "chat"}]}, "needs a 'path'"),
    ({"eval_steps": 10}, "val_set_size is 0"),
])
def test_bad_values_are_named(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({**MINIMAL, **change})


def test_all_problems_are_reported_together():
    with pytest.raises(ConfigError) as err:
        parse_config({"datasets": [], "lora_dropuot": 0.1})
    text = str(err.value)
    assert "'base_model' is required" in text and "'output_dir' is required" in text and "lora_dropout" in text


def test_broken_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("base_model: x\ndatasets:\n  - path: [unclosed\noutput_dir: y\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(path)


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yml")


def test_target_module_the_model_lacks():
    config = parse_config({**MINIMAL, "lora_target_modules": ["q_proj", "c_attn"]})
    problems = check_against_model(config)
    assert len(problems) == 1 and "c_attn" in problems[0] and "q_proj" in problems[0]


def test_cli_train_reports_config_errors_in_one_line_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "c.yml"
    path.write_text(f"base_model: lora-course/tiny-random-llama\noutput_dir: {tmp_path / 'run'}\n"
                    "datasets: [bundled:instructions]\nlora_r: -1\n")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "lora_r must be a positive integer" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_cli_train_end_to_end_on_the_tiny_model(tmp_path, capsys):
    path = tmp_path / "c.yml"
    out = tmp_path / "run"
    path.write_text(f"base_model: lora-course/tiny-random-llama\noutput_dir: {out}\ndatasets: [bundled:instructions]\n"
                    "sequence_length: 96\nmicro_batch_size: 4\nmax_steps: 3\nlearning_rate: 1.0e-3\n"
                    "val_set_size: 8\neval_steps: 3\nlora_r: 4\nlora_alpha: 8\n")
    assert main(["train", str(path)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["final_eval_loss"] is not None
    assert summary["parameters"]["trainable"] < summary["parameters"]["total"]
    assert (out / "adapter" / "adapter_model.safetensors").is_file() and (out / "loss.png").is_file()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    from peft import PeftModel

    from lora_course.models import tiny_model

    PeftModel.from_pretrained(tiny_model()[0], str(out / "adapter"))  # the adapter is PEFT's format
