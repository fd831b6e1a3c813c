"""Turn conversations into training examples with the model's own chat template.

The prompt a model sees in training must be byte for byte the prompt it sees at inference, so
the split between prompt and response is taken from the template itself: the prompt is
``apply_chat_template(messages[:-1], add_generation_prompt=True)``, the response is whatever the
full conversation adds after it. The loss covers the response only (labels -100 on the prompt),
and the response ends with the end-of-sequence token, so the model learns when to stop.
"""

from __future__ import annotations

from dataclasses import dataclass

from lora_course.errors import DataError

IGNORE_INDEX = -100  # the label value PyTorch's cross-entropy skips


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    def as_dict(self) -> dict:
        return {"input_ids": self.input_ids, "labels": self.labels}


def _template(tokenizer, messages, **kwargs) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            f"The tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template, so conversations "
            "cannot be formatted the way the model will see them. Fix: use an instruct model's tokenizer, or set "
            "tokenizer.chat_template before formatting."
        )
    return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


def split_prompt_response(tokenizer, messages: list[dict]) -> tuple[str, str]:
    """The prompt text (with the generation prompt) and the response text, from the template."""
    if not messages or messages[-1].get("role") != "assistant":
        raise DataError("A training conversation must end with an assistant message (the response to learn).")
    prompt = _template(tokenizer, messages[:-1], add_generation_prompt=True)
    full = _template(tokenizer, messages)
    if not full.startswith(prompt):
        raise DataError(
            "The chat template renders the conversation so that it does not start with the generation prompt; "
            "the prompt/response split would not match inference."
        )
    return prompt, full[len(prompt):]


def format_chat(tokenizer, messages: list[dict], train_on_inputs: bool = False, max_length: int | None = None) -> Example:
    """Tokenize one conversation; labels are -100 on the prompt unless ``train_on_inputs``.

    The response is cut right after its end-of-sequence token (templates often add a newline after
    it, which generation never produces) and gets one appended if the template does not end turns
    with EOS. When the example is longer than ``max_length``, the prompt loses tokens from its
    start (its end, the question and the generation prompt, is what the answer depends on); a
    response longer than ``max_length`` by itself is cut at the end.
    """
    prompt_text, response_text = split_prompt_response(tokenizer, messages)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response_text, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("The tokenizer has no eos_token_id: the model could never learn to stop. Fix: set tokenizer.eos_token.")
    if eos in response_ids:
        response_ids = response_ids[: response_ids.index(eos) + 1]
    else:
        response_ids = response_ids + [eos]
    truncated = False
    if max_length is not None and len(prompt_ids) + len(response_ids) > max_length:
        truncated = True
        keep_prompt = max(0, max_length - len(response_ids))
        prompt_ids = prompt_ids[len(prompt_ids) - keep_prompt:] if keep_prompt else []
        response_ids = response_ids[: max_length - len(prompt_ids)]
    input_ids = prompt_ids + response_ids
    labels = list(input_ids) if train_on_inputs else [IGNORE_INDEX] * len(prompt_ids) + list(response_ids)
    return Example(input_ids=input_ids, labels=labels, truncated=truncated)


def format_prompt(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of a prompt for generation: the same text the training prompt had."""
    return tokenizer(_template(tokenizer, messages, add_generation_prompt=True), add_special_tokens=False)["input_ids"]


def tokenize_dataset(records, tokenizer, sequence_length: int, train_on_inputs: bool = False) -> tuple[list[Example], int]:
    """Tokenize every record (``{"messages": [...]}``); returns the examples and how many were truncated."""
    examples = []
    for i, record in enumerate(records):
        if "messages" not in record:
            raise DataError(f"Record {i} has no 'messages' field (it has: {', '.join(record)}). "
                           "Fix: convert the data set to chat messages first.")
        examples.append(format_chat(tokenizer, record["messages"], train_on_inputs, max_length=sequence_length))
    return examples, sum(e.truncated for e in examples)
