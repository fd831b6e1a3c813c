import json

import pytest

from lora_course.cli import main


def test_params_json_matches_peft_count(capsys):
    assert main(["params", "HuggingFaceTB/SmolLM2-135M-Instruct", "--r", "16", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["trainable"] == 1_843_200
    assert report["total"] == 134_515_008 + 1_843_200
    assert report["target_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]
    # the adapter holds only A and B, in fp32, plus a small header
    assert 4 * 1_843_200 < report["saved_bytes"] < 4 * 1_843_200 + 40_000


def test_params_full_method_counts_everything(capsys):
    assert main(["params", "meta-llama/Llama-3.1-8B-Instruct", "--method", "full", "--saved-dtype", "bfloat16", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["trainable"] == report["total"] == 8_030_261_248
    assert report["saved_bytes"] > 2 * 8_030_261_248


def test_params_human_output(capsys):
    assert main(["params", "lora-course/tiny-random-llama", "--targets", "all-linear", "--r", "4"]) == 0
    out = capsys.readouterr().out
    assert "trainable parameters" in out and "adapter file size" in out


def test_params_saved_size_matches_a_real_file(tmp_path, capsys):
    from lora_course.lora import LoraSettings, inject_lora, save_adapter
    from lora_course.models import tiny_model

    model, _ = tiny_model()
    inject_lora(model, LoraSettings(r=4, alpha=8, target_modules="all-linear"))
    save_adapter(model, tmp_path)
    assert main(["params", "lora-course/tiny-random-llama", "--targets", "all-linear", "--r", "4", "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)["saved_bytes"]
    actual = (tmp_path / "adapter_model.safetensors").stat().st_size
    assert abs(predicted - actual) <= 16, (predicted, actual)


@pytest.mark.parametrize("args, message", [
    (["--targets", "c_attn"], "not found among the model's linear layers"),
    (["--r", "0"], "positive integer"),
])
def test_params_user_errors_are_one_line(capsys, args, message):
    assert main(["params", "lora-course/tiny-random-llama", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_params_unknown_model(capsys):
    assert main(["params", "nobody/nothing"]) == 2
    assert "Could not load model 'nobody/nothing'" in capsys.readouterr().err
