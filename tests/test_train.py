"""The training loop: accumulation that equals a big batch, checkpointing, resuming, logging."""

import json

import pytest
import torch

from lora_course.data import Collator, PaddingFreeCollator, format_chat
from lora_course.errors import ResumeError
from lora_course.lora import LoraSettings, inject_lora
from lora_course.models import tiny_model, tiny_tokenizer
from lora_course.train import (
    TrainConfig,
    checkpoint_paths,
    summed_token_loss,
    target_tokens,
    train,
)
from lora_course.train.loss import IGNORE_INDEX


@pytest.fixture(scope="module")
def examples():
    tok = tiny_tokenizer()
    # deliberately different lengths: that is where mean-of-means goes wrong
    answers = ["5", "The answer is " + "very " * 12 + "long", "ok", "Answer: " + "x y " * 20, "no", "Answer: 42",
               "a b c", "It is " + "z " * 30]
    return [format_chat(tok, [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": a}])
            for i, a in enumerate(answers)]


@pytest.fixture(scope="module")
def collate():
    return Collator(tiny_tokenizer().pad_token_id)


def lora_model(dropout=0.0, seed=0):
    model, _ = tiny_model(seed=seed)
    torch.manual_seed(1)
    inject_lora(model, LoraSettings(r=4, alpha=8, dropout=dropout, target_modules="all-linear"))
    with torch.no_grad():  # non-zero B so that every adapter matrix has a gradient from step 1
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    return model


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_accumulated_micro_batches_equal_one_big_batch_and_mean_of_means_does_not(examples, collate):
    k = 4
    big = lora_model()
    batch = collate(examples[:k])
    (summed_token_loss(big, batch) / target_tokens(batch["labels"])).backward()
    reference = grads(big)

    accumulated = lora_model()
    micro = [collate([e]) for e in examples[:k]]
    window_tokens = sum(target_tokens(b["labels"]) for b in micro)
    for b in micro:
        (summed_token_loss(accumulated, b) / window_tokens).backward()
    naive = lora_model()
    for b in micro:  # the 2024 bug: each micro-batch's mean, averaged
        (summed_token_loss(naive, b) / target_tokens(b["labels"]) / k).backward()

    ours, theirs = grads(accumulated), grads(naive)
    assert ours.keys() == reference.keys() and len(ours) > 0
    for name in reference:
        torch.testing.assert_close(ours[name], reference[name], atol=1e-5, rtol=1e-4)
    worst = max((theirs[n] - reference[n]).abs().max().item() / reference[n].abs().max().item() for n in reference)
    assert worst > 0.05, f"mean-of-means should differ visibly with unequal lengths (relative diff {worst:.3g})"


def test_train_with_accumulation_matches_the_big_batch_step(examples, collate):
    """Through the loop itself: 1 step of batch 4 == 1 step of 4 micro-batches of 1 (same examples)."""
    data = examples[:4]
    common = dict(max_steps=1, optimizer="sgd", learning_rate=0.5, max_grad_norm=None, progress=False, seed=3)
    big, small = lora_model(), lora_model()
    train(big, data, collate, TrainConfig(micro_batch_size=4, **common))
    # the seeded shuffle differs by batch size, so give the small run the same 4 examples in any order
    train(small, data, collate, TrainConfig(micro_batch_size=1, gradient_accumulation_steps=4, **common))
    for (name, p), q in zip(big.named_parameters(), small.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=name)


def test_loss_decreases_and_only_adapters_change(examples, collate):
    model = lora_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = train(model, examples, collate, TrainConfig(micro_batch_size=2, max_steps=12, learning_rate=5e-3,
                                                         progress=False))
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < losses[0]
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) != ("lora_" in name), name
    assert result.tokens == sum(r["target_tokens"] for r in result.history)


def test_gradient_checkpointing_gives_the_same_gradients_with_frozen_embeddings(examples, collate):
    batch = collate(examples[:3])
    plain, checkpointed = lora_model(), lora_model()
    checkpointed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    checkpointed.train(), plain.train()
    for m in (plain, checkpointed):
        summed_token_loss(m, batch).backward()
    a, b = grads(plain), grads(checkpointed)
    assert a.keys() == b.keys() and len(a) == 3 * 7 * 2
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-4)


def test_checkpointing_setting_and_cache_are_restored_after_training(examples, collate):
    model = lora_model()
    assert model.config.use_cache is True and not model.is_gradient_checkpointing
    train(model, examples, collate, TrainConfig(micro_batch_size=2, max_steps=2, gradient_checkpointing=True, progress=False))
    assert model.config.use_cache is True and not model.is_gradient_checkpointing


class _InterruptAfter:
    """A collator that raises KeyboardInterrupt (Ctrl-C) on its n-th call: a run killed mid-way."""

    def __init__(self, collate, n):
        self.collate, self.n, self.calls = collate, n, 0

    def __call__(self, batch):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.collate(batch)


def test_interrupted_and_resumed_run_ends_with_the_same_weights(examples, collate, tmp_path):
    # dropout > 0 and a shuffled order: resuming must restore RNG state and data position too
    config = dict(micro_batch_size=2, gradient_accumulation_steps=2, max_steps=6, learning_rate=1e-2,
                  warmup_steps=2, progress=False, seed=11)
    straight = lora_model(dropout=0.1)
    train(straight, examples, collate, TrainConfig(**config))

    resumed = lora_model(dropout=0.1)
    out = tmp_path / "run"
    first = train(resumed, examples, _InterruptAfter(collate, 7), TrainConfig(output_dir=str(out), **config), log=lambda *a: None)
    assert first.interrupted and first.steps == 3 and len(checkpoint_paths(out)) == 1
    fresh = lora_model(dropout=0.1, seed=0)  # a new process would start from a fresh model
    second = train(fresh, examples, collate, TrainConfig(output_dir=str(out), **config), resume=True, log=lambda *a: None)
    assert second.steps == 6
    for (name, p), q in zip(straight.named_parameters(), fresh.parameters()):
        torch.testing.assert_close(q, p, atol=0, rtol=0, msg=name)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_without_checkpoint_is_a_clear_error(examples, collate, tmp_path):
    with pytest.raises(ResumeError, match="Nothing to resume"):
        train(lora_model(), examples, collate, TrainConfig(output_dir=str(tmp_path), max_steps=1, progress=False), resume=True)


def test_early_stopping_on_eval_loss(examples, collate):
    # a learning rate far too high makes the eval loss rise, so patience runs out before max_steps
    model = lora_model()
    result = train(model, examples[:6], collate, TrainConfig(micro_batch_size=2, max_steps=40, learning_rate=3.0,
                   max_grad_norm=None, eval_steps=1, early_stopping_patience=2, progress=False),
                   eval_data=examples[6:], log=lambda *a: None)
    assert result.stopped_early and result.steps < 40
    assert all("eval_loss" in r for r in result.history)


def test_target_tokens_skip_the_first_position_and_ignored_labels():
    labels = torch.tensor([[5, 6, IGNORE_INDEX, 7], [IGNORE_INDEX, IGNORE_INDEX, 8, IGNORE_INDEX]])
    assert target_tokens(labels) == 3


@pytest.mark.parametrize("name", ["adamw_8bit", "sgd"])
def test_other_optimizers_train(examples, collate, name):
    pytest.importorskip("bitsandbytes")
    model = lora_model()
    result = train(model, examples, collate, TrainConfig(micro_batch_size=2, max_steps=4, optimizer=name,
                                                         learning_rate=5e-3 if name != "sgd" else 0.5, progress=False))
    assert result.steps == 4 and result.history[-1]["loss"] < result.history[0]["loss"]


def test_qlora_trains_through_the_loop(examples, collate):
    """QLoRA: NF4 base (bitsandbytes runs 4-bit on CPU), fp32 adapters, the same loop."""
    pytest.importorskip("bitsandbytes")
    from lora_course.models import TINY, load_model

    model, _ = load_model(TINY, quantization="nf4", device="cpu", log=lambda *a: None)
    inject_lora(model, LoraSettings(r=4, alpha=8, target_modules="all-linear"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = train(model, examples, collate, TrainConfig(micro_batch_size=2, max_steps=6, learning_rate=1e-2,
                                                         progress=False))
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    for name, p in model.named_parameters():  # the packed 4-bit weights stay as they were
        assert torch.equal(p, before[name]) != ("lora_" in name), name


def reference_loss(model, batch):
    """The plain computation: every position's logits, shifted, summed cross-entropy."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), batch["labels"][:, 1:].reshape(-1),
                                             ignore_index=IGNORE_INDEX, reduction="sum")


def test_loss_on_target_positions_only_equals_the_loss_over_all_logits(examples, collate):
    from lora_course.data import PackedCollator, pack

    tok = tiny_tokenizer()
    padded = collate(examples[:4])
    everything = dict(padded, labels=torch.where(padded["attention_mask"].bool(), padded["input_ids"], IGNORE_INDEX))
    packed = PackedCollator(tok.pad_token_id)(pack(examples[:4], 128))
    for batch in (padded, everything, packed):
        ours_model, reference_model = lora_model(), lora_model()
        ours, reference = summed_token_loss(ours_model, batch), reference_loss(reference_model, batch)
        assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
        ours.backward()
        reference.backward()
        for name, g in grads(reference_model).items():
            torch.testing.assert_close(grads(ours_model)[name], g, rtol=1e-4, atol=1e-6)
    # it really skipped the head on prompt and padding positions: one logits row per target token
    model = lora_model()
    rows = []
    handle = model.get_output_embeddings().register_forward_hook(lambda m, a, out: rows.append(out.shape[0]))
    summed_token_loss(model, padded)
    handle.remove()
    assert rows == [target_tokens(padded["labels"])] and rows[0] < padded["attention_mask"].sum()


def test_loss_of_a_batch_without_targets_is_zero_and_backward_works(examples, collate):
    batch = collate(examples[:2])
    batch["labels"][:] = IGNORE_INDEX
    model = lora_model()
    loss = summed_token_loss(model, batch)
    loss.backward()
    assert loss.item() == 0.0
    assert all(g.abs().sum() == 0 for g in grads(model).values())


def test_loss_without_an_output_head_module_uses_every_position(examples, collate):
    class NoHead(torch.nn.Module):  # computes logits with the embedding matrix directly, like some tied models
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kwargs):
            hidden = self.inner.model(**kwargs).last_hidden_state
            return type("Out", (), {"logits": hidden @ self.inner.get_input_embeddings().weight.T})()

    model, batch = lora_model(), collate(examples[:3])
    assert summed_token_loss(NoHead(model), batch).item() == pytest.approx(reference_loss(model, batch).item(), rel=1e-5)


def test_shuffle_off_takes_batches_in_the_order_given(examples, collate):
    seen = []
    model = lora_model()
    handle = model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs["input_ids"][:, :4].tolist()),
                                             with_kwargs=True)
    train(model, examples[:4], collate, TrainConfig(micro_batch_size=2, max_steps=2, shuffle=False, progress=False), log=None)
    handle.remove()
    assert seen == [collate(examples[0:2])["input_ids"][:, :4].tolist(), collate(examples[2:4])["input_ids"][:, :4].tolist()]


class _CrashAt:
    """A collator that dies on its n-th call, like a process killed with SIGKILL: no checkpoint is written."""

    def __init__(self, collate, n):
        self.collate, self.n, self.calls = collate, n, 0

    def __call__(self, batch):
        self.calls += 1
        if self.calls == self.n:
            raise SystemError("killed")
        return self.collate(batch)


def _steps_logged(out):
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_crash_after_the_last_checkpoint_does_not_log_steps_twice(examples, collate, tmp_path):
    config = TrainConfig(micro_batch_size=2, max_steps=9, learning_rate=1e-2, save_steps=3, output_dir=str(tmp_path),
                         progress=False)
    with pytest.raises(SystemError):  # dies during step 8: steps 7 was logged after the checkpoint at 6
        train(lora_model(), examples, _CrashAt(collate, 8), config, log=None)
    assert _steps_logged(tmp_path) == [1, 2, 3, 4, 5, 6, 7]
    result = train(lora_model(), examples, collate, config, resume=True, log=None)
    assert result.steps == 9
    assert _steps_logged(tmp_path) == list(range(1, 10))
    assert [r["step"] for r in result.history] == list(range(1, 10))


def test_save_total_limit_keeps_the_newest_checkpoints(examples, collate, tmp_path):
    train(lora_model(), examples, collate, TrainConfig(micro_batch_size=2, max_steps=8, save_steps=2, save_total_limit=2,
                                                       output_dir=str(tmp_path), progress=False), log=None)
    assert [p.name for p in checkpoint_paths(tmp_path)] == ["step-000006.pt", "step-000008.pt"]
    train(lora_model(), examples, collate, TrainConfig(micro_batch_size=2, max_steps=4, save_steps=2,
                                                       output_dir=str(tmp_path / "all"), progress=False), log=None)
    assert len(checkpoint_paths(tmp_path / "all")) == 2  # None keeps every one


@pytest.mark.parametrize("change", [dict(micro_batch_size=4), dict(gradient_accumulation_steps=2), dict(seed=5),
                                    "data", "lora", dict(max_steps=8)])
def test_resuming_with_another_configuration_is_refused_with_the_differences(examples, collate, tmp_path, change):
    base = dict(micro_batch_size=2, max_steps=6, save_steps=2, output_dir=str(tmp_path), progress=False)
    train(lora_model(), examples, _InterruptAfter(collate, 3), TrainConfig(**base), log=None)
    model, data = lora_model(), examples
    if change == "data":
        data = examples[1:] + examples[:1]  # same examples, another order: other batches
    elif change == "lora":
        model, _ = tiny_model(seed=0)
        inject_lora(model, LoraSettings(r=8, alpha=8, target_modules="all-linear"))
    else:
        base.update(change)
    with pytest.raises(ResumeError, match="different run") as err:
        train(model, data, collate, TrainConfig(**base), resume=True, log=None)
    message = str(err.value)
    key = "training data" if change == "data" else "trainable" if change == "lora" else next(iter(change))
    assert key in message and "Fix:" in message


def test_an_explicit_change_of_a_safe_key_resumes(examples, collate, tmp_path):
    base = dict(micro_batch_size=2, max_steps=4, save_steps=2, output_dir=str(tmp_path), progress=False)
    train(lora_model(), examples, collate, TrainConfig(**base), log=None)
    longer = TrainConfig(**{**base, "max_steps": 6})
    with pytest.raises(ResumeError, match="--allow-change max_steps"):
        train(lora_model(), examples, collate, longer, resume=True, log=None)
    with pytest.raises(ResumeError, match="cannot be changed"):
        train(lora_model(), examples, collate, longer, resume=True, log=None, allow_changes=["micro_batch_size"])
    result = train(lora_model(), examples, collate, longer, resume=True, log=None, allow_changes=["max_steps"])
    assert result.steps == 6 and _steps_logged(tmp_path) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 10_000])  # one row; chunks that do not divide; one chunk
def test_the_chunked_loss_equals_the_plain_loss_in_value_and_gradients(examples, collate, chunk_rows):
    """Full fine-tuning, so that the output head's weight (tied to the embeddings) gets a gradient too."""
    batch = collate(examples[:4])

    def loss_and_grads(rows):
        model, _ = tiny_model(seed=0)
        model.requires_grad_(True)
        loss = summed_token_loss(model, batch, rows)
        loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters()}

    plain, plain_grads = loss_and_grads(None)
    chunked, chunked_grads = loss_and_grads(chunk_rows)
    torch.testing.assert_close(chunked, plain, rtol=1e-5, atol=1e-4)
    assert plain_grads.keys() == chunked_grads.keys()
    for name, plain_grad in plain_grads.items():  # the same sums in another order: rounding of the largest entries
        scale = plain_grad.abs().max().item()
        torch.testing.assert_close(chunked_grads[name], plain_grad, rtol=1e-4, atol=1e-5 * scale, msg=name)


def _head_case(bias=True, rows=37, width=16, vocabulary=50, seed=0):
    """Tiny hidden rows, a plain Linear head and targets: the fused loss's inputs without a model."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = torch.nn.Linear(width, vocabulary, bias=bias)
    hidden = torch.randn(rows, width, generator=generator).requires_grad_(True)
    targets = torch.randint(0, vocabulary, (rows,), generator=generator)
    return hidden, head, targets


def _loss_and_grads(loss_fn, hidden, head, targets):
    hidden = hidden.detach().clone().requires_grad_(hidden.requires_grad)
    for p in head.parameters():
        p.grad = None
    loss = loss_fn(hidden, head, targets)
    loss.backward()
    return loss.detach(), hidden.grad, {n: None if p.grad is None else p.grad.clone() for n, p in head.named_parameters()}


def _plain(hidden, head, targets):
    return torch.nn.functional.cross_entropy(head(hidden).float(), targets, reduction="sum")


def _no_checkpoint(*args, **kwargs):
    raise AssertionError("the fused loss must not take the checkpointed path")


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk_rows", [1, 5, 16, 36])  # one row; ragged last chunks; two chunks, the last of one row
def test_the_fused_chunked_loss_equals_the_plain_loss_for_a_trainable_linear_head(monkeypatch, chunk_rows, bias):
    """A plain Linear head takes the fused path (gradients in the forward, no checkpoint) and matches the
    all-at-once loss in value and in the gradients of the hidden rows, the weight and the bias."""
    from lora_course.train.loss import chunked_cross_entropy

    hidden, head, targets = _head_case(bias=bias)
    plain = _loss_and_grads(_plain, hidden, head, targets)
    monkeypatch.setattr("torch.utils.checkpoint.checkpoint", _no_checkpoint)
    fused = _loss_and_grads(lambda h, m, t: chunked_cross_entropy(h, m, t, chunk_rows), hidden, head, targets)
    torch.testing.assert_close(fused[0], plain[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused[1], plain[1], rtol=1e-5, atol=1e-6)
    assert fused[2].keys() == plain[2].keys() == ({"weight", "bias"} if bias else {"weight"})
    for name, grad in plain[2].items():
        torch.testing.assert_close(fused[2][name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_the_fused_loss_computes_no_gradient_for_a_frozen_head(monkeypatch):
    from lora_course.train.loss import chunked_cross_entropy

    hidden, head, targets = _head_case()
    head.requires_grad_(False)
    plain = _loss_and_grads(_plain, hidden, head, targets)
    monkeypatch.setattr("torch.utils.checkpoint.checkpoint", _no_checkpoint)
    loss = chunked_cross_entropy(hidden, head, targets, 8)
    saved_hidden, saved_weight, saved_bias = loss.grad_fn.saved_tensors  # what the backward will scale
    assert saved_hidden.shape == hidden.shape and saved_weight is None and saved_bias is None
    loss.backward()
    assert head.weight.grad is None and head.bias.grad is None
    torch.testing.assert_close(loss.detach(), plain[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hidden.grad, plain[1], rtol=1e-5, atol=1e-6)


def test_the_fused_loss_scales_its_gradients_by_the_upstream_gradient_and_skips_ignored_rows():
    """The loop divides the sum by the window's target tokens: the stored gradients are scaled by that factor.
    Rows with the ignore index (the caller drops them; the function still honours them) add nothing."""
    from lora_course.train.loss import chunked_cross_entropy

    hidden, head, targets = _head_case()
    targets[[0, 9, 10, 36]] = IGNORE_INDEX
    plain = _loss_and_grads(lambda h, m, t: _plain(h, m, t) / 7, hidden, head, targets)
    fused = _loss_and_grads(lambda h, m, t: chunked_cross_entropy(h, m, t, 6) / 7, hidden, head, targets)
    torch.testing.assert_close(fused[0], plain[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused[1], plain[1], rtol=1e-5, atol=1e-6)
    assert fused[1][[0, 9, 10, 36]].abs().max() == 0
    for name, grad in plain[2].items():
        torch.testing.assert_close(fused[2][name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_a_lora_wrapped_head_keeps_the_checkpointed_chunks(monkeypatch):
    """The fused loss would skip the adapter's gradients: a wrapped head recomputes its chunks instead."""
    import torch.utils.checkpoint as checkpointing

    from lora_course.lora.layer import LoRALinear
    from lora_course.train.loss import chunked_cross_entropy

    hidden, base, targets = _head_case()
    head = LoRALinear(base, r=2, alpha=4)
    with torch.no_grad():
        head.lora_B.weight.normal_(0, 0.1)  # non-zero B: lora_A gets a gradient too
    plain = _loss_and_grads(_plain, hidden, head, targets)
    calls = []
    original = checkpointing.checkpoint
    monkeypatch.setattr("torch.utils.checkpoint.checkpoint", lambda *a, **k: calls.append(1) or original(*a, **k))
    chunked = _loss_and_grads(lambda h, m, t: chunked_cross_entropy(h, m, t, 10), hidden, head, targets)
    assert len(calls) == 4  # 37 rows in chunks of 10
    torch.testing.assert_close(chunked[0], plain[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked[1], plain[1], rtol=1e-5, atol=1e-6)
    assert {n for n, g in plain[2].items() if g is not None} == {"lora_A.weight", "lora_B.weight"}
    for name, grad in plain[2].items():
        if grad is not None:
            torch.testing.assert_close(chunked[2][name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_the_chunked_loss_without_gradients_is_the_plain_value(monkeypatch):
    from lora_course.train.loss import chunked_cross_entropy

    hidden, head, targets = _head_case()
    monkeypatch.setattr("torch.utils.checkpoint.checkpoint", _no_checkpoint)
    with torch.no_grad():
        plain = _plain(hidden, head, targets)
        chunked = chunked_cross_entropy(hidden, head, targets, 8)
    assert chunked.grad_fn is None and not chunked.requires_grad
    torch.testing.assert_close(chunked, plain, rtol=1e-5, atol=1e-5)


def test_the_fused_loss_under_bf16_autocast_agrees_with_the_plain_one():
    """Under autocast the head's matmul runs in bf16 on both paths; the softmax in fp32 on both."""
    from lora_course.train.loss import chunked_cross_entropy

    hidden, head, targets = _head_case(rows=40, width=32, vocabulary=64)
    results = {}
    for name, fn in (("plain", _plain), ("fused", lambda h, m, t: chunked_cross_entropy(h, m, t, 16))):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results[name] = _loss_and_grads(fn, hidden, head, targets)
    plain, fused = results["plain"], results["fused"]
    assert fused[1].dtype == plain[1].dtype == torch.float32 and fused[2]["weight"].dtype == torch.float32
    torch.testing.assert_close(fused[0], plain[0], rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(fused[1], plain[1], rtol=2e-2, atol=2e-2 * plain[1].abs().max().item())
    for name, grad in plain[2].items():
        torch.testing.assert_close(fused[2][name], grad, rtol=2e-2, atol=2e-2 * grad.abs().max().item(), msg=name)


def test_a_run_with_the_chunked_loss_trains_as_the_plain_one(examples, collate):
    histories = {}
    for rows in (None, 5):
        result = train(lora_model(), examples, collate, TrainConfig(micro_batch_size=4, max_steps=3, learning_rate=1e-2,
                       loss_chunk_rows=rows, progress=False, shuffle=False), eval_data=examples[:2], log=None)
        histories[rows] = [r["loss"] for r in result.history] + [result.final_eval_loss]
    assert histories[5] == pytest.approx(histories[None], rel=1e-5)


@pytest.mark.parametrize("chunk_rows", [None, 7])
def test_the_padding_free_loss_equals_the_padded_loss_in_value_and_gradients(examples, collate, chunk_rows):
    """The same examples, padded or as one row: the same target tokens, summed loss and gradients."""
    padded, flat = collate(examples[:5]), PaddingFreeCollator()(examples[:5])
    assert flat["input_ids"].shape == (1, int(padded["attention_mask"].sum()))  # no pad position left
    assert target_tokens(flat["labels"]) == target_tokens(padded["labels"])
    results = {}
    for name, batch in (("padded", padded), ("flat", flat)):
        model = lora_model()
        loss = summed_token_loss(model, batch, chunk_rows)
        loss.backward()
        results[name] = loss.detach(), grads(model)
    torch.testing.assert_close(results["flat"][0], results["padded"][0], rtol=1e-5, atol=1e-4)
    for name, grad in results["padded"][1].items():
        torch.testing.assert_close(results["flat"][1][name], grad, rtol=1e-4, atol=1e-5 * grad.abs().max().item(), msg=name)


def test_a_padding_free_run_trains_as_the_padded_one(examples, collate):
    histories, tokens = {}, {}
    for flat in (False, True):
        result = train(lora_model(), examples, collate, TrainConfig(micro_batch_size=4, max_steps=3, learning_rate=1e-2,
                       padding_free=flat, progress=False, shuffle=False), eval_data=examples[:3], log=None)
        histories[flat] = [r["loss"] for r in result.history] + [result.final_eval_loss]
        tokens[flat] = result.input_tokens, result.tokens
    assert histories[True] == pytest.approx(histories[False], rel=1e-5)
    # tokens/s counts the same real tokens: the padded run its mask's ones, the flat one every position of its row
    assert tokens[True] == tokens[False] and tokens[True][0] > tokens[True][1] > 0


def test_padding_free_on_the_bundled_instructions_ends_at_the_padded_eval_loss():
    """A short run on the bundled instruction set (tiny model, shuffled micro-batches of 8, 6 steps): the
    eval loss with padding-free batches within 1% of the padded run's (rounding only, so far inside)."""
    from lora_course.data import load_bundled, tokenize_dataset

    tok = tiny_tokenizer()
    train_set, _ = tokenize_dataset(load_bundled("instructions", "train", limit=48), tok, 128)
    eval_set, _ = tokenize_dataset(load_bundled("instructions", "test", limit=16), tok, 128)
    losses = {}
    for flat in (False, True):
        result = train(lora_model(), train_set, Collator(tok.pad_token_id),
                       TrainConfig(micro_batch_size=8, max_steps=6, learning_rate=1e-2, padding_free=flat, seed=1,
                                   progress=False), eval_data=eval_set, log=None)
        losses[flat] = result.final_eval_loss
    untrained = train(lora_model(), train_set, Collator(tok.pad_token_id), TrainConfig(max_steps=1, learning_rate=1e-9,
                      progress=False), eval_data=eval_set, log=None).final_eval_loss
    assert losses[False] < untrained - 0.05  # the runs trained: their equality is not two untouched models'
    assert losses[True] == pytest.approx(losses[False], rel=1e-2)


def test_padding_free_may_be_switched_on_when_resuming_and_trains_on(examples, collate, tmp_path):
    """Safe to change on resume (checkpoint.SAFE_TO_CHANGE): the batch order does not depend on it, and each
    step sums the same tokens' losses. The resumed run ends where the uninterrupted padded run ends."""
    config = dict(micro_batch_size=2, max_steps=6, learning_rate=1e-2, save_steps=3, progress=False, shuffle=True)
    straight = train(lora_model(), examples, collate, TrainConfig(**config), log=None)
    first = train(lora_model(), examples, _InterruptAfter(collate, 4), TrainConfig(output_dir=str(tmp_path), **config),
                  log=None)
    assert first.steps == 3
    flat = TrainConfig(output_dir=str(tmp_path), padding_free=True, **config)
    with pytest.raises(ResumeError, match="--allow-change padding_free"):
        train(lora_model(), examples, collate, flat, resume=True, log=None)
    resumed = train(lora_model(), examples, collate, flat, resume=True, log=None, allow_changes=["padding_free"])
    assert resumed.steps == 6
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in straight.history], rel=1e-5)


@pytest.mark.slow
def test_a_compiled_run_trains_as_the_eager_one(examples, collate):
    """torch.compile of the decoder, after LoRA is injected: the same losses to 1e-3, the model eager again after."""
    histories = {}
    for compiled in (False, True):
        model = lora_model()
        result = train(model, examples, collate, TrainConfig(micro_batch_size=4, max_steps=3, learning_rate=1e-2,
                       compile=compiled, progress=False, shuffle=False), log=None)
        histories[compiled] = [r["loss"] for r in result.history]
        assert not hasattr(model.model.forward, "_torchdynamo_orig_callable")  # restored
    assert histories[True] == pytest.approx(histories[False], abs=1e-3)


def test_a_fresh_run_into_a_folder_with_checkpoints_is_refused_and_a_fresh_log_starts(examples, collate, tmp_path):
    from lora_course.errors import OutputExistsError

    config = TrainConfig(micro_batch_size=2, max_steps=2, save_steps=1, output_dir=str(tmp_path), progress=False)
    train(lora_model(), examples, collate, config, log=None)
    with pytest.raises(OutputExistsError, match="--resume"):  # it would prune or mix with the earlier run's
        train(lora_model(), examples, collate, config, log=None)
    assert len(checkpoint_paths(tmp_path)) == 2  # nothing of the earlier run was touched
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.jsonl").write_text('{"step": 7, "loss": 1.0}\n')  # a log without checkpoints: a new run's starts fresh
    train(lora_model(), examples, collate, TrainConfig(micro_batch_size=2, max_steps=2, output_dir=str(other),
                                                       progress=False), log=None)
    assert _steps_logged(other) == [1, 2]


def test_the_run_signature_knows_the_processes_and_ignores_other_keys_of_an_example(examples):
    from lora_course.train.checkpoint import check_resume, data_fingerprint, run_signature

    model, config = lora_model(), TrainConfig(micro_batch_size=2)
    one, two = run_signature(config, examples, model), run_signature(config, examples, model, world_size=2)
    with pytest.raises(ResumeError, match="world_size"):
        check_resume(one, two)
    plain = [e.as_dict() for e in examples]
    assert data_fingerprint(plain) == data_fingerprint([{**e, "source": "alpaca"} for e in plain])
    changed = run_signature(TrainConfig(micro_batch_size=2, gradient_checkpointing=True), examples, model)
    assert check_resume(one, changed, allow_changes=["gradient_checkpointing"]) == ["train.gradient_checkpointing"]


def test_fp16_on_a_16_bit_base_trains_with_fp32_adapters_and_checkpoints_its_loss_scale(examples, collate, tmp_path):
    """A T4 loads the base in fp16; its adapters stay fp32, which the gradient scaler needs (it refuses to
    unscale fp16 gradients), and the scale is saved with the checkpoint."""
    model, _ = tiny_model(seed=0)
    model.half()
    inject_lora(model, LoraSettings(r=4, alpha=8))
    assert {p.dtype for n, p in model.named_parameters() if p.requires_grad} == {torch.float32}
    result = train(model, examples, collate, TrainConfig(micro_batch_size=2, max_steps=2, precision="fp16",
                   save_steps=2, output_dir=str(tmp_path), progress=False), log=None)
    assert result.steps == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)
    payload = torch.load(checkpoint_paths(tmp_path)[-1], weights_only=False)
    assert payload["scaler"]["scale"] > 0


def test_a_run_killed_after_rotation_resumes_from_the_newest_checkpoint_and_ends_where_it_would_have(
        examples, collate, tmp_path):
    config = dict(micro_batch_size=2, max_steps=8, learning_rate=1e-2, save_steps=2, save_total_limit=2, progress=False)
    with pytest.raises(SystemError):  # killed during step 7: checkpoints at 2, 4, 6, the oldest deleted
        train(lora_model(), examples, _CrashAt(collate, 7), TrainConfig(**config, output_dir=str(tmp_path / "run")),
              log=None)
    assert [p.name for p in checkpoint_paths(tmp_path / "run")] == ["step-000004.pt", "step-000006.pt"]
    resumed, lines = lora_model(), []
    train(resumed, examples, collate, TrainConfig(**config, output_dir=str(tmp_path / "run")), resume=True,
          log=lines.append)
    assert "step-000006.pt at step 6" in lines[-1]
    assert [p.name for p in checkpoint_paths(tmp_path / "run")] == ["step-000006.pt", "step-000008.pt"]
    straight = lora_model()
    train(straight, examples, collate, TrainConfig(**config, output_dir=str(tmp_path / "straight")), log=None)
    for (name, a), b in zip(resumed.named_parameters(), straight.parameters()):
        assert torch.equal(a, b), name
