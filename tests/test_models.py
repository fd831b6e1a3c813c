"""Model loading: the tiny model, the offline SmolLM2, configs without weights, clear errors."""

import time

import pytest
import torch

from lora_course import SMOLLM2
from lora_course.models import (
    TINY,
    ModelNotAvailableError,
    count_parameters,
    load_config,
    load_model,
    meta_model,
    tiny_model,
    tiny_qwen2_model,
)
from lora_course.models import offline


def test_tiny_model_is_deterministic_and_smollm2_shaped():
    a, tok = tiny_model(seed=0)
    b, _ = tiny_model(seed=0)
    c, _ = tiny_model(seed=1)
    assert type(a).__name__ == "LlamaForCausalLM"
    assert a.config.vocab_size == len(tok) == 49152
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    assert tok.eos_token == "<|im_end|>" and tok.chat_template


def test_tiny_qwen2_model_has_biases_on_q_k_v_only_and_each_lora_bias_mode_trains_its_share():
    from lora_course.lora import LoraSettings, inject_lora

    a, tok = tiny_qwen2_model(seed=0)
    b, _ = tiny_qwen2_model(seed=0)
    assert type(a).__name__ == "Qwen2ForCausalLM" and a.config.vocab_size == len(tok)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    attn = a.model.layers[0].self_attn
    assert all(getattr(attn, m).bias is not None for m in ("q_proj", "k_proj", "v_proj")) and attn.o_proj.bias is None
    assert not any(torch.equal(getattr(attn, m).bias, torch.zeros_like(getattr(attn, m).bias)) for m in ("q_proj", "v_proj"))
    widths = {m: getattr(attn, m).out_features for m in ("q_proj", "k_proj", "v_proj")}
    layers = a.config.num_hidden_layers
    lora = layers * 4 * sum(getattr(attn, m).in_features + widths[m] for m in ("q_proj", "v_proj"))
    expected = {"none": lora, "all": lora + layers * sum(widths.values()),
                "lora_only": lora + layers * (widths["q_proj"] + widths["v_proj"])}
    for bias, count in expected.items():
        model, _ = tiny_qwen2_model()
        inject_lora(model, LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj"], bias=bias))
        assert count_parameters(model)["trainable"] == count, bias


def test_tiny_model_loads_by_name_from_disk():
    model, tok = load_model(TINY, device="cpu")
    reference, _ = tiny_model(seed=0)
    x = torch.tensor([[1, 2, 3, 4]])
    torch.testing.assert_close(model(x).logits, reference(x).logits)
    assert model.name_or_path == TINY


def test_count_parameters_counts_tied_embeddings_once(tiny):
    model, _ = tiny
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert count_parameters(model)["total"] == sum(p.numel() for p in set(model.parameters()))


@pytest.mark.parametrize(
    "name, total",
    [(SMOLLM2, 134_515_008), ("meta-llama/Llama-3.1-8B-Instruct", 8_030_261_248), ("Qwen/Qwen2.5-3B-Instruct", 3_085_938_688)],
)
def test_configs_build_on_meta_without_weights(name, total):
    model = meta_model(load_config(name))
    assert next(model.parameters()).device.type == "meta"
    assert count_parameters(model)["total"] == total


def test_config_json_path(tmp_path):
    model, _ = tiny_model()
    model.config.save_pretrained(tmp_path)
    assert load_config(tmp_path / "config.json").hidden_size == 64


def test_unknown_model_error_names_everything_tried():
    with pytest.raises(ModelNotAvailableError) as err:
        load_model("no-such-org/no-such-model")
    message = str(err.value)
    assert "no-such-org/no-such-model" in message
    assert "local folder" in message and "hub" in message and "offline copies" in message
    assert "Fix:" in message


def test_missing_local_path_error():
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        load_model("./models/not-here")


def test_bad_dtype_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown dtype"):
        load_model(TINY, dtype="float8")


@pytest.mark.slow
def test_offline_smollm2_is_the_real_model_and_knows_paris(smollm2):
    model, tokenizer = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert count_parameters(model)["total"] == 134_515_008
    assert offline.is_cached(SMOLLM2) or model.name_or_path == SMOLLM2
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer


@pytest.mark.slow
def test_warm_load_is_fast(smollm2):
    """The cache is in place after the session fixture; a second load is a plain local load."""
    start = time.perf_counter()
    model, _ = load_model(SMOLLM2, device="cpu")
    elapsed = time.perf_counter() - start
    print(f"warm load of {SMOLLM2}: {elapsed:.1f} s")
    assert count_parameters(model)["total"] == 134_515_008


def test_nf4_quantized_load_counts_real_parameters_and_trains_lora():
    """QLoRA's loading path (bitsandbytes NF4 + double quantization); bitsandbytes >= 0.48 runs it on CPU."""
    pytest.importorskip("bitsandbytes")
    from lora_course.lora import LoraSettings, inject_lora

    model, _ = load_model(TINY, quantization="nf4", device="cpu")
    q_proj = model.model.layers[0].self_attn.q_proj
    assert type(q_proj).__name__ == "Linear4bit"
    assert q_proj.weight.quant_state.nested  # double quantization is on
    assert count_parameters(model)["total"] == count_parameters(tiny_model()[0])["total"]
    inject_lora(model, LoraSettings(r=4, alpha=8))
    x = torch.tensor([[5, 6, 7, 8, 9]])
    model(x, labels=x).loss.backward()
    trained = [n for n, p in model.named_parameters() if p.grad is not None]
    assert trained and all("lora_" in n for n in trained)
