"""Memory measured from the tensors themselves, around one real step of the package's trainer.

- weights and quantization constants: the bytes of every parameter and of bitsandbytes' quant
  states (absmax, nested absmax, code book), each storage once;
- gradients: the bytes of each ``.grad`` as backward writes it (a post-accumulate hook);
- optimizer states: the bytes the optimizer holds after its step;
- activations: every tensor autograd saves for backward, seen through
  ``torch.autograd.graph.saved_tensors_hooks`` and counted once per storage (views of one
  buffer share it; parameters saved by a matmul are weights, not activations);
- autocast copies: the 16-bit tensors among them shaped like an fp32 weight (autocast's casts);
- logits: the vocabulary-sized tensors among them, plus the logits the model returns.
On CUDA the step's ``torch.cuda.max_memory_allocated`` comes with it, for the whole picture.

That accounting sees what lives through the step, not what lives for a moment (the loss's gradients,
backward scratch). ``measure_peak`` sees those: the peak of the allocator itself over real steps.
"""

from __future__ import annotations

import torch

from lora_course.memory.breakdown import Breakdown


def _storage(t: torch.Tensor):
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


def weight_bytes(model) -> tuple[int, int]:
    """(weights, quantization constants) in bytes, each storage counted once."""
    seen, weights, constants = set(), 0, 0
    for p in list(model.parameters()) + list(model.buffers()):
        ptr, n = _storage(p)
        if ptr not in seen:
            seen.add(ptr)
            weights += n
        state = getattr(p, "quant_state", None)
        if state is not None:
            tensors = [state.absmax, state.code]
            if getattr(state, "state2", None) is not None:
                tensors += [state.state2.absmax, state.state2.code]
            for t in tensors:
                ptr, n = _storage(t)
                if ptr not in seen:
                    seen.add(ptr)
                    constants += n
    return weights, constants


class _SavedTensors:
    """Records each storage autograd saves, once."""

    def __init__(self, exclude: set[int], vocab_size: int, fp32_weight_shapes: set[tuple]):
        self.exclude, self.vocab_size, self.weight_shapes = exclude, vocab_size, fp32_weight_shapes
        self.activations, self.logits, self.copies, self.seen = 0, 0, 0, set()

    def pack(self, t: torch.Tensor):
        ptr, n = _storage(t)
        if ptr not in self.exclude and ptr not in self.seen:
            self.seen.add(ptr)
            if t.dim() == 2 and t.dtype in (torch.bfloat16, torch.float16) and tuple(t.shape) in self.weight_shapes:
                self.copies += n  # autocast's cast of an fp32 weight, kept for the matmul's backward
            elif t.dim() >= 2 and t.shape[-1] == self.vocab_size:
                self.logits += n
            else:
                self.activations += n
        return t

    def output_logits(self, logits: torch.Tensor) -> None:
        ptr, n = _storage(logits)
        if ptr not in self.seen:
            self.seen.add(ptr)
            self.logits += n


def measure_step(model, examples, collator, micro_batch_size: int, gradient_checkpointing: bool = False,
                 optimizer: str = "adamw", precision: str = "fp32") -> Breakdown:
    """One optimizer step (one micro-batch) of ``lora_course.train.train``, measured."""
    from lora_course.train import TrainConfig, train

    params = list(model.parameters())
    weights, constants = weight_bytes(model)
    exclude = {_storage(p)[0] for p in params}
    # a matmul may save the weight transposed: both orientations
    fp32_shapes = {shape for p in params if p.dim() == 2 and p.dtype == torch.float32
                   for shape in (tuple(p.shape), tuple(p.shape)[::-1])}
    saved = _SavedTensors(exclude, model.config.vocab_size, fp32_shapes)
    grads: dict[int, int] = {}
    handles = [p.register_post_accumulate_grad_hook(lambda p: grads.__setitem__(id(p), p.grad.nbytes))
               for p in params if p.requires_grad]
    handles.append(model.register_forward_hook(lambda m, args, out: saved.output_logits(out.logits)))
    config = TrainConfig(micro_batch_size=micro_batch_size, max_steps=1, optimizer=optimizer, precision=precision,
                         gradient_checkpointing=gradient_checkpointing, progress=False, lr_scheduler="constant")
    try:
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
            result = train(model, examples[:micro_batch_size], collator, config, log=None)
    finally:
        for handle in handles:
            handle.remove()
    return Breakdown(weights=weights, quant_constants=constants, gradients=sum(grads.values()),
                     optimizer_states=result.optimizer_state_bytes, activations=saved.activations,
                     logits=saved.logits, overhead=0, autocast_copies=saved.copies,
                     cuda_peak=result.peak_memory_bytes if next(model.parameters()).is_cuda else None)


def measure_peak(model, examples, collator, micro_batch_size: int, gradient_checkpointing: bool = False,
                 optimizer: str = "adamw", precision: str = "fp32", loss_chunk_rows: int | None = None) -> int:
    """The peak bytes of PyTorch's CPU allocator over two optimizer steps of two micro-batches each
    (``4 x micro_batch_size`` examples), weights included.

    Two steps of two micro-batches, so that the peak is a steady state's: the second step starts with
    the optimizer states the first one made, and its second micro-batch back-propagates next to the
    first one's gradients, as the estimate assumes. Every allocation and free of the allocator is
    recorded by ``torch.profiler`` (``profile_memory=True``) with its time; the running sum of those
    events is the memory in use, temporaries included, and its maximum on top of what was allocated
    before (the weights) is the peak. That is the allocator the tensors really use, unlike the
    process's resident set: glibc keeps freed pages and the Python heap, and ``ru_maxrss`` cannot be
    reset between measurements. Allocations outside PyTorch's allocator (a BLAS library's own scratch)
    are not seen."""
    from torch.profiler import ProfilerActivity, profile

    from lora_course.train import TrainConfig, train

    if next(model.parameters()).is_cuda:
        raise ValueError("measure_peak reads the CPU allocator; on CUDA use torch.cuda.max_memory_allocated.")
    needed = 4 * micro_batch_size
    if len(examples) < needed:
        raise ValueError(f"measure_peak needs {needed} examples (two steps of two micro-batches), got {len(examples)}.")
    weights, constants = weight_bytes(model)
    config = TrainConfig(micro_batch_size=micro_batch_size, gradient_accumulation_steps=2, max_steps=2,
                         optimizer=optimizer, precision=precision, gradient_checkpointing=gradient_checkpointing,
                         loss_chunk_rows=loss_chunk_rows, progress=False, lr_scheduler="constant", shuffle=False)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        train(model, examples[:needed], collator, config, log=None)
    in_use = peak = 0
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    for event in sorted(events, key=lambda e: e.start_ns()):
        in_use += event.nbytes()
        peak = max(peak, in_use)
    return weights + constants + peak
