"""Adapters in practice: metadata and the base check, many adapters on one base, arithmetic
(which combinations are exact), and merging into a standalone model."""

import json

import pytest
import torch

from lora_course.adapters import (
    AdapterSet, BaseModelMismatchError, combine_adapters, load_checked, merge_to_directory, read_metadata,
    save_with_metadata, weighted_delta,
)
from lora_course.adapters.arithmetic import peft_delta
from lora_course.cli import main
from lora_course.lora import AdapterFormatError, LoraSettings, inject_lora, lora_layers
from lora_course.models import TINY, load_model, tiny_model

SETTINGS = LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj"])


def _trained_adapter(path, seed, base_seed=0, settings=SETTINGS, quantization=None):
    """An adapter whose B is non-zero (as after training), saved with metadata."""
    if quantization:
        model, tokenizer = load_model(TINY, quantization=quantization)
    else:
        model, tokenizer = tiny_model(base_seed)
    torch.manual_seed(seed)
    inject_lora(model, settings)
    for _, layer in lora_layers(model):
        torch.nn.init.normal_(layer.lora_B.weight, std=0.05)
    save_with_metadata(model, tokenizer, path, TINY, training_config={"lora_r": settings.r},
                       data_records=[{"seed": seed}], quantization=quantization)
    return model, tokenizer


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


IDS = torch.tensor([[1, 504, 3456, 281, 17, 2]])


def test_metadata_records_what_the_adapter_came_from(tmp_path):
    _trained_adapter(tmp_path / "a", seed=1)
    meta = read_metadata(tmp_path / "a")
    assert meta["base"]["base_model"] == TINY
    assert len(meta["base"]["weights_fingerprint"]) == 64
    assert {"tokenizer", "chat_template"} <= set(meta["base"])
    assert meta["training_config"] == {"lora_r": 4}
    assert meta["training_data_sha256"] and meta["versions"]["torch"] == torch.__version__


def test_the_fingerprint_is_the_same_with_or_without_lora_and_differs_between_bases(tmp_path):
    from lora_course.adapters.metadata import weights_fingerprint

    model, _ = tiny_model(0)
    before = weights_fingerprint(model)
    inject_lora(model, SETTINGS)
    assert weights_fingerprint(model) == before
    assert weights_fingerprint(tiny_model(1)[0]) != before


def test_loading_onto_another_base_fails_with_both_identities_unless_overridden(tmp_path):
    _trained_adapter(tmp_path / "a", seed=1, base_seed=0)
    other, tokenizer = tiny_model(seed=7)  # same architecture, different weights
    with pytest.raises(BaseModelMismatchError, match="weights_fingerprint.*this model has"):
        load_checked(other, tmp_path / "a", tokenizer)
    assert not lora_layers(other)  # nothing was half-loaded
    load_checked(other, tmp_path / "a", tokenizer, allow_mismatch=True)
    assert lora_layers(other)
    right, tokenizer = tiny_model(seed=0)
    load_checked(right, tmp_path / "a", tokenizer)


def test_corrupt_metadata_is_one_clear_error(tmp_path):
    _trained_adapter(tmp_path / "a", seed=1)
    (tmp_path / "a" / "lora_course.json").write_text("{not json")
    with pytest.raises(AdapterFormatError, match="not valid JSON.*Fix"):
        load_checked(tiny_model(0)[0], tmp_path / "a")


def test_many_adapters_on_one_base_switch_disable_and_unload(tmp_path):
    model_a, _ = _trained_adapter(tmp_path / "a", seed=1)
    model_b, _ = _trained_adapter(tmp_path / "b", seed=2)
    base, tokenizer = tiny_model(0)
    expected_base = _logits(base, IDS)
    adapters = AdapterSet(base, tokenizer)
    adapters.load("a", tmp_path / "a")
    adapters.load("b", tmp_path / "b")
    assert adapters.names == ["a", "b"] and adapters.active == "b"
    base_weight = adapters.model.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight
    pointer = base_weight.data_ptr()
    torch.testing.assert_close(_logits(adapters.model, IDS), _logits(model_b, IDS))
    adapters.use("a")
    torch.testing.assert_close(_logits(adapters.model, IDS), _logits(model_a, IDS))
    with adapters.disabled() as plain:
        torch.testing.assert_close(_logits(plain, IDS), expected_base)
    replies = adapters.generate_each(["Hi"], max_new_tokens=3)
    assert set(replies) == {"base", "a", "b"} and adapters.active == "a"
    assert base_weight.data_ptr() == pointer  # one base in memory throughout
    adapters.unload("a")
    assert adapters.names == ["b"] and adapters.active == "b"
    adapters.unload("b")
    assert adapters.model is None
    torch.testing.assert_close(_logits(adapters.base, IDS), expected_base)
    with pytest.raises(KeyError, match="loaded: none"):
        adapters.use("a")


def test_cat_combination_is_exact_and_linear_is_not(tmp_path):
    _trained_adapter(tmp_path / "a", seed=1)
    _trained_adapter(tmp_path / "b", seed=2)
    adapters = AdapterSet(tiny_model(0)[0])
    adapters.load("a", tmp_path / "a")
    adapters.load("b", tmp_path / "b")
    module, weights = "model.layers.1.self_attn.q_proj", [0.7, 0.3]
    target = weighted_delta([peft_delta(adapters.model, module, n) for n in ("a", "b")], weights)
    combine_adapters(adapters, ["a", "b"], weights, "cat", combination="cat")
    torch.testing.assert_close(peft_delta(adapters.model, module, "cat"), target, atol=1e-6, rtol=1e-5)
    combine_adapters(adapters, ["a", "b"], weights, "svd", combination="svd", svd_rank=8)  # rank >= 4 + 4: exact
    torch.testing.assert_close(peft_delta(adapters.model, module, "svd"), target, atol=1e-5, rtol=1e-4)
    combine_adapters(adapters, ["a", "b"], weights, "linear", combination="linear")
    error = (peft_delta(adapters.model, module, "linear") - target).abs().max()
    assert error > 0.01 * target.abs().max()  # the cross terms B_a A_b + B_b A_a


def test_merged_directory_loads_with_plain_transformers_and_answers_the_same(tmp_path):
    from transformers import AutoModelForCausalLM

    trained, _ = _trained_adapter(tmp_path / "a", seed=1)
    report = merge_to_directory(TINY, tmp_path / "a", tmp_path / "merged", log=lambda *_: None)
    assert report.quantization is None and report.max_abs_logit_difference < 1e-4
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any("lora" in n for n, _ in plain.named_parameters())
    torch.testing.assert_close(_logits(plain, IDS), _logits(trained, IDS), atol=1e-4, rtol=1e-4)
    with pytest.raises(FileExistsError, match="not empty"):
        merge_to_directory(TINY, tmp_path / "a", tmp_path / "merged", log=lambda *_: None)


def test_qlora_adapter_merges_into_the_dequantized_base_and_requantizing_costs_rounding(tmp_path):
    from transformers import AutoModelForCausalLM

    from lora_course.adapters.merge import _training_path

    trained, _ = _trained_adapter(tmp_path / "q", seed=1, quantization="nf4")
    with _training_path(trained):
        expected = _logits(trained, IDS)  # what the QLoRA model computes: NF4 base + adapter
    report = merge_to_directory(TINY, tmp_path / "q", tmp_path / "merged", requantize=True, log=lambda *_: None)
    assert report.quantization == "nf4"  # read from the adapter's metadata
    assert report.max_abs_logit_difference < 1e-4
    right = _logits(AutoModelForCausalLM.from_pretrained(tmp_path / "merged"), IDS)
    right_error = (right - expected).abs().max()
    assert right_error < 1e-4
    assert report.requantized_max_abs_logit_difference > 100 * right_error  # rounding W + ΔW to NF4 again
    saved = json.loads((tmp_path / "merged" / "merge_report.json").read_text())
    assert saved["requantized_max_abs_logit_difference"] == report.requantized_max_abs_logit_difference
    # the mistake the module avoids: the same ΔW added to the original 16-bit weights
    merge_to_directory(TINY, tmp_path / "q", tmp_path / "wrong", quantization=None, allow_mismatch=True,
                       log=lambda *_: None)
    wrong = _logits(AutoModelForCausalLM.from_pretrained(tmp_path / "wrong"), IDS)
    assert (wrong - expected).abs().max() > 100 * right_error


def test_merge_and_eval_commands(tmp_path, capsys):
    _trained_adapter(tmp_path / "a", seed=1)
    assert main(["merge", "--base", TINY, "--adapter", str(tmp_path / "a"), "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert main(["eval", TINY, "--adapter", str(tmp_path / "a"), "--task", "instructions", "--limit", "4",
                 "--json", str(tmp_path / "r.json")]) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert set(results["runs"]) == {"base", "adapter0:a"} and len(results["comparisons"]) == 1
    assert main(["eval", TINY, "--adapter", str(tmp_path / "missing"), "--task", "instructions"]) == 2
    assert "does not exist" in capsys.readouterr().err
