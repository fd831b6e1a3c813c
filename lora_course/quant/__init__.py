"""Quantization: NF4 written out by hand (the lesson), and thin wrappers around bitsandbytes (what runs)."""

from lora_course.quant.nf4 import (
    NF4Tensor,
    bits_per_parameter,
    dequantize_nf4,
    dynamic_map,
    nf4_levels,
    quantize_nf4,
)

__all__ = ["NF4Tensor", "bits_per_parameter", "dequantize_nf4", "dynamic_map", "nf4_levels", "quantize_nf4"]
