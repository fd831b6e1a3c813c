"""Memory measured from the tensors themselves, around one real step of the package's trainer.

- weights and quantization constants: the bytes of every parameter and of bitsandbytes' quant
  states (absmax, nested absmax, code book), each storage once;
- gradients: the bytes of each ``.grad`` as backward writes it (a post-accumulate hook);
- optimizer states: the bytes the optimizer holds after its step;
- activations: every tensor autograd saves for backward, seen through
  ``torch.autograd.graph.saved_tensors_hooks`` and counted once per storage (views of one
  buffer share it; parameters saved by a matmul are weights, not activations);
- logits: the vocabulary-sized tensors among them, plus the logits the model returns.
On CUDA the step's ``torch.cuda.max_memory_allocated`` comes with it, for the whole picture.
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

    def __init__(self, exclude: set[int], vocab_size: int):
        self.exclude, self.vocab_size = exclude, vocab_size
        self.activations, self.logits, self.seen = 0, 0, set()

    def pack(self, t: torch.Tensor):
        ptr, n = _storage(t)
        if ptr not in self.exclude and ptr not in self.seen:
            self.seen.add(ptr)
            if t.dim() >= 2 and t.shape[-1] == self.vocab_size:
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
    saved = _SavedTensors(exclude, model.config.vocab_size)
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
                     logits=saved.logits, overhead=0,
                     cuda_peak=result.peak_memory_bytes if next(model.parameters()).is_cuda else None)
