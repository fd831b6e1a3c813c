"""The recipes layer: a run is put together in one place, the layers import only downwards, and the
command line's main paths work end to end (QLoRA included)."""

import ast
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from lora_course.cli import main

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lora_course"

# DESIGN.md's layers, ground floor first: a module may import its own layer and those with a lower number.
LAYERS = {"errors": 0, "models": 1, "lora": 2, "quant": 2, "data": 3, "train": 4, "memory": 5, "evaluate": 5,
          "adapters": 6, "config": 6, "recipes": 7, "cli": 8}
# Beside the stack: grading uses errors and models only; viz (the book's plots and helpers) may use anything
# but the command line; profiles (the book's execution profiles) uses models.
BESIDE = {"grading": {"errors", "models", "grading"}, "profiles": {"errors", "models"}}
CLI_ALSO = {"grading"}  # the command line is the one caller of the grader


def _package_imports(path: Path):
    """(line, imported lora_course sub-package) for every import in the file, top-level or inside functions."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "lora_course"
                                     else [])
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "lora_course" and len(parts) > 1:
                yield node.lineno, parts[1]


def _layer_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_no_module_imports_a_layer_above_its_own():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _layer_of(path)
        if own in ("__init__", "__main__", "viz"):
            continue
        for line, target in _package_imports(path):
            if target in ("__version__", "SMOLLM2"):  # the package's own constants, from __init__
                continue
            if own in BESIDE:
                ok = target in BESIDE[own]
            else:
                ok = (target in LAYERS and LAYERS[target] <= LAYERS[own]) or (own == "cli" and target in CLI_ALSO)
            if not ok:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports lora_course.{target}")
    assert not wrong, "\n".join(wrong)


def test_nothing_but_the_command_line_imports_it():
    """The book, scripts, benchmarks, viz and the library itself call the recipes, never lora_course.cli."""
    wrong = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "scripts").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        if path.is_relative_to(PACKAGE / "cli") or path == PACKAGE / "__main__.py":
            continue
        wrong += [f"{path.relative_to(ROOT)}:{line}" for line, target in _package_imports(path) if target == "cli"]
    for notebook in sorted((ROOT / "book").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(notebook.read_text())["cells"]):
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            try:
                tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("!", "%"))))
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                module = getattr(node, "module", None) or ""
                names = [a.name for a in getattr(node, "names", [])] if isinstance(node, ast.Import) else [module]
                if any(n == "lora_course.cli" or n.startswith("lora_course.cli.") for n in names):
                    wrong.append(f"{notebook.relative_to(ROOT)} cell {i}")
    assert not wrong, "\n".join(wrong)


def test_the_import_check_itself_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from lora_course.recipes import train_from_config\n")
    assert list(_package_imports(bad)) == [(2, "recipes")]


def test_the_config_reaches_the_trainer_whole():
    from lora_course.config import parse_config
    from lora_course.train import TrainConfig

    shared = [f.name for f in dataclasses.fields(TrainConfig)
              if f.name in {g.name for g in dataclasses.fields(parse_config.__globals__["TrainingConfig"])}]
    assert len(shared) >= 15
    # every shared field set to a value unlike its default must arrive as set
    values = {"micro_batch_size": 3, "gradient_accumulation_steps": 5, "max_steps": 7, "num_epochs": 2.5,
              "learning_rate": 3e-3, "weight_decay": 0.05, "optimizer": "sgd", "lr_scheduler": "linear",
              "warmup_steps": 4, "max_grad_norm": 0.5, "gradient_checkpointing": True, "eval_steps": 2,
              "early_stopping_patience": 3, "save_steps": 6, "save_total_limit": 2, "seed": 9, "output_dir": "x",
              "loss_chunk_rows": 256, "compile": True, "padding_free": True}
    assert set(shared) <= set(values), set(shared) - set(values)
    config = parse_config({"base_model": "m", "datasets": ["bundled:instructions"], "val_set_size": 4, **values})
    trainer = config.train_config(progress=False)
    for name in shared:
        assert getattr(trainer, name) == values[name], name
    assert trainer.precision == "auto" and trainer.progress is False


@pytest.mark.parametrize("field, bad", [("save_total_limit", "two"), ("seed", 1.5), ("lora_target_linear", "yes"),
                                        ("max_grad_norm", [1]), ("tokenizer", 3)])
def test_every_field_is_type_checked_from_the_dataclass(field, bad):
    from lora_course.config import ConfigError, parse_config
    from lora_course.config.schema import _TYPES, TrainingConfig

    assert set(_TYPES) == {f.name for f in dataclasses.fields(TrainingConfig)}
    with pytest.raises(ConfigError, match=f"'{field}' must be"):
        parse_config({"base_model": "m", "output_dir": "o", "datasets": ["bundled:instructions"], field: bad})


def test_axolotl_spelling_of_the_sequence_length_is_accepted():
    from lora_course.config import ConfigError, parse_config

    base = {"base_model": "m", "output_dir": "o", "datasets": ["bundled:instructions"]}
    assert parse_config({**base, "sequence_len": 256}).sequence_length == 256
    with pytest.raises(ConfigError, match="both 'sequence_len' and 'sequence_length'"):
        parse_config({**base, "sequence_len": 256, "sequence_length": 128})


def test_every_method_is_prepared_in_one_place():
    from lora_course.lora import METHODS, LoraSettings, lora_layers
    from lora_course.models import TINY, count_parameters
    from lora_course.recipes import prepare_model

    trainable = {}
    for method in METHODS:
        prepared = prepare_model(TINY, method, LoraSettings(r=4, alpha=8), freeze_layers=1, log=None)
        trainable[method] = count_parameters(prepared.model)["trainable"]
        assert bool(lora_layers(prepared.model)) == (method in ("lora", "qlora"))
        assert prepared.quantization == ("nf4" if method == "qlora" else None)
    assert trainable["full"] > trainable["partial"] > trainable["lora"] == trainable["qlora"] > 0


def _tiny_config(path: Path, out: Path, adapter: str) -> Path:
    path.write_text(yaml.safe_dump({
        "base_model": "lora-course/tiny-random-llama", "output_dir": str(out), "adapter": adapter,
        "datasets": [{"path": "bundled:instructions"}], "sequence_length": 64, "micro_batch_size": 4, "max_steps": 3,
        "learning_rate": 1e-2, "lora_r": 4, "lora_alpha": 8}))
    return path


def test_a_qlora_run_trains_evaluates_and_merges_from_the_command_line(tmp_path, capsys):
    pytest.importorskip("bitsandbytes")
    out = tmp_path / "run"
    assert main(["train", str(_tiny_config(tmp_path / "q.yml", out, "qlora"))]) == 0
    adapter = out / "adapter"
    assert json.loads((adapter / "lora_course.json").read_text())["quantization"] == "nf4"
    capsys.readouterr()
    assert main(["eval", "lora-course/tiny-random-llama", "--adapter", str(adapter), "--task", "instructions",
                 "--limit", "4", "--json", str(tmp_path / "eval.json")]) == 0
    results = json.loads((tmp_path / "eval.json").read_text())
    assert set(results["runs"]) == {"base", "adapter0:run"}
    assert main(["merge", "--base", "lora-course/tiny-random-llama", "--adapter", str(adapter),
                 "--out", str(tmp_path / "merged")]) == 0
    report = json.loads((tmp_path / "merged" / "merge_report.json").read_text())
    assert report["quantization"] == "nf4" and report["max_abs_logit_difference"] < 1e-3


def test_the_base_for_an_adapter_is_loaded_as_it_was_trained(tmp_path):
    pytest.importorskip("bitsandbytes")
    from lora_course.adapters import load_base_for_adapter
    from lora_course.recipes import train_from_yaml

    train_from_yaml(_tiny_config(tmp_path / "q.yml", tmp_path / "run", "qlora"), log=None, progress=False)
    model, _, metadata = load_base_for_adapter(tmp_path / "run" / "adapter", log=None)
    assert metadata["quantization"] == "nf4" and metadata["dtype"] == "float32"
    assert getattr(model, "hf_quantizer", None) is not None  # the NF4 base, not the fp32 one


def test_a_mismatch_names_the_model_not_a_cache_folder(tmp_path):
    from lora_course.adapters import BaseModelMismatchError, load_checked
    from lora_course.models import TINY, load_model
    from lora_course.models.offline import cache_root
    from lora_course.recipes import train_from_yaml

    train_from_yaml(_tiny_config(tmp_path / "l.yml", tmp_path / "run", "lora"), log=None, progress=False)
    model, tokenizer = load_model(TINY, log=None)
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight.mul_(1.5)  # another checkpoint of the same architecture
    with pytest.raises(BaseModelMismatchError) as err:
        load_checked(model, tmp_path / "run" / "adapter", tokenizer)
    message = str(err.value)
    assert message.count(TINY) >= 2 and str(cache_root()) not in message
