"""The YAML configuration: every user mistake is one clear error before any model loads."""

import json
from pathlib import Path

import pytest

from lora_course.cli import main
from lora_course.config import (
    ConfigError,
    check_against_model,
    load_config,
    parse_config,
)

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


def test_padding_free_has_axolotl_s_spelling_too():
    assert parse_config({**MINIMAL, "batch_flattening": True}).train_config().padding_free is True
    assert parse_config(MINIMAL).train_config().padding_free is False
    with pytest.raises(ConfigError, match="both 'batch_flattening' and 'padding_free'"):
        parse_config({**MINIMAL, "batch_flattening": True, "padding_free": True})
    with pytest.raises(ConfigError, match="'padding_free' must be bool"):
        parse_config({**MINIMAL, "padding_free": "yes"})


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


def test_every_run_saves_its_metadata_and_the_base_check_uses_it(tmp_path):
    from lora_course.adapters import BaseModelMismatchError, load_checked, read_metadata
    from lora_course.models import tiny_model

    path = tmp_path / "c.yml"
    path.write_text(f"base_model: lora-course/tiny-random-llama\noutput_dir: {tmp_path / 'run'}\n"
                    "datasets: [bundled:instructions]\nsequence_length: 64\nmax_steps: 1\nlora_r: 4\n")
    assert main(["train", str(path)]) == 0
    meta = read_metadata(tmp_path / "run" / "adapter")
    assert meta["training_config"]["lora_r"] == 4 and meta["quantization"] is None
    assert meta["training_data_sha256"]
    model, tokenizer = tiny_model(0)
    load_checked(model, tmp_path / "run" / "adapter", tokenizer)
    with pytest.raises(BaseModelMismatchError):
        load_checked(tiny_model(3)[0], tmp_path / "run" / "adapter")


@pytest.mark.parametrize("change, message", [
    ({"freeze_layers": -1}, "freeze_layers must be 0 or more"),
    ({"freeze_layers": 1}, "does not combine with an adapter"),
])
def test_partial_fine_tuning_settings_are_checked(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({**MINIMAL, **change})


def test_freezing_every_layer_is_refused_before_loading():
    config = parse_config({**MINIMAL, "adapter": None, "freeze_layers": 3})
    assert "at most 2" in check_against_model(config)[0]


def test_classification_records_become_chat_turns():
    from lora_course.config.datasets import load_records

    config = parse_config({**MINIMAL, "datasets": [{"path": "bundled:sentiment", "type": "classification"}]})
    records = load_records(config.datasets[0])
    assert len(records) == 2000
    assert records[0]["messages"][-1] == {"role": "assistant", "content": "negative"}
    chat = parse_config({**MINIMAL, "datasets": ["bundled:sentiment"]})
    with pytest.raises(ValueError, match="type: alpaca"):
        load_records(chat.datasets[0])


def test_hub_loaders_fail_offline_with_the_fix(monkeypatch):
    from lora_course.data import HubDataUnavailable, load_alpaca, load_imdb
    from lora_course.models import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    for loader in (load_alpaca, load_imdb):
        with pytest.raises(HubDataUnavailable, match="bundled"):
            loader(limit=10)


def test_a_tokenizer_from_another_model_is_flagged():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from lora_course.config.schema import tokenizer_mismatch
    from lora_course.models import tiny_model

    model, own = tiny_model(0)
    config = parse_config({**MINIMAL, "tokenizer": "some/other-tokenizer"})
    assert tokenizer_mismatch(config, own, model) == []  # the base's own tokenizer under another name
    vocab = {f"t{i}": i for i in range(60_000)} | {"[UNK]": 60_000}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    other = PreTrainedTokenizerFast(tokenizer_object=backend)
    warnings = tokenizer_mismatch(config, other, model)
    assert any("embedding rows" in w for w in warnings) and any("vocabularies differ" in w for w in warnings)


def test_partial_fine_tuning_trains_only_the_top_layers():
    import torch

    from lora_course.data import Collator, load_bundled, tokenize_dataset
    from lora_course.models import tiny_model
    from lora_course.train import TrainConfig, freeze_first_layers, train

    model, tokenizer = tiny_model(0)
    trainable = freeze_first_layers(model, 2)
    assert trainable and all(n.startswith("model.layers.2.") or n == "model.norm.weight" for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data, _ = tokenize_dataset(load_bundled("instructions", limit=8), tokenizer, 64)
    train(model, data, Collator(tokenizer.pad_token_id), TrainConfig(micro_batch_size=4, max_steps=2,
                                                                      learning_rate=1e-2, progress=False), log=None)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == set(trainable)


def test_compare_trains_each_method_and_writes_the_table(tmp_path, capfd):
    path = tmp_path / "c.yml"
    path.write_text(f"base_model: lora-course/tiny-random-llama\noutput_dir: {tmp_path / 'run'}\n"
                    "datasets: [bundled:instructions]\nsequence_length: 64\nmicro_batch_size: 4\nmax_steps: 2\n"
                    "learning_rate: 1.0e-3\nlora_r: 4\nlora_alpha: 8\n")
    assert main(["compare", str(path), "--partial", "1", "--prompts", "2", "--quiet"]) == 0
    shown = capfd.readouterr()
    assert "parameters trainable" not in shown.out + shown.err, "--quiet keeps the runs' own logs out"
    assert "full: " in shown.out and "compare.md" in shown.out
    result = json.loads((tmp_path / "run-compare" / "compare.json").read_text())
    methods = result["methods"]
    assert list(methods) == ["full", "partial-1", "lora"]
    assert methods["lora"]["trainable"] < methods["partial-1"]["trainable"] < methods["full"]["trainable"]
    assert methods["lora"]["checkpoint_mb"] < methods["full"]["checkpoint_mb"] / 100
    assert len(result["answers"]["lora"]) == 2 and set(result["answers"]) >= {"base", "full", "prompts"}
    assert "| lora |" in (tmp_path / "run-compare" / "compare.md").read_text()


def test_the_seed_makes_a_run_repeatable_whatever_ran_before(tmp_path):
    """The adapter's random init is seeded from the config: the same file trains the same adapter, in the
    same process after other work, or under a launcher (the 2-process check of chapter 11 relies on it)."""
    import torch
    from safetensors.torch import load_file

    from lora_course.recipes import train_from_config

    raw = {"base_model": "lora-course/tiny-random-llama", "datasets": ["bundled:instructions"], "sequence_length": 64,
           "micro_batch_size": 2, "max_steps": 1, "learning_rate": 1e-3, "lora_r": 4, "lora_alpha": 8, "seed": 3}
    weights = []
    for name in ["first", "second"]:
        torch.rand(7)  # other work between the runs moves the global random state
        train_from_config(parse_config({**raw, "output_dir": str(tmp_path / name)}), log=None, progress=False)
        weights.append(load_file(tmp_path / name / "adapter" / "adapter_model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
