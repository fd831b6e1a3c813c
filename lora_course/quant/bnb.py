"""The same NF4 through bitsandbytes (what QLoRA actually runs); bitsandbytes >= 0.45 also runs it on CPU."""

from __future__ import annotations

import torch

from lora_course.quant.nf4 import BLOCKSIZE


def bnb_nf4_levels() -> torch.Tensor:
    """bitsandbytes' hard-coded NF4 table (16 values)."""
    from bitsandbytes.functional import get_4bit_type

    return get_4bit_type("nf4", device="cpu")[:16].clone()


def bnb_quantize_nf4(weight: torch.Tensor, blocksize: int = BLOCKSIZE, double_quant: bool = True):
    """``(packed, quant_state)`` from ``bitsandbytes.functional.quantize_4bit`` (double quantization =
    ``compress_statistics``; its nested blocksize is fixed at 256)."""
    from bitsandbytes.functional import quantize_4bit

    return quantize_4bit(weight, blocksize=blocksize, compress_statistics=double_quant, quant_type="nf4")


def bnb_dequantize_nf4(packed: torch.Tensor, quant_state) -> torch.Tensor:
    from bitsandbytes.functional import dequantize_4bit

    return dequantize_4bit(packed, quant_state=quant_state, quant_type="nf4")


def bnb_nbytes(packed: torch.Tensor, quant_state) -> int:
    """Bytes bitsandbytes stores for one weight: packed codes + absmax (+ nested absmax and offset)."""
    n = packed.numel() * packed.element_size() + quant_state.absmax.numel() * quant_state.absmax.element_size()
    if quant_state.nested:
        n += quant_state.state2.absmax.numel() * quant_state.state2.absmax.element_size() + 4
    return n
