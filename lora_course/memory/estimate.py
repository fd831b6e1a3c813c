"""Will it fit? An analytic estimate of training memory, from a model's config alone.

    weights          every parameter in its storage dtype; QLoRA stores the decoder's linear weights
                     in NF4 (4 bits) and its quantization constants separately:
    quant constants  one 8-bit absmax per block of 64 weights plus, with double quantization, one
                     fp32 absmax per 256 of those blocks: 4 + 8/64 + 32/(64*256) = 4.127 bits a weight
    gradients        one per trainable parameter, in its dtype (fp32 adapters: 4 bytes)
    optimizer        AdamW 2 moments x 4 bytes (= 8 bytes a trainable parameter, +4 per tensor for the
                     step count); 8-bit AdamW 2 x 1 byte plus an fp32 absmax per 256 values (tensors
                     under 4,096 values keep 32-bit states, as bitsandbytes does); SGD none
    activations      what autograd saves for backward, op by op, for the Llama architecture actually
                     run (below)
    logits           the vocabulary-sized tensors: the logits the model returns and the
                     log-softmax the loss saves; at 49,152 tokens of vocabulary these dominate
                     small models. The course's loss sends only the positions that predict a
                     target token through the output head (lora_course.train.loss), so this
                     counts B x (T - 1) rows: every token a target, the worst case. With the
                     prompt masked, the real figure is smaller by the share of prompt tokens.
    overhead         a stated allowance, not a measurement: on CUDA 0.5 GiB of context and
                     workspace plus 5% allocator slack; with checkpointing, one layer's activations
                     recomputed during backward. Zero on CPU.

Bytes per parameter by setup (weights + gradients + optimizer): fp32 AdamW full 4+4+8 = 16;
mixed precision with fp32 master weights the same 16 plus the 16-bit activations it saves;
8-bit AdamW full 4+4+2 = 10; LoRA ~4 (frozen fp32 weights) or ~2 (bf16) plus 16 per adapter
parameter; QLoRA 0.516 (4.127 bits) plus the adapters.

Activations per decoder layer, for micro-batch B, sequence T, hidden h, MLP width I, nh query
heads of size d (fp32; each term appears only when autograd needs it, which this module works
out from what is trainable, layer by layer):
    RMSNorm       input (B T h) and its 1/rms (B T), twice; the normalized input when the norm
                  weight trains
    projections   the input of every linear whose weight or adapter trains (q, k, v share one);
                  an adapter's A output (B T r)
    attention     eager: q and the GQA-expanded k and v (3 x B nh T d) and the softmax (B nh T T);
                  sdpa: q, k, v, the output and the log-sum-exp (no T x T matrix)
    SwiGLU MLP    the gate output, its SiLU, the up output (3 x B T I) and the down projection's
                  input (B T I) when it trains
Korthikanti et al. (2022) count 34 B T h + 5 nh T^2 B bytes per layer in 16 bits for a GPT
layer with a 4h GELU MLP, LayerNorm, dropout masks and all weights trainable. Here there are no
dropout masks (dropout is off in these models), RMSNorm saves 1/rms instead of mean and
variance, the SwiGLU MLP saves three I-wide tensors instead of two 4h-wide ones, grouped-query
attention expands k and v to all heads before the matmul, and a frozen weight saves no input,
which is why LoRA's activations are smaller than full fine-tuning's.
"""

from __future__ import annotations

import math

from lora_course.errors import SettingsError
from lora_course.lora.settings import ADAPTER_METHODS, ALL_LINEAR, LLAMA_PROJECTIONS
from lora_course.memory.breakdown import Breakdown, Setup
from lora_course.models.dtypes import DTYPE_BYTES
from lora_course.quant.nf4 import (
    BLOCKSIZE,
    DYNAMIC_MAP_LEVELS,
    NESTED_BLOCKSIZE,
    NF4_LEVELS,
)

GIB = 2**30


def _config_of(model_or_config):
    from lora_course.models import load_config

    if isinstance(model_or_config, str):
        return load_config(model_or_config)
    return getattr(model_or_config, "config", model_or_config)


def _targets(setup: Setup) -> set[str]:
    if setup.method not in ADAPTER_METHODS:
        return set()
    if setup.target_modules in (ALL_LINEAR, [ALL_LINEAR]):
        return set(LLAMA_PROJECTIONS)
    unknown = set(setup.target_modules) - set(LLAMA_PROJECTIONS)
    if unknown:
        raise SettingsError(f"target modules {sorted(unknown)} are not linear layers of a Llama-style block "
                         f"({', '.join(LLAMA_PROJECTIONS)}).")
    return set(setup.target_modules)


def _shapes(c) -> dict:
    d = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    nkv = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    h = c.hidden_size
    return {"q_proj": (h, c.num_attention_heads * d), "k_proj": (h, nkv * d), "v_proj": (h, nkv * d),
            "o_proj": (c.num_attention_heads * d, h), "gate_proj": (h, c.intermediate_size),
            "up_proj": (h, c.intermediate_size), "down_proj": (c.intermediate_size, h)}


def estimate(model_or_config, setup: Setup) -> Breakdown:
    """The memory of one training step, component by component (bytes)."""
    c = _config_of(model_or_config)
    L, h, V, I = c.num_hidden_layers, c.hidden_size, c.vocab_size, c.intermediate_size
    nh = c.num_attention_heads
    d = getattr(c, "head_dim", None) or h // nh
    tied = bool(getattr(c, "tie_word_embeddings", False))
    bias = bool(getattr(c, "attention_bias", False))
    B, T, r = setup.micro_batch_size, setup.sequence_length, setup.r
    shapes = _shapes(c)
    targets = _targets(setup)
    wbytes = DTYPE_BYTES[setup.param_dtype]
    act = 2 if setup.mixed_precision else 4  # activations under autocast are 16-bit
    frozen = setup.frozen_layers if setup.method == "partial" else 0
    if frozen >= L:
        raise SettingsError(f"frozen_layers must be below the model's {L} layers.")
    notes = []

    # ---- parameters: (count, trainable) per group
    linear_per_layer = sum(i * o for i, o in shapes.values())
    norms_per_layer = 2 * h
    embed = V * h
    head = 0 if tied else V * h
    adapter_per_layer = sum(r * (shapes[m][0] + shapes[m][1]) for m in targets)
    adapters = L * adapter_per_layer
    base_params = L * (linear_per_layer + norms_per_layer + (bias and 0)) + embed + head + h

    if setup.method == "qlora":
        quantized = L * linear_per_layer
        other = base_params - quantized
        packed, constants = nf4_bytes(quantized, tensors=L * len(LLAMA_PROJECTIONS))
        weights = packed + other * wbytes + adapters * 4
        adapter_bytes = 4
    else:
        adapter_bytes = wbytes
        weights = base_params * wbytes + adapters * adapter_bytes
        constants = 0

    # trainable tensors (for the optimizer's per-tensor costs): list of sizes
    if setup.method == "full":
        trainable = [embed] + ([head] if head else []) + [h] + L * ([i * o for i, o in shapes.values()] + [h, h])
    elif setup.method == "partial":
        trainable = ([head] if head else []) + [h] + (L - frozen) * ([i * o for i, o in shapes.values()] + [h, h])
    else:
        trainable = L * [r * shapes[m][i] for m in sorted(targets) for i in (0, 1)]
    n_trainable = sum(trainable)
    gbytes = adapter_bytes if setup.adapter else wbytes
    gradients = n_trainable * gbytes
    optimizer = _optimizer_bytes(setup.optimizer, trainable, gbytes)

    # ---- activations, layer by layer, following which tensors need a gradient
    def trains(layer: int, module: str) -> bool:
        if setup.method == "full":
            return True
        if setup.method == "partial":
            return layer >= frozen
        return module in targets

    def norm_trains(layer: int) -> bool:
        return setup.method == "full" or (setup.method == "partial" and layer >= frozen)

    rg = setup.method == "full"  # does the residual stream entering this layer need a gradient?
    per_layer, rope_needed = [], False
    for layer in range(L):
        a = 0
        # input RMSNorm: keeps x (fp32 upcast) and 1/rms when x needs a gradient
        if rg:
            a += B * T * h * 4 + B * T * 4
        if norm_trains(layer):
            a += B * T * h * 4
        qkv_train = {m: trains(layer, m) for m in ("q_proj", "k_proj", "v_proj")}
        if any(qkv_train.values()):
            a += B * T * h * act  # the shared input of q, k, v
        a += sum(B * T * r * act for m in ("q_proj", "k_proj", "v_proj") if setup.adapter and m in targets)
        q_rg, k_rg, v_rg = (rg or qkv_train[m] for m in ("q_proj", "k_proj", "v_proj"))
        scores_rg = q_rg or k_rg
        rope_needed |= scores_rg
        heads = B * nh * T * d * act
        if setup.attn_implementation == "eager":
            a += heads * (k_rg + q_rg + scores_rg)  # q, k (GQA-expanded), v (expanded)
            if scores_rg:
                a += B * nh * T * T * 4  # softmax output, in fp32
                if act != 4:
                    a += B * nh * T * T * act  # and its 16-bit copy the next matmul saves
            elif v_rg:
                a += B * nh * T * T * act
        else:  # sdpa (flash / memory-efficient): q, k, v, output, log-sum-exp
            if scores_rg or v_rg:
                a += 4 * heads + B * nh * T * 4
        attn_rg = scores_rg or v_rg
        if trains(layer, "o_proj"):
            a += B * T * h * act
        if setup.adapter and "o_proj" in targets:
            a += B * T * r * act
        rg = rg or attn_rg or trains(layer, "o_proj")
        # post-attention RMSNorm
        if rg:
            a += B * T * h * 4 + B * T * 4
        if norm_trains(layer):
            a += B * T * h * 4
        gate_t, up_t, down_t = (trains(layer, m) for m in ("gate_proj", "up_proj", "down_proj"))
        if gate_t or up_t:
            a += B * T * h * act
        a += sum(B * T * r * act for m in ("gate_proj", "up_proj") if setup.adapter and m in targets)
        gate_rg, up_rg = rg or gate_t, rg or up_t
        if gate_rg:
            a += B * T * I * act * 2  # the gate output (for SiLU) and the up output (for the product)
        if up_rg:
            a += B * T * I * act  # SiLU(gate), for the product's gradient w.r.t. up
        if down_t:
            a += B * T * I * act
        if setup.adapter and "down_proj" in targets:
            a += B * T * r * act
        rg = rg or gate_rg or up_rg or down_t
        per_layer.append((a, rg))

    final = 0
    if rg:
        final += B * T * h * 4 + B * T * 4  # final RMSNorm input and 1/rms
    head_trains = setup.method == "full" or (setup.method == "partial" and not tied)
    if setup.method in ("full", "partial"):
        final += B * T * h * 4  # final norm weight trains: keeps the normalized input
    if head_trains:
        final += B * T * h * act  # lm_head input
    final += B * (T - 1) * 8  # the shifted labels the loss keeps
    if setup.method == "full":
        final += B * T * 8  # the embedding keeps the token ids

    if setup.gradient_checkpointing:
        # each checkpointed layer keeps only its input; the rest is recomputed during backward
        kept = sum(B * T * h * act for _ in range(L))
        activations = kept + final
        recompute = max(a for a, _ in per_layer)
        notes.append("gradient checkpointing: layer inputs kept; one layer's activations are recomputed "
                     "during backward (counted in the overhead allowance)")
    else:
        activations = sum(a for a, _ in per_layer) + final
        recompute = 0
    if rope_needed and not setup.gradient_checkpointing:
        activations += 2 * T * d * 4  # RoPE cos and sin, shared by all layers (recomputed under checkpointing)

    rows = B * (T - 1)  # positions that predict a target: the only ones the output head computes
    logits = rows * V * act + rows * V * 4  # the returned logits + the saved log-softmax (fp32)
    if act != 4:
        logits += rows * V * 4  # the fp32 upcast the loss makes of 16-bit logits
    tensors = weights + constants + gradients + optimizer + activations + logits
    overhead = recompute
    if setup.mixed_precision or setup.param_dtype != "float32":
        notes.append("16-bit setups are modelled for CUDA: +0.5 GiB context/workspace and 5% allocator slack")
        overhead += GIB // 2 + int(0.05 * tensors)
    return Breakdown(weights=weights, quant_constants=constants, gradients=gradients, optimizer_states=optimizer,
                     activations=activations, logits=logits, overhead=overhead, notes=notes)


def nf4_bytes(n_weights: int, tensors: int = 0, double_quant: bool = True) -> tuple[int, int]:
    """(packed weights, quantization constants) of NF4: two weights a byte; one absmax per block of
    64, itself 8-bit with an fp32 absmax per 256 blocks when double-quantized (else fp32); and per
    quantized tensor its 16-value NF4 code book and 256-value 8-bit code book (fp32)."""
    blocks = math.ceil(n_weights / BLOCKSIZE)
    if double_quant:
        constants = blocks + math.ceil(blocks / NESTED_BLOCKSIZE) * 4 + tensors * (NF4_LEVELS + DYNAMIC_MAP_LEVELS) * 4
    else:
        constants = blocks * 4 + tensors * NF4_LEVELS * 4
    return math.ceil(n_weights / 2), constants


def _optimizer_bytes(name: str, sizes: list[int], param_bytes: int) -> int:
    name = name.removeprefix("paged_")  # paging moves the same states to the CPU only under memory pressure
    if name == "sgd":
        return 0
    if name == "adamw":
        return sum(2 * n * param_bytes + 4 for n in sizes)  # exp_avg, exp_avg_sq, step
    total = 0  # bitsandbytes 8-bit AdamW: blockwise 8-bit states for tensors of 4,096+ values
    for n in sizes:
        if n >= 4096:
            total += 2 * n + 2 * math.ceil(n / 256) * 4
        else:
            total += 2 * n * 4
    return total
