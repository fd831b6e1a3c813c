"""Mistakes a user makes at the command line end in one message that names the thing and the fix, exit
status 2, no traceback, and (for data and resume mistakes) before any model is loaded."""

import json
import time

import pytest

from lora_course.cli import main
from lora_course.errors import CourseError

TINY_CONFIG = ("base_model: lora-course/tiny-random-llama\noutput_dir: {out}\ndatasets:\n  - path: {data}\n"
               "sequence_length: 64\nmicro_batch_size: 2\nmax_steps: 2\nlora_r: 4\nlora_alpha: 8\n")


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if anything loads a model: these mistakes must be caught before that."""
    import lora_course.recipes.prepare as prepare

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the mistake was reported")

    monkeypatch.setattr(prepare, "load_model", refuse)


def _run(tmp_path, capsys, data, *extra, write=None):
    if write:
        (tmp_path / write[0]).write_text(write[1])
    config = tmp_path / "c.yml"
    config.write_text(TINY_CONFIG.format(out=tmp_path / "run", data=data))
    start = time.perf_counter()
    status = main(["train", str(config), *extra])
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    return status, err, seconds


def _assert_one_clear_error(status, err, seconds, *words):
    assert status == 2, err
    assert "Traceback" not in err and "Fix:" in err
    for word in words:
        assert word in err, (word, err)
    assert seconds < 10


@pytest.mark.parametrize("data, write, words", [
    ("{tmp}/missing.jsonl", None, ["missing.jsonl", "does not exist"]),
    ("./data/train.jsonl", None, ["./data/train.jsonl", "does not exist"]),  # a relative path, not a hub id
    ("{tmp}/notes.txt", ("notes.txt", "hello\n"), ["notes.txt", "JSONL"]),
    ("{tmp}/broken.jsonl", ("broken.jsonl", '{"messages": []}\nthis is not json\n'), ["broken.jsonl line 2", "JSONL"]),
    ("{tmp}/array.json", ("array.json", "[1, 2, 3]"), ["array.json record 0", "object"]),
    ("{tmp}/empty.jsonl", ("empty.jsonl", "\n\n"), ["empty.jsonl holds no records"]),
    ("{tmp}/wrong.jsonl", ("wrong.jsonl", '{"text": "hi"}\n'), ["wrong.jsonl row 0", "messages"]),
])
def test_bad_data_is_one_line_before_any_model_loads(tmp_path, capsys, no_model_loads, data, write, words):
    status, err, seconds = _run(tmp_path, capsys, data.format(tmp=tmp_path), write=write)
    _assert_one_clear_error(status, err, seconds, *words)
    assert "on the hub" not in err
    assert not (tmp_path / "run").exists()


def test_a_hub_id_offline_says_the_hub_is_unreachable(tmp_path, capsys, no_model_loads):
    status, err, seconds = _run(tmp_path, capsys, "someone/some-dataset")
    _assert_one_clear_error(status, err, seconds, "someone/some-dataset", "hub")


@pytest.mark.parametrize("leftover", [None, "metrics.jsonl", "summary.json"])
def test_resume_without_a_checkpoint_is_one_line_before_any_model_loads(tmp_path, capsys, no_model_loads, leftover):
    if leftover:  # a folder from a run that never saved a checkpoint
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / leftover).write_text(json.dumps({"step": 1}) + "\n")
    status, err, seconds = _run(tmp_path, capsys, "bundled:instructions", "--resume")
    _assert_one_clear_error(status, err, seconds, "Nothing to resume", str(tmp_path / "run"))


def test_an_unparseable_gpu_memory_size_is_one_line(capsys):
    assert main(["memory", "lora-course/tiny-random-llama", "--gpu-memory", "sixteen gigs"]) == 2
    err = capsys.readouterr().err
    assert "sixteen gigs" in err and "Fix:" in err and "Traceback" not in err


def test_an_adapter_folder_that_is_not_there_is_one_line(tmp_path, capsys):
    assert main(["eval", "lora-course/tiny-random-llama", "--adapter", str(tmp_path / "nope"),
                 "--task", "instructions"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "does not exist" in err and "Traceback" not in err


def test_every_user_error_class_is_a_course_error():
    """The CLI catches CourseError alone: every kind the package raises for a user's mistake must be one."""
    import inspect

    from lora_course import errors
    from lora_course.adapters import BaseModelMismatchError
    from lora_course.config import ConfigError
    from lora_course.data import HubDataUnavailable
    from lora_course.grading.repair import SubmissionError
    from lora_course.grading.source_format import SourceFormatError
    from lora_course.lora import AdapterFormatError
    from lora_course.models import ModelNotAvailableError

    kinds = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, Exception)]
    kinds += [BaseModelMismatchError, ConfigError, HubDataUnavailable, SubmissionError, SourceFormatError,
              AdapterFormatError, ModelNotAvailableError]
    assert all(issubclass(kind, CourseError) for kind in kinds)


def test_no_module_of_the_cli_keeps_its_own_list_of_exceptions():
    from pathlib import Path

    import lora_course.cli

    for path in Path(lora_course.cli.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "except (" not in text and "UserError" not in text, path.name


def test_params_and_memory_name_a_bad_argument_or_config_in_one_line(tmp_path, capsys):
    assert main(["params", "lora-course/tiny-random-llama", "--layers", "0,a"]) == 2
    assert "--layers" in capsys.readouterr().err
    bad = tmp_path / "config.json"
    bad.write_text('{"model_type": "not-a-model", "hidden_size": 8}')
    for command in (["params", str(bad)], ["memory", str(bad)]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert "Fix:" in err and "Traceback" not in err and "config.json" in err


def test_compare_reads_the_data_before_the_first_method_trains(tmp_path, capsys, no_model_loads):
    config = tmp_path / "c.yml"
    config.write_text(TINY_CONFIG.format(out=tmp_path / "run", data=tmp_path / "missing.jsonl"))
    assert main(["compare", str(config)]) == 2
    err = capsys.readouterr().err
    assert "missing.jsonl" in err and "does not exist" in err and not (tmp_path / "run-compare").exists()


@pytest.mark.parametrize("path, local", [("org/name", False), ("imdb", False), ("C:/data", True),
                                         ("C:\\data\\train", True), ("./train", True), ("data/train.jsonl", True)])
def test_a_data_path_is_a_file_or_a_hub_id(path, local):
    from lora_course.config.datasets import looks_local

    assert looks_local(path) == local


def test_a_jsonl_file_with_a_byte_order_mark_reads(tmp_path):
    from lora_course.config import DatasetSpec
    from lora_course.config.datasets import load_records

    path = tmp_path / "excel.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n',
                    encoding="utf-8-sig")
    assert load_records(DatasetSpec(path=str(path)))[0]["messages"][1]["content"] == "yo"


def test_the_chunked_loss_refuses_a_model_that_transforms_its_logits():
    import torch

    from lora_course.errors import SettingsError
    from lora_course.models import tiny_model
    from lora_course.train import summed_token_loss

    model, _ = tiny_model(seed=0)
    model.config.final_logit_softcapping = 30.0
    ids = torch.randint(3, 100, (1, 8))
    with pytest.raises(SettingsError, match="final_logit_softcapping"):
        summed_token_loss(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}, 4)
