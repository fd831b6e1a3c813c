"""Attention for padding-free batches without flash attention: one causal SDPA call per example.

A padding-free micro-batch (``data.PaddingFreeCollator``) is one row of N tokens, the examples end to end.
With flash attention the kernel takes the examples' boundaries (``cu_seq_lens_*``) and computes only the
blocks on the diagonal. SDPA and eager attention take no boundaries: transformers builds an N x N
block-diagonal mask from the restarting position ids, and attention multiplies all N x N query-key pairs
only to mask away those between examples. For a micro-batch of k examples of similar length that is
about k times the work the examples need.

``per_example_sdpa`` is the peer of flash attention's variable-length path on any device: it splits the
row at the boundaries and calls ``torch.nn.functional.scaled_dot_product_attention`` once per example,
causal, with no mask, so the work is the sum of the examples' squares. The boundaries come from
``PaddingFreeCollator(flash_kwargs=True)``, the same ones flash attention takes.

It is registered in transformers' ``AttentionInterface`` under ``PER_EXAMPLE_SDPA``, with SDPA's mask
builder in ``AttentionMaskInterface``. Transformers therefore still builds the (boolean) block mask once
per forward pass, a few milliseconds, and this function ignores it; it is what the fall-back uses.
What it does with a call:

- with ``cu_seq_lens_q`` (one flattened row): one SDPA call per example, grouped-query heads through
  SDPA's ``enable_gqa`` (``repeat_kv`` on torch < 2.5), the module's ``scaling``, attention dropout as
  given (dropout acts on each query's probabilities, which are the example's own either way);
- without boundaries (a padded batch, a generation step with a cache, a row without packing), on a
  sliding-window layer, or with a position bias: exactly transformers' ``sdpa``, with the mask it built;
- with logit soft-capping or attention sinks (``s_aux``), which SDPA cannot do: ``SettingsError``.

The boundaries are read on the host in every layer (``tolist``): under ``torch.compile`` that is a graph
break per layer (it trains, to the same losses, with fewer fused regions).

``attention_for_padding_free(model)`` is the rule the trainer follows: keep flash attention; replace SDPA
or eager attention by ``per_example_sdpa`` (``use_attention`` sets it and gives back the undo); keep
anything else, with the dense mask, and say why.
"""

from __future__ import annotations

import dataclasses

from lora_course.errors import SettingsError

PER_EXAMPLE_SDPA = "per_example_sdpa"
# what padding-free batches may replace: the implementations that attend over the whole row through a mask
REPLACEABLE = ("sdpa", "eager")


def register() -> str:
    """Register ``per_example_sdpa`` with transformers (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(PER_EXAMPLE_SDPA, per_example_sdpa)
    AttentionMaskInterface.register(PER_EXAMPLE_SDPA, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return PER_EXAMPLE_SDPA


def per_example_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                     is_causal: bool | None = None, **kwargs):
    """Attention with transformers' attention-function signature (``sdpa_attention_forward``'s): ``query``
    ``(batch, heads, tokens, head_dim)``, ``key``/``value`` with ``heads / groups`` heads; returns
    ``(output (batch, tokens, heads, head_dim), None)``."""
    import torch
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    for name, what in (("softcap", "attention logit soft-capping"), ("s_aux", "attention sinks")):
        if kwargs.get(name) is not None:
            raise SettingsError(f"{PER_EXAMPLE_SDPA} cannot do {what} ({name}={kwargs[name]!r}): SDPA has no such "
                                "option. Fix: load the model with attn_implementation='eager' (or a flash-attention "
                                "kernel that supports it) and leave it to the trainer, or turn padding_free off.")
    boundaries = kwargs.get("cu_seq_lens_q")
    if (boundaries is None or kwargs.get("sliding_window") is not None or kwargs.get("position_bias") is not None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    keys_boundaries = kwargs.get("cu_seq_lens_k")
    tokens = query.shape[2]
    if (query.shape[0] != 1 or key.shape[2] != tokens or int(boundaries[-1]) != tokens
            or (keys_boundaries is not None and not torch.equal(keys_boundaries, boundaries))):
        raise SettingsError(f"{PER_EXAMPLE_SDPA} got sequence boundaries {boundaries.tolist()} for queries of shape "
                            f"{tuple(query.shape)} and keys of length {key.shape[2]}: it takes one flattened row with "
                            "the keys of its own tokens. Fix: batch with PaddingFreeCollator(flash_kwargs=True) and "
                            "use_cache=False, or pass no cu_seq_lens_* for other batches.")
    groups = query.shape[1] // key.shape[1]
    extra = {}
    if groups > 1 and _sdpa_has_gqa():
        extra["enable_gqa"] = True
    elif groups > 1:
        from transformers.integrations.sdpa_attention import repeat_kv

        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    lengths = (boundaries[1:] - boundaries[:-1]).tolist()  # split, not slices: its backward is one concatenation
    parts = [F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling, is_causal=causal, **extra)
             for q, k, v in zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2))]
    return torch.cat([p.transpose(1, 2) for p in parts], dim=1), None  # (1, tokens, heads, head_dim), contiguous


def _sdpa_has_gqa() -> bool:
    import torch

    return tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 5)


@dataclasses.dataclass(frozen=True)
class AttentionChoice:
    """What a model attends with during padding-free batches, whether the collator must hand it the
    examples' boundaries (``cu_seq_lens_*``), and why."""

    implementation: str
    boundaries: bool
    reason: str


def attention_for_padding_free(model) -> AttentionChoice:
    """The attention padding-free batches should run with on ``model``.

    Flash attention (``flash_attention_*``) stays: its variable-length kernel is the real thing. SDPA and
    eager become ``per_example_sdpa``, unless the model soft-caps attention logits or has attention sinks
    (SDPA cannot), or its class does not take attention functions from transformers. Anything else (flex
    attention, a kernel of the hub, a custom function) stays, with transformers' block mask built from
    the position ids."""
    current = str(getattr(getattr(model, "config", None), "_attn_implementation", None))
    if "flash" in current or current == PER_EXAMPLE_SDPA:
        return AttentionChoice(current, True, f"{current} takes the examples' boundaries")
    if current not in REPLACEABLE:
        return AttentionChoice(current, False, f"{current} kept: it attends over the whole row, masked to blocks")
    if not getattr(model, "_supports_attention_backend", False):
        return AttentionChoice(current, False, f"{current} kept: {type(model).__name__} does not take its attention "
                                               "from transformers' AttentionInterface")
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if getattr(config, "attn_logit_softcapping", None) is not None:
        return AttentionChoice(current, False, f"{current} kept: the model soft-caps attention logits, which SDPA "
                                               "cannot; the row is attended as a whole, masked to blocks")
    if any(getattr(m, "sinks", None) is not None for m in model.modules()):
        return AttentionChoice(current, False, f"{current} kept: the model has attention sinks, which SDPA cannot "
                                               "take; the row is attended as a whole, masked to blocks")
    return AttentionChoice(PER_EXAMPLE_SDPA, True, f"{PER_EXAMPLE_SDPA} instead of {current}: one causal SDPA call "
                                                   "per example, not one masked product over the whole row")


def use_attention(model, implementation: str):
    """Set ``model``'s attention implementation; returns the function that sets back the previous one.

    Refuses, before anything changes, a model whose class cannot switch (transformers only warns, and the
    model would go on with its old implementation and the wrong batches)."""
    config = model.config
    previous = config._attn_implementation
    if implementation == previous:
        return lambda: None
    if implementation == PER_EXAMPLE_SDPA:
        register()
    model.set_attn_implementation(implementation)
    if config._attn_implementation != implementation:
        raise SettingsError(f"{type(model).__name__} did not switch its attention from {previous!r} to "
                            f"{implementation!r} (its class does not use transformers' AttentionInterface). Fix: turn "
                            "padding_free off for this model, or load it with a flash-attention implementation.")

    def restore():
        model.set_attn_implementation(previous)

    return restore
