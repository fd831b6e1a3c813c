"""Put examples of different lengths into rectangular batches: padding, or packing.

Padding fills every row up to the longest in the batch; the pad positions get attention_mask 0
and label -100. Masking is by position, never by token id: SmolLM2 pads with its EOS token, and a
collator that masked "every pad id" would also erase the EOS that ends each response, so the
model would never learn to stop.

Packing concatenates examples into rows of a fixed length with ``position_ids`` that restart at 0
for each example. Transformers reads those restarts (``attention_mask=None``) and builds a
block-diagonal causal mask, so examples in one row cannot attend to each other: no pad tokens, no
cross-contamination. It does so only when no KV cache is in play: call the model with
``use_cache=False`` (the trainer does), or the examples of a row silently attend to each other
(tests/test_data.py shows both). The cost: rows hold different numbers of examples, so per-row losses differ
in weight, which is why the trainer normalizes by target tokens, not by rows.
"""

from __future__ import annotations

import torch

from lora_course.data.chat import IGNORE_INDEX, Example
from lora_course.errors import DataError


def _as_lists(example) -> tuple[list[int], list[int]]:
    if isinstance(example, Example):
        return example.input_ids, example.labels
    return list(example["input_ids"]), list(example["labels"])


class Collator:
    """Right-pad a list of examples into tensors ``input_ids``, ``attention_mask``, ``labels``."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        if pad_token_id is None:
            raise DataError("pad_token_id is None. Fix: pass tokenizer.pad_token_id (or tokenizer.eos_token_id).")
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, examples) -> dict[str, torch.Tensor]:
        pairs = [_as_lists(e) for e in examples]
        length = max(len(ids) for ids, _ in pairs)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(pairs), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(pairs), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(pairs), length), dtype=torch.long)
        for row, (ids, labs) in enumerate(pairs):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(labs)] = torch.tensor(labs)
            attention_mask[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def pack(examples, sequence_length: int) -> list[dict]:
    """Greedily fill rows of at most ``sequence_length`` tokens, in order; an example never straddles rows.

    Each packed row has ``input_ids``, ``labels`` and ``position_ids``; the first label of every
    example is -100, so no token is trained to predict the start of the next, unrelated example.
    """
    rows: list[dict] = []
    current = {"input_ids": [], "labels": [], "position_ids": []}
    for example in examples:
        ids, labs = _as_lists(example)
        if len(ids) > sequence_length:
            raise DataError(f"An example has {len(ids)} tokens, more than sequence_length={sequence_length}. "
                             "Fix: tokenize with max_length=sequence_length first.")
        if current["input_ids"] and len(current["input_ids"]) + len(ids) > sequence_length:
            rows.append(current)
            current = {"input_ids": [], "labels": [], "position_ids": []}
        current["input_ids"] += ids
        current["labels"] += [IGNORE_INDEX] + labs[1:]
        current["position_ids"] += list(range(len(ids)))
    if current["input_ids"]:
        rows.append(current)
    return rows


class PackedCollator:
    """Batch packed rows: pad to the longest row with position ids that keep counting (a pad
    segment of its own), labels -100, and no attention mask, so transformers uses the position ids."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(r["input_ids"]) for r in rows)
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        position_ids = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            input_ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            position_ids[i, :n] = torch.tensor(r["position_ids"])
            position_ids[i, n:] = torch.arange(length - n)  # the padding is one more (ignored) segment
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


class PaddingFreeCollator:
    """A micro-batch as one row with no padding: the examples end to end, ``position_ids`` restarting at 0
    for each, and no attention mask (what TRL calls padding-free batches).

    The work is transformers' ``DataCollatorWithFlattening``: it writes each example's first label as -100,
    so no token is trained to predict the start of the next, unrelated example, and the model builds a
    block-diagonal causal mask from the position ids (SDPA and eager: ``masking_utils``; flash attention:
    sequence boundaries from the same ids). That happens only without a KV cache; the trainer passes
    ``use_cache=False``. What it adds: the package's ``Example`` objects, and a refusal of rows that are
    already packed (their own position ids would be overwritten). ``flash_kwargs``: also hand flash
    attention the boundaries (``cu_seq_lens_*``), computed here on the CPU instead of in every layer.

    The same examples in the same micro-batch give the same summed loss and target-token count as
    ``Collator`` (to rounding): the saving is the pad positions. The price: with SDPA or eager attention
    the row's attention is one N x N product masked to blocks, where N is the whole micro-batch's tokens,
    so on long rows it can cost more than the padding saved. Flash attention computes only the blocks, and
    so does ``models.attention.per_example_sdpa`` (one SDPA call per example, from the same boundaries),
    which the trainer puts in place of SDPA and eager attention for ``padding_free`` runs.
    """

    def __init__(self, flash_kwargs: bool = False):
        from transformers import DataCollatorWithFlattening

        self._flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX,
                                                   return_flash_attn_kwargs=flash_kwargs)

    def __call__(self, examples) -> dict[str, torch.Tensor]:
        features = []
        for example in examples:
            if not isinstance(example, Example) and "position_ids" in example:
                raise DataError("padding_free got rows that are already packed (they carry position_ids). Fix: "
                                "pass the tokenized examples, not pack()'s rows, or turn padding_free off.")
            ids, labels = _as_lists(example)
            features.append({"input_ids": ids, "labels": labels})
        return self._flatten(features, return_tensors="pt")


def padding_stats(examples, batch_size: int, sequence_length: int) -> dict:
    """Fraction of computed positions that are padding, batching in order, for padding vs packing."""
    lengths = [len(_as_lists(e)[0]) for e in examples]
    padded = sum(max(lengths[i:i + batch_size]) * len(lengths[i:i + batch_size]) for i in range(0, len(lengths), batch_size))
    rows = pack(examples, sequence_length)
    packed = sum(max(len(r["input_ids"]) for r in rows[i:i + batch_size]) * len(rows[i:i + batch_size])
                 for i in range(0, len(rows), batch_size))
    real = sum(lengths)
    return {
        "tokens": real,
        "padding_fraction_padded": 1 - real / padded if padded else 0.0,
        "padding_fraction_packed": 1 - real / packed if packed else 0.0,
        "rows_padded": len(lengths),
        "rows_packed": len(rows),
    }
