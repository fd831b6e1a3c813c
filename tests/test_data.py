"""Chat formatting, masking, padding and packing, on SmolLM2's real tokenizer and the tiny model."""

import pytest
import torch

from lora_course.data import (
    IGNORE_INDEX,
    Collator,
    PackedCollator,
    PaddingFreeCollator,
    check_sequence_length,
    format_chat,
    format_prompt,
    length_stats,
    pack,
    padding_stats,
    tokenize_dataset,
)
from lora_course.errors import DataError
from lora_course.models import tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def conversation(question="What is 2 + 3?", answer="Answer: 5"):
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def test_prompt_is_exactly_the_inference_prompt_and_only_the_response_is_learned(tokenizer):
    messages = conversation()
    example = format_chat(tokenizer, messages)
    prompt = format_prompt(tokenizer, messages[:-1])
    assert example.input_ids[: len(prompt)] == prompt
    assert example.labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    response = example.labels[len(prompt):]
    assert IGNORE_INDEX not in response
    assert tokenizer.decode(response) == "Answer: 5<|im_end|>"


def test_response_ends_with_eos_and_keeps_it_in_the_labels(tokenizer):
    example = format_chat(tokenizer, conversation())
    assert example.input_ids[-1] == tokenizer.eos_token_id
    assert example.labels[-1] == tokenizer.eos_token_id


def test_train_on_inputs_learns_every_token(tokenizer):
    example = format_chat(tokenizer, conversation(), train_on_inputs=True)
    assert example.labels == example.input_ids


def test_eos_is_appended_when_the_template_does_not_end_turns_with_it(tokenizer):
    other = tiny_tokenizer()
    other.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}" \
                          "{% if add_generation_prompt %}assistant: {% endif %}"
    example = format_chat(other, conversation())
    assert example.input_ids[-1] == other.eos_token_id and example.labels[-1] == other.eos_token_id


def test_truncation_keeps_the_end_of_the_prompt_and_the_whole_answer(tokenizer):
    messages = conversation(question="word " * 200 + "What is 2 + 3?")
    example = format_chat(tokenizer, messages, max_length=40)
    assert example.truncated and len(example.input_ids) == 40
    text = tokenizer.decode(example.input_ids)
    assert text.endswith("What is 2 + 3?<|im_end|>\n<|im_start|>assistant\nAnswer: 5<|im_end|>")


def test_bad_conversations_are_clear_errors(tokenizer):
    with pytest.raises(ValueError, match="end with an assistant message"):
        format_chat(tokenizer, [{"role": "user", "content": "hi"}])
    plain = tiny_tokenizer()
    plain.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        format_chat(plain, conversation())
    with pytest.raises(DataError, match="no 'messages' field"):
        tokenize_dataset([{"text": "hello"}], tokenizer, 64)


def test_collator_pads_by_position_so_eos_survives_when_pad_equals_eos(tokenizer):
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # SmolLM2's setup: the trap this guards against
    short = format_chat(tokenizer, conversation(answer="5"))
    long = format_chat(tokenizer, conversation(answer="The answer is five, written as 5."))
    batch = Collator(tokenizer.pad_token_id, pad_to_multiple_of=8)([short, long])
    assert batch["input_ids"].shape[1] % 8 == 0
    n = len(short.input_ids)
    assert batch["attention_mask"][0, :n].all() and not batch["attention_mask"][0, n:].any()
    assert batch["labels"][0, n - 1] == tokenizer.eos_token_id  # the real EOS is still a target
    assert (batch["labels"][0, n:] == IGNORE_INDEX).all()  # the padding EOS ids are not
    assert batch["labels"][1, len(long.input_ids) - 1] == tokenizer.eos_token_id


def test_packing_rows_positions_and_boundaries(tokenizer):
    examples = [format_chat(tokenizer, conversation(answer="x" * k)) for k in (1, 5, 9, 3)]
    lengths = [len(e.input_ids) for e in examples]
    rows = pack(examples, sequence_length=lengths[0] + lengths[1] + 1)
    assert [len(r["input_ids"]) for r in rows][0] == lengths[0] + lengths[1]
    assert sum(len(r["input_ids"]) for r in rows) == sum(lengths)
    first = rows[0]
    assert first["position_ids"] == list(range(lengths[0])) + list(range(lengths[1]))
    assert first["labels"][lengths[0]] == IGNORE_INDEX  # no learning across the boundary
    with pytest.raises(ValueError, match="more than sequence_length"):
        pack(examples, sequence_length=5)


def test_packed_loss_equals_separate_losses(tiny, tokenizer):
    """Packing is exact: the block-diagonal mask from position ids keeps examples apart."""
    model, _ = tiny
    examples = [format_chat(tokenizer, conversation(f"Question {i}?", "Answer: " + "ab" * i), train_on_inputs=True)
                for i in range(1, 4)]
    separate_sum, separate_count = 0.0, 0
    for e in examples:
        ids = torch.tensor([e.input_ids])
        logits = model(ids).logits[0, :-1]
        targets = torch.tensor(e.labels[1:])
        separate_sum += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
        separate_count += len(targets)
    batch = PackedCollator(tokenizer.pad_token_id)(pack(examples, sequence_length=512))
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0, :-1]
    packed_sum = torch.nn.functional.cross_entropy(logits, batch["labels"][0, 1:], reduction="sum").item()
    packed_count = int((batch["labels"][0, 1:] != IGNORE_INDEX).sum())
    assert packed_count == separate_count
    assert packed_sum == pytest.approx(separate_sum, abs=1e-3, rel=1e-5)


def test_a_padding_free_batch_is_transformers_flattening_and_pack_s_row(tokenizer):
    """PaddingFreeCollator is transformers' DataCollatorWithFlattening over the package's examples, and it
    lays a micro-batch out exactly as the hand-written pack() + PackedCollator do with room for all of it."""
    from transformers import DataCollatorWithFlattening

    examples = [format_chat(tokenizer, conversation(f"Q{i}?", "A " * (3 * i + 1))) for i in range(4)]
    ours = PaddingFreeCollator()(examples)
    theirs = DataCollatorWithFlattening()([e.as_dict() for e in examples], return_tensors="pt")
    packed = PackedCollator(tokenizer.pad_token_id)(pack(examples, sequence_length=10_000))
    assert set(ours) == {"input_ids", "labels", "position_ids"}
    for key in ours:
        assert torch.equal(ours[key], theirs[key]) and torch.equal(ours[key], packed[key]), key
    starts = torch.cumsum(torch.tensor([0] + [len(e.input_ids) for e in examples[:-1]]), 0)
    assert ours["input_ids"].shape == (1, sum(len(e.input_ids) for e in examples))
    assert (ours["position_ids"][0, starts] == 0).all()
    assert (ours["labels"][0, starts] == IGNORE_INDEX).all()  # no example's first token is predicted from another's
    flash = PaddingFreeCollator(flash_kwargs=True)(examples)
    assert flash["cu_seq_lens_q"].tolist() == starts.tolist() + [ours["input_ids"].shape[1]]
    with pytest.raises(DataError, match="already packed"):
        PaddingFreeCollator()(pack(examples, sequence_length=10_000))


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_a_padding_free_row_gives_each_example_the_logits_it_has_alone(tokenizer, attention):
    """The restarting position ids are all that keeps the examples apart (there is no attention mask):
    transformers builds the block-diagonal mask from them for SDPA and eager attention alike. The control,
    the same row with a plain all-ones mask, attends across examples and must differ."""
    from lora_course.models import tiny_model

    model, _ = tiny_model(seed=0, attn_implementation=attention)
    assert model.config._attn_implementation == attention
    examples = [format_chat(tokenizer, conversation(f"Question {i}?", "Answer: " + "ab " * i)) for i in range(1, 4)]
    batch = PaddingFreeCollator()(examples)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        leaking = model(input_ids=batch["input_ids"], attention_mask=torch.ones_like(batch["input_ids"]),
                        position_ids=batch["position_ids"], use_cache=False).logits[0]
        start = 0
        for e in examples:
            alone = model(torch.tensor([e.input_ids]), use_cache=False).logits[0]
            rows = slice(start, start + len(e.input_ids))
            torch.testing.assert_close(packed[rows], alone, atol=1e-5, rtol=1e-5)
            start += len(e.input_ids)
    later = slice(len(examples[0].input_ids), None)  # the first example has nothing before it to leak from
    assert (leaking[later] - packed[later]).abs().max() > 1e-3


def test_padding_stats_show_what_packing_saves(tokenizer):
    examples = [format_chat(tokenizer, conversation(answer="y " * k)) for k in (1, 40, 2, 35, 3, 60)]
    stats = padding_stats(examples, batch_size=2, sequence_length=256)
    assert stats["tokens"] == sum(len(e.input_ids) for e in examples)
    assert stats["padding_fraction_packed"] < stats["padding_fraction_padded"]
    assert stats["rows_packed"] < stats["rows_padded"]


def test_length_stats_and_warnings():
    lengths = list(range(1, 101))
    stats = length_stats(lengths)
    assert (stats["p50"], stats["p95"], stats["max"], stats["n"]) == (50, 95, 100, 100)
    assert check_sequence_length(stats, 120) == []
    truncating = check_sequence_length(stats, 80)
    assert len(truncating) == 1 and "truncates 20 of 100" in truncating[0]
    wasteful = check_sequence_length(stats, 1024)
    assert len(wasteful) == 1 and "more than twice the p95" in wasteful[0]


def test_packing_leaks_across_examples_when_the_kv_cache_is_on(tiny):
    """The trap the docstring warns about: transformers only reads packed position ids when no
    cache is passed, so a packed forward with use_cache=True attends across examples."""
    model, _ = tiny
    a, b = torch.tensor([[5, 6, 7, 8]]), torch.tensor([[9, 10, 11]])
    alone = model(b, use_cache=False).logits[0]
    ids, positions = torch.cat([a, b], 1), torch.tensor([[0, 1, 2, 3, 0, 1, 2]])
    isolated = model(input_ids=ids, position_ids=positions, use_cache=False).logits[0, 4:]
    leaking = model(input_ids=ids, position_ids=positions, use_cache=True).logits[0, 4:]
    torch.testing.assert_close(isolated, alone, atol=1e-5, rtol=0)
    assert (leaking - alone).abs().max() > 1e-2
