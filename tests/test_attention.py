"""per_example_sdpa: padding-free batches attended one example at a time, the same numbers as the padded
batch and as transformers' SDPA over the block mask; its fall-backs and refusals; the trainer's choice."""

import pytest
import torch
import torch.nn.functional as F

from lora_course.data import Collator, PaddingFreeCollator, format_chat
from lora_course.errors import SettingsError
from lora_course.lora import LoraSettings, inject_lora
from lora_course.models import attention as attention_module
from lora_course.models import tiny_model, tiny_tokenizer
from lora_course.models.attention import (
    PER_EXAMPLE_SDPA,
    attention_for_padding_free,
    per_example_sdpa,
    use_attention,
)
from lora_course.train import TrainConfig, summed_token_loss, train

LENGTHS_FROM = [1, 9, 3, 14, 6]  # answer sizes: examples of very different lengths


@pytest.fixture(scope="module")
def examples():
    tok = tiny_tokenizer()
    return [format_chat(tok, [{"role": "user", "content": f"Question {i}?"},
                              {"role": "assistant", "content": "word " * n}]) for i, n in enumerate(LENGTHS_FROM)]


def lora_model(attention="sdpa", dtype=torch.float32):
    """The tiny Llama (4 query heads sharing 2 key/value heads: grouped-query attention) with LoRA whose B
    is not zero, so that every adapter matrix has a gradient."""
    model, _ = tiny_model(seed=0, attn_implementation=attention)
    torch.manual_seed(1)
    inject_lora(model, LoraSettings(r=4, alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    assert model.config.num_attention_heads // model.config.num_key_value_heads == 2
    return model.to(dtype)


class SdpaCalls:
    """Records the query length and mask of every SDPA call (to see which path ran)."""

    def __init__(self, monkeypatch):
        self.calls, real = [], F.scaled_dot_product_attention

        def spy(query, key, value, attn_mask=None, **kwargs):
            self.calls.append((query.shape[2], attn_mask is not None, torch.is_grad_enabled()))
            return real(query, key, value, attn_mask=attn_mask, **kwargs)

        monkeypatch.setattr(F, "scaled_dot_product_attention", spy)


def run(model, batch):
    """Logits of the real tokens in order (one row per token), the summed loss, and the LoRA gradients."""
    model.zero_grad(set_to_none=True)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits
    real = batch["attention_mask"].bool() if "attention_mask" in batch else torch.ones_like(batch["input_ids"], dtype=bool)
    loss = summed_token_loss(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits[real].detach(), loss.detach(), grads


def test_per_example_sdpa_gives_the_padded_batch_s_and_the_block_mask_s_logits_loss_and_lora_gradients(
        examples, monkeypatch):
    padded = Collator(tiny_tokenizer().pad_token_id)(examples)
    flat = PaddingFreeCollator(flash_kwargs=True)(examples)
    lengths = [len(e.input_ids) for e in examples]
    model = lora_model("sdpa")
    reference = {"padded": run(model, padded), "block mask": run(model, flat)}
    sdpa = SdpaCalls(monkeypatch)
    undo = use_attention(model, PER_EXAMPLE_SDPA)
    ours = run(model, flat)
    undo()
    assert model.config._attn_implementation == "sdpa"
    layers = model.config.num_hidden_layers
    forward_calls = [(n, masked) for n, masked, grad in sdpa.calls if grad]
    # one causal call per example and layer, each over that example's tokens only, no mask (twice: logits, loss)
    assert forward_calls == 2 * layers * [(n, False) for n in lengths]
    for name, (logits, loss, grads) in reference.items():
        torch.testing.assert_close(ours[0], logits, rtol=1e-5, atol=1e-5, msg=name)
        torch.testing.assert_close(ours[1], loss, rtol=1e-5, atol=1e-4, msg=name)
        assert ours[2].keys() == grads.keys() and len(grads) == 7 * layers * 2  # A and B of every linear layer
        for key, grad in grads.items():
            torch.testing.assert_close(ours[2][key], grad, rtol=1e-4, atol=1e-5 * grad.abs().max().item(),
                                       msg=f"{name}: {key}")


def test_in_bf16_per_example_sdpa_agrees_with_the_block_mask_to_bf16_rounding(examples):
    flat = PaddingFreeCollator(flash_kwargs=True)(examples)
    model = lora_model("sdpa", torch.bfloat16)
    dense_logits, dense_loss, _ = run(model, flat)
    undo = use_attention(model, PER_EXAMPLE_SDPA)
    logits, loss, grads = run(model, flat)
    undo()
    assert logits.dtype == torch.bfloat16 and grads
    scale = dense_logits.abs().max().item()
    torch.testing.assert_close(logits, dense_logits, rtol=2e-2, atol=2e-2 * scale)
    torch.testing.assert_close(loss, dense_loss, rtol=1e-2, atol=0.0)


def test_without_boundaries_it_is_transformers_sdpa_padded_batches_and_generation_alike(examples):
    """No cu_seq_lens (a padded batch, a generation step with its cache): transformers' SDPA with the mask
    transformers built, so the same logits and the same greedy tokens."""
    padded = Collator(tiny_tokenizer().pad_token_id)(examples)
    model = lora_model("sdpa").eval()
    prompt = torch.tensor([examples[1].input_ids[:12]])
    with torch.no_grad():
        logits = model(**{k: v for k, v in padded.items() if k != "labels"}, use_cache=False).logits
        tokens = model.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=2)
        undo = use_attention(model, PER_EXAMPLE_SDPA)
        ours = model(**{k: v for k, v in padded.items() if k != "labels"}, use_cache=False).logits
        our_tokens = model.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=2)
        undo()
    assert torch.equal(ours, logits)
    assert torch.equal(our_tokens, tokens) and our_tokens.shape[1] == prompt.shape[1] + 6


def test_sliding_window_layers_fall_back_to_the_block_mask_and_full_layers_do_not(monkeypatch):
    """A Qwen2 with one full and one sliding-window layer (window 3, shorter than the examples): the sliding
    layer goes to transformers' SDPA with its sliding block mask, the full one per example; the row gives each
    example the logits it has alone."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, use_sliding_window=True, sliding_window=3, max_window_layers=1,
                         attn_implementation="sdpa")
    assert config.layer_types == ["full_attention", "sliding_attention"]
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    rows = [torch.randint(0, 64, (n,)).tolist() for n in (5, 9, 7)]
    flat = PaddingFreeCollator(flash_kwargs=True)([{"input_ids": r, "labels": r} for r in rows])
    inputs = {k: v for k, v in flat.items() if k != "labels"}
    with torch.no_grad():
        alone = torch.cat([model(torch.tensor([r]), use_cache=False).logits[0] for r in rows])
        sdpa = SdpaCalls(monkeypatch)
        undo = use_attention(model, PER_EXAMPLE_SDPA)
        ours = model(**inputs, use_cache=False).logits[0]
        undo()
    torch.testing.assert_close(ours, alone, rtol=1e-5, atol=1e-5)
    assert [(n, masked) for n, masked, _ in sdpa.calls] == [(5, False), (9, False), (7, False), (21, True)]


def _qkv(lengths, heads=4, kv_heads=2, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    return (torch.randn(1, heads, n, dim, generator=generator), torch.randn(1, kv_heads, n, dim, generator=generator),
            torch.randn(1, kv_heads, n, dim, generator=generator))


class _Module(torch.nn.Module):  # what transformers' attention functions read off the layer
    num_key_value_groups = 2
    is_causal = True


def _boundaries(lengths):
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)


def _block_mask(lengths):
    segment = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    n = len(segment)
    causal = torch.arange(n)[:, None] >= torch.arange(n)[None, :]
    return (causal & (segment[:, None] == segment[None, :]))[None, None]


@pytest.mark.parametrize("native_gqa", [True, False])
def test_the_module_s_scale_and_grouped_heads_are_honoured(native_gqa, monkeypatch):
    """Against transformers' sdpa_attention_forward over the block mask, with a scale that is not 1/sqrt(d),
    with SDPA's own grouped-query heads and with the repeated key/value heads of torch < 2.5."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    monkeypatch.setattr(attention_module, "_sdpa_has_gqa", lambda: native_gqa)
    lengths = [3, 7, 1, 5]
    q, k, v = _qkv(lengths)
    cu = _boundaries(lengths)
    for scaling in (None, 0.9):
        ours, weights = per_example_sdpa(_Module(), q, k, v, None, scaling=scaling, cu_seq_lens_q=cu, cu_seq_lens_k=cu)
        theirs, _ = sdpa_attention_forward(_Module(), q, k, v, _block_mask(lengths), scaling=scaling)
        assert weights is None and ours.shape == (1, sum(lengths), 4, 8) and ours.is_contiguous()
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    default, _ = per_example_sdpa(_Module(), q, k, v, None, cu_seq_lens_q=cu)
    assert (default - ours).abs().max() > 1e-3  # the scale mattered


def test_attention_dropout_drops_within_each_example_only():
    """Dropout (a training layer's attention_dropout) is applied per example: it changes the output, and the
    tokens of one example still see nothing of another's."""
    lengths = [4, 6]
    q, k, v = _qkv(lengths)
    cu = _boundaries(lengths)
    plain, _ = per_example_sdpa(_Module(), q, k, v, None, cu_seq_lens_q=cu)
    torch.manual_seed(3)
    dropped, _ = per_example_sdpa(_Module(), q, k, v, None, dropout=0.5, cu_seq_lens_q=cu)
    other_v = v.clone()
    other_v[:, :, 4:] += 1.0  # only the second example's values change
    torch.manual_seed(3)
    changed, _ = per_example_sdpa(_Module(), q, k, other_v, None, dropout=0.5, cu_seq_lens_q=cu)
    assert (dropped - plain).abs().max() > 1e-2
    assert torch.equal(changed[:, :4], dropped[:, :4]) and not torch.equal(changed[:, 4:], dropped[:, 4:])


@pytest.mark.parametrize("option, match", [("softcap", "soft-capping"), ("s_aux", "attention sinks")])
def test_what_sdpa_cannot_do_is_refused_with_the_fix(option, match):
    q, k, v = _qkv([3, 4])
    with pytest.raises(SettingsError, match=f"{match}.*Fix: load the model with attn_implementation='eager'"):
        per_example_sdpa(_Module(), q, k, v, None, cu_seq_lens_q=_boundaries([3, 4]), **{option: torch.tensor(30.0)})


def test_boundaries_that_do_not_fit_the_batch_are_refused():
    q, k, v = _qkv([3, 4])
    for bad in (dict(cu_seq_lens_q=_boundaries([3, 3])),  # do not end at the row's length
                dict(cu_seq_lens_q=_boundaries([3, 4]), cu_seq_lens_k=_boundaries([2, 5]))):
        with pytest.raises(SettingsError, match="one flattened row.*PaddingFreeCollator"):
            per_example_sdpa(_Module(), q, k, v, None, **bad)
    two_rows = [t.expand(2, -1, -1, -1) for t in (q, k, v)]
    with pytest.raises(SettingsError, match="one flattened row"):
        per_example_sdpa(_Module(), *two_rows, None, cu_seq_lens_q=_boundaries([3, 4]))


class _Stub(torch.nn.Module):
    _supports_attention_backend = True

    def __init__(self, implementation, **config):
        from transformers import LlamaConfig

        super().__init__()
        self.config = LlamaConfig(**config)
        self.config._attn_implementation_internal = implementation


def test_the_rule_replaces_sdpa_and_eager_keeps_flash_and_what_sdpa_cannot_do():
    for implementation in ("sdpa", "eager"):
        choice = attention_for_padding_free(_Stub(implementation))
        assert (choice.implementation, choice.boundaries) == (PER_EXAMPLE_SDPA, True)
    flash = attention_for_padding_free(_Stub("flash_attention_2"))
    assert (flash.implementation, flash.boundaries) == ("flash_attention_2", True)
    flex = attention_for_padding_free(_Stub("flex_attention"))
    assert (flex.implementation, flex.boundaries) == ("flex_attention", False)
    capped = _Stub("eager")
    capped.config.attn_logit_softcapping = 50.0
    assert attention_for_padding_free(capped).implementation == "eager"
    assert "soft-caps" in attention_for_padding_free(capped).reason
    sinks = _Stub("eager")
    sinks.layer = torch.nn.Module()
    sinks.layer.sinks = torch.nn.Parameter(torch.zeros(4))
    assert attention_for_padding_free(sinks).implementation == "eager"
    legacy = _Stub("sdpa")
    legacy._supports_attention_backend = False
    assert attention_for_padding_free(legacy).implementation == "sdpa"


def test_use_attention_refuses_a_model_that_does_not_switch(monkeypatch):
    model = lora_model("sdpa")
    monkeypatch.setattr(type(model), "set_attn_implementation", lambda self, name: None)
    with pytest.raises(SettingsError, match="did not switch its attention.*Fix"):
        use_attention(model, PER_EXAMPLE_SDPA)


def test_the_trainer_attends_per_example_with_padding_free_and_sets_the_model_back(examples, monkeypatch):
    """padding_free on the (eager) tiny model: every SDPA call of training, of the evaluations in the run and
    of the final one is one example's, with no mask; afterwards the model is eager again, also after an error."""
    data = examples[:4]
    lengths = {len(e.input_ids) for e in data}
    model = lora_model("eager")
    sdpa = SdpaCalls(monkeypatch)
    messages = []
    config = TrainConfig(micro_batch_size=4, max_steps=2, eval_steps=1, padding_free=True, progress=False, shuffle=False)
    train(model, data, None, config, eval_data=data, log=messages.append)
    assert model.config._attn_implementation == "eager"
    assert any(m.startswith(f"attention: {PER_EXAMPLE_SDPA} instead of eager") for m in messages)
    training = [n for n, _, grad in sdpa.calls if grad]
    evaluating = [n for n, _, grad in sdpa.calls if not grad]
    layers = model.config.num_hidden_layers
    assert len(training) == 2 * layers * len(data) and set(training) == lengths
    assert len(evaluating) == 3 * layers * len(data) and set(evaluating) == lengths  # 2 evaluations + the final one
    assert not any(masked for _, masked, _ in sdpa.calls)

    def interrupted(*args, **kwargs):
        assert model.config._attn_implementation == PER_EXAMPLE_SDPA
        raise KeyboardInterrupt

    monkeypatch.setattr("lora_course.train.loop.summed_token_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(model, data, None, config, log=None)
    assert model.config._attn_implementation == "eager"


def test_padded_runs_leave_the_attention_alone(examples, monkeypatch):
    model = lora_model("eager")
    sdpa = SdpaCalls(monkeypatch)
    train(model, examples[:4], Collator(tiny_tokenizer().pad_token_id),
          TrainConfig(micro_batch_size=4, max_steps=1, progress=False), log=None)
    assert model.config._attn_implementation == "eager" and sdpa.calls == []
