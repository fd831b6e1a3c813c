"""Will it fit? An analytic estimate of the peak memory of a training step, from a model's config alone.

What lives through the whole step:
    weights          every parameter in its storage dtype; QLoRA stores the decoder's linear weights
                     in NF4 (4 bits) and its quantization constants separately:
    quant constants  one 8-bit absmax per block of 64 weights plus, with double quantization, one
                     fp32 absmax per 256 of those blocks: 4 + 8/64 + 32/(64*256) = 4.127 bits a weight
    gradients        one per trainable parameter, in its dtype (the package's adapters are fp32)
    optimizer        AdamW 2 moments in the gradient's dtype (+4 bytes per tensor for the step count);
                     8-bit AdamW 2 x 1 byte plus an fp32 absmax per 256 values (tensors under 4,096
                     values keep 32-bit states, as bitsandbytes does); SGD none
Gradients and optimizer states are counted as alive during backward: with gradient accumulation they
are (the earlier micro-batches' gradients, the states from the step before).

What the forward saves for backward (all of it alive when backward starts):
    activations      op by op, for the Llama architecture actually run (below)
    autocast copies  mixed precision over fp32 weights: autocast casts each weight to 16 bits for its
                     matmul, and the backward of that matmul keeps the copy (a frozen weight's copy is
                     kept whenever its input needs a gradient, i.e. in every layer after the first
                     adapter). A bf16 copy of nearly the whole model: why LitGPT's bf16-mixed LoRA run
                     of Llama 2 7B ran out of memory on a 40 GB card where bf16-true needed 21 GB
    logits           the forward's vocabulary-wide tensors: the head's logits and the log-softmax the
                     loss saves (fp32). The course's loss sends only the
                     positions that predict a target through the head (lora_course.train.loss): B x (T-1)
                     rows, every token a target, the worst case; ``full_logits`` counts every position
                     as Hugging Face's loss does; ``loss_chunk_rows`` one chunk of rows at a time, and
                     then (the fused linear cross-entropy) the forward keeps the target rows' hidden-state
                     gradient (and the head weight's fp32 gradient if it trains) instead of the logits

What exists only for a moment; the phases follow one another, so the peak is the largest of them:
    logits upcast    the loss's fp32 copy of 16-bit logits (and, in Hugging Face's loss before
                     transformers 4.49, a shifted contiguous copy of it), freed once the log-softmax exists
    logits gradient  the loss's backward: nll's gradient and log-softmax's, both vocabulary-wide fp32,
                     next to the saved log-softmax (the logits themselves are freed by then); chunked, none:
                     the fused loss computes each chunk's logits gradient in its forward, in place
    recomputation    gradient checkpointing: the layer being back-propagated has its activations
                     rebuilt (and, under autocast, its weight copies)
    backward temps   the largest op's backward scratch: the SwiGLU MLP's three I-wide gradients (plus a
                     dequantized weight under QLoRA), or eager attention's two T x T ones, or fused
                     attention's dq/dk/dv and fp32 dq accumulator; plus the residual stream's gradient
    optimizer temps  the optimizer step: torch's AdamW on CUDA (foreach) one temporary per trainable
                     value; on CPU (a loop over tensors) the largest tensor's
And outside all tensors, on CUDA only:
    overhead         the CUDA context and the caching allocator's slack (constants below); not part of
                     torch.cuda.max_memory_allocated, which ``Breakdown.allocated`` compares with

Precision: fp32 (weights and activations fp32); mixed (autocast: matmuls and most activations in 16
bits, the weights in ``param_dtype``, fp32 master weights the usual case); pure 16-bit
(``param_dtype="bfloat16"`` without autocast, as LitGPT's bf16-true and torchtune train: weights,
activations, gradients and optimizer states of full fine-tuning all bf16; the package's adapters stay fp32).

Activations per decoder layer, for micro-batch B, sequence T, hidden h, MLP width I, nh query heads
and nkv key/value heads of size d (each term appears only when autograd needs it, which this module
works out from what is trainable, layer by layer):
    RMSNorm       input (upcast to fp32, B T h) and its 1/rms (B T); the normalized input when the
                  norm weight trains
    projections   the input of every linear whose weight or adapter trains: one tensor shared by q, k
                  and v in fp32; a copy per adapter when the adapter casts it (fp32 adapters on 16-bit
                  activations) or autocast does (16-bit copy); an adapter's A output (B T r); with
                  ``nf4_saves_inputs``, every 4-bit layer's input (bitsandbytes before 0.43.2)
    attention     eager: q and the GQA-expanded k and v and the softmax (B nh T T); sdpa and flash
                  attention: q, k, v (unexpanded), the output and the log-sum-exp (no T x T matrix)
    SwiGLU MLP    the gate output, its SiLU, the up output (3 x B T I) and the down projection's
                  input (B T I) when it trains
Korthikanti et al. (2022) count 34 B T h + 5 nh T^2 B bytes per layer in 16 bits for a GPT
layer with a 4h GELU MLP, LayerNorm, dropout masks and all weights trainable. Here there are no
dropout masks (dropout is off in these models and the course's adapters), RMSNorm saves 1/rms instead
of mean and variance, the SwiGLU MLP saves three I-wide tensors instead of two 4h-wide ones, and a
frozen weight saves no input, which is why LoRA's activations are smaller than full fine-tuning's.
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
# The CUDA context (kernels, cuBLAS/cuDNN handles) lives outside PyTorch's allocator. With CUDA's lazy
# module loading (PyTorch's default since 2.0) it is a few hundred MiB; Hugging Face's "Model training
# anatomy" page measured 1.3 GB on an A100 when every kernel was loaded eagerly. 0.5 GiB is an allowance
# for the lazy case, not a measurement of this project (no GPU was at hand when it was set).
CUDA_CONTEXT_BYTES = GIB // 2
# The caching allocator keeps freed blocks for reuse; tensors of changing sizes leave gaps between
# reserved and allocated memory. 5% of the peak is an allowance of the same kind, not a measurement.
ALLOCATOR_SLACK = 0.05
PHASES = {"forward": "the end of the forward (the logits)", "loss_backward": "the loss's backward (its gradients)",
          "layer_backward": "a decoder layer's backward", "optimizer": "the optimizer step"}


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
    """The memory of one training step, component by component, and its peak (bytes)."""
    c = _config_of(model_or_config)
    L, h, V, I = c.num_hidden_layers, c.hidden_size, c.vocab_size, c.intermediate_size
    nh = c.num_attention_heads
    d = getattr(c, "head_dim", None) or h // nh
    nkv = getattr(c, "num_key_value_heads", None) or nh
    tied = bool(getattr(c, "tie_word_embeddings", False))
    B, T, r = setup.micro_batch_size, setup.sequence_length, setup.r
    shapes = _shapes(c)
    targets = _targets(setup)
    wbytes = DTYPE_BYTES[setup.param_dtype]
    autocast = setup.mixed_precision
    act = 2 if autocast or wbytes == 2 else 4  # matmul outputs: 16-bit under autocast or on 16-bit weights
    stream = wbytes  # the residual stream and the norms' outputs: the embeddings' dtype (autocast leaves adds alone)
    adapter_act = 2 if autocast else 4  # the package's adapters are fp32; autocast runs them in 16 bits
    quantized = setup.method == "qlora"
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
    base_params = L * (linear_per_layer + norms_per_layer) + embed + head + h

    if quantized:
        n_quantized = L * linear_per_layer
        packed, constants = nf4_bytes(n_quantized, tensors=L * len(LLAMA_PROJECTIONS))
        weights = packed + (base_params - n_quantized) * wbytes + adapters * 4
    else:
        weights = base_params * wbytes + adapters * 4
        constants = 0

    # trainable tensors (for the optimizer's per-tensor costs): list of sizes
    if setup.method == "full":
        trainable = [embed] + ([head] if head else []) + [h] + L * ([i * o for i, o in shapes.values()] + [h, h])
    elif setup.method == "partial":
        trainable = ([head] if head else []) + [h] + (L - frozen) * ([i * o for i, o in shapes.values()] + [h, h])
    else:
        trainable = L * [r * shapes[m][i] for m in sorted(targets) for i in (0, 1)]
    n_trainable = sum(trainable)
    gbytes = 4 if setup.adapter else wbytes
    gradients = n_trainable * gbytes
    optimizer = _optimizer_bytes(setup.optimizer, trainable, gbytes)
    # torch's AdamW (bitsandbytes' optimizers update in place): on CUDA the foreach implementation computes
    # sqrt(v) for every tensor at once, one temporary per trainable value; on CPU it goes tensor by tensor
    optimizer_temporaries = 0
    if setup.optimizer == "adamw":
        optimizer_temporaries = (n_trainable if setup.target_device == "cuda" else max(trainable)) * gbytes

    # ---- activations, layer by layer, following which tensors need a gradient
    def trains(layer: int, module: str) -> bool:
        if setup.method == "full":
            return True
        if setup.method == "partial":
            return layer >= frozen
        return module in targets

    def norm_trains(layer: int) -> bool:
        return setup.method == "full" or (setup.method == "partial" and layer >= frozen)

    def saved_inputs(layer: int, modules: tuple, width: int, source: int, needs_grad: bool,
                     kept_already: bool = False) -> int:
        """Bytes a group of linears reading one input (of ``source`` bytes a value) keeps of it
        (``kept_already``: the input itself is saved by the op before, so sharing it costs nothing)."""
        shared, copies = False, 0
        for m in modules:
            if setup.method in ("full", "partial") and trains(layer, m):
                if autocast and source == 4:
                    copies += 2 * width  # autocast casts the input once per linear
                else:
                    shared = True
            if setup.adapter and m in targets:
                if source == 4 and not autocast:
                    shared = True  # fp32 adapters on fp32 activations read the input itself
                else:
                    copies += adapter_act * width  # a copy per adapter: to fp32, or autocast's 16-bit one
            if quantized and setup.nf4_saves_inputs and needs_grad:
                if source == act:
                    shared = True
                else:
                    copies += act * width  # cast to the compute dtype, once per 4-bit layer
        return B * T * (copies + (source * width if shared and not kept_already else 0))

    def weight_copies(layer: int, modules: tuple, input_needs_grad: bool) -> int:
        """autocast's 16-bit copies of fp32 weights that the matmuls' backward keeps: a weight's copy is
        needed for its input's gradient."""
        if not autocast:
            return 0
        total = 0
        for m in modules:
            i, o = shapes[m]
            if wbytes == 4 and not quantized and input_needs_grad:
                total += 2 * i * o  # the base weight (a 4-bit weight is dequantized by bitsandbytes instead)
            if setup.adapter and m in targets:  # the adapters are fp32 on any base
                total += 2 * r * o + (2 * r * i if input_needs_grad else 0)  # B's input (A's output) always does
        return total

    rg = setup.method == "full"  # does the residual stream entering this layer need a gradient?
    per_layer, copies_per_layer, rope_needed = [], [], False
    qkv, gate_up = ("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")
    for layer in range(L):
        a, cp = 0, 0
        # input RMSNorm: keeps x (fp32 upcast) and 1/rms when x needs a gradient
        if rg:
            a += B * T * h * 4 + B * T * 4
        if norm_trains(layer):
            a += B * T * h * stream
        a += saved_inputs(layer, qkv, h, stream, rg)
        cp += weight_copies(layer, qkv, rg)
        a += sum(B * T * r * adapter_act for m in qkv if setup.adapter and m in targets)
        q_rg, k_rg, v_rg = (rg or trains(layer, m) for m in qkv)
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
        elif scores_rg or v_rg:  # fused attention: q and the output, k and v unexpanded, log-sum-exp (fp32)
            a += 2 * heads + 2 * B * nkv * T * d * act + B * nh * T * 4
        attn_rg = scores_rg or v_rg
        # fused kernels return their output already laid out as o_proj's input: one tensor, saved by both
        fused_out_saved = setup.attn_implementation != "eager" and attn_rg
        a += saved_inputs(layer, ("o_proj",), nh * d, act, attn_rg, kept_already=fused_out_saved)
        cp += weight_copies(layer, ("o_proj",), attn_rg)
        if setup.adapter and "o_proj" in targets:
            a += B * T * r * adapter_act
        rg = rg or attn_rg or trains(layer, "o_proj")
        # post-attention RMSNorm
        if rg:
            a += B * T * h * 4 + B * T * 4
        if norm_trains(layer):
            a += B * T * h * stream
        a += saved_inputs(layer, gate_up, h, stream, rg)
        cp += weight_copies(layer, gate_up, rg)
        a += sum(B * T * r * adapter_act for m in gate_up if setup.adapter and m in targets)
        gate_rg, up_rg = rg or trains(layer, "gate_proj"), rg or trains(layer, "up_proj")
        if gate_rg:
            a += B * T * I * act * 2  # the gate output (for SiLU) and the up output (for the product)
        if up_rg:
            a += B * T * I * act  # SiLU(gate), for the product's gradient w.r.t. up
        mlp_rg = gate_rg or up_rg
        a += saved_inputs(layer, ("down_proj",), I, act, mlp_rg)
        cp += weight_copies(layer, ("down_proj",), mlp_rg)
        if setup.adapter and "down_proj" in targets:
            a += B * T * r * adapter_act
        rg = rg or mlp_rg or trains(layer, "down_proj")
        per_layer.append(a)
        copies_per_layer.append(cp)

    # ---- after the layers: final norm, the head's input, the labels
    rows = B * T if setup.full_logits else B * (T - 1)  # the positions the output head computes
    chunk = min(rows, setup.loss_chunk_rows) if setup.loss_chunk_rows else rows
    final = 0
    if rg:
        final += B * T * h * 4 + B * T * 4  # final RMSNorm input and 1/rms
    head_trains = setup.method == "full" or (setup.method == "partial" and not tied)
    if setup.method in ("full", "partial"):
        final += B * T * h * stream  # final norm weight trains: keeps the normalized input
    fused = bool(setup.loss_chunk_rows)  # the model's own Linear head: the fused linear cross-entropy
    if fused:  # its forward leaves the gradients, not the inputs, for the backward
        if rg or setup.method in ("full", "partial"):
            final += rows * h * act  # the target rows' hidden-state gradient
        if head_trains:
            final += V * h * 4  # the head weight's gradient, accumulated in fp32 over the chunks
    elif head_trains:
        final += rows * h * act  # lm_head input
    final += B * (T - 1) * 8  # the shifted labels the loss keeps
    if setup.method == "full":
        final += B * T * 8  # the embedding keeps the token ids
    head_copy = 2 * V * h if autocast and wbytes == 4 and (rg or head_trains) else 0  # fused: autocast's cache

    if setup.gradient_checkpointing:
        # each checkpointed layer keeps only its input; the rest, weight copies included, is recomputed
        activations = L * B * T * h * stream + final
        autocast_copies = head_copy
        recomputation = max(a + cp for a, cp in zip(per_layer, copies_per_layer))
    else:
        activations = sum(per_layer) + final
        autocast_copies = sum(copies_per_layer) + head_copy
        recomputation = 0
        if rope_needed:
            activations += 2 * T * d * stream  # RoPE cos and sin, shared by all layers

    # ---- the vocabulary-wide tensors: forward, then the loss's backward
    upcast = 4 if act != 4 else 0  # the loss's fp32 copy of 16-bit logits
    if fused:  # all in the forward, one chunk at a time; the backward only scales the stored gradients
        logits = chunk * V * 4  # the chunk's fp32 logits, turned into their gradient in place
        logits_upcast = chunk * V * (act if act != 4 else 0)  # the 16-bit logits, then the 16-bit d_logits
        if head_trains:  # a chunk's weight gradient in the logits' dtype and its fp32 copy, before the sum
            logits_upcast += V * h * (act + (4 if act != 4 else 0))
        logits_gradient = 0
        loss_backward = (rows * h * act if rg or setup.method in ("full", "partial") else 0) + (
            V * h * 4 if head_trains else 0)  # the scaled copies of the stored gradients
    else:
        logits = chunk * V * (act + 4)  # the logits and the saved log-softmax (fp32)
        logits_upcast = chunk * V * upcast  # the loss's input, freed once the log-softmax is computed
        if setup.full_logits:
            logits_upcast += chunk * V * 4  # transformers before 4.49 shifted the fp32 logits with a contiguous copy
        logits_gradient = chunk * V * 8  # nll's gradient and log-softmax's, fp32
        loss_backward = chunk * V * 4 + logits_gradient  # next to the saved log-softmax

    # ---- the largest op's backward scratch, and the residual stream's gradient beside it
    mlp_scratch = 3 * B * T * I * act + (I * h * act if quantized else 0)  # + a dequantized 4-bit weight
    if setup.attn_implementation == "eager":
        attention_scratch = 2 * B * nh * T * T * 4
    else:
        attention_scratch = B * T * (nh + 2 * nkv) * d * act + B * nh * T * d * 4  # dq, dk, dv; fp32 dq accumulator
    backward_temporaries = max(mlp_scratch, attention_scratch) + 2 * B * T * h * stream

    persistent = weights + constants + gradients + optimizer
    saved = activations + autocast_copies
    phases = {"forward": saved + logits + logits_upcast, "loss_backward": saved + loss_backward,
              "layer_backward": saved + recomputation + backward_temporaries, "optimizer": optimizer_temporaries}
    phase = max(phases, key=phases.get)
    peak = persistent + phases[phase]
    overhead = 0
    if setup.target_device == "cuda":
        overhead = CUDA_CONTEXT_BYTES + int(ALLOCATOR_SLACK * peak)
        notes.append(f"CUDA: +{CUDA_CONTEXT_BYTES / GIB:.1f} GiB context and {ALLOCATOR_SLACK:.0%} allocator slack "
                     "(outside torch.cuda.max_memory_allocated)")
    if setup.gradient_checkpointing:
        notes.append("gradient checkpointing: layer inputs kept; one layer's activations are recomputed during backward")
    if setup.pure_16bit:
        notes.append(f"pure {setup.param_dtype}: no autocast; activations and full fine-tuning's gradients and "
                     "optimizer states in that dtype (the adapters stay fp32)")
    return Breakdown(weights=weights, quant_constants=constants, gradients=gradients, optimizer_states=optimizer,
                     activations=activations, logits=logits, overhead=overhead, autocast_copies=autocast_copies,
                     logits_upcast=logits_upcast, logits_gradient=logits_gradient, recomputation=recomputation,
                     backward_temporaries=backward_temporaries, optimizer_temporaries=optimizer_temporaries,
                     peak=peak, phase=PHASES[phase], notes=notes)


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
