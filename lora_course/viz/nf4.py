"""NF4 drawn for the book: one block with its 16 scaled levels, and the error against the block size.

Everything numeric comes from ``lora_course.quant`` (levels, quantize / dequantize, bits per weight);
this module only chooses what to show and draws it.
"""

from __future__ import annotations

import torch

from lora_course.errors import SettingsError
from lora_course.quant import (
    bits_per_parameter,
    dequantize_nf4,
    nf4_levels,
    quantize_nf4,
)
from lora_course.viz.widgets import Choice, Explorable, IntRange, Toggle

BLOCK_SIZES = (16, 32, 64, 128, 256, 1024, 4096)
OUTLIER_EVERY = 1000  # one weight in this many is an outlier when outlier_scale > 1


def with_outliers(weights: torch.Tensor, scale: float, every: int = OUTLIER_EVERY, seed: int = 0) -> torch.Tensor:
    """A flat fp32 copy of ``weights`` with one value in ``every`` (random positions) multiplied by ``scale``:
    the rare large weights ("outlier features") that real layers have and a block's absmax has to cover."""
    flat = weights.detach().reshape(-1).float().clone()
    if scale != 1:
        n = max(1, flat.numel() // every)
        positions = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(seed))[:n]
        flat[positions] *= scale
    return flat


def nf4_error(weights: torch.Tensor, blocksize: int, double_quant: bool = True) -> dict:
    """Quantize ``weights`` to NF4 with the package and compare: errors, levels used, storage."""
    flat = weights.detach().reshape(-1).float()
    if blocksize < 2 or blocksize & (blocksize - 1):
        raise SettingsError(f"NF4 block size {blocksize} is not a power of two >= 2. Fix: use 64 (QLoRA's) "
                            "or another power of two.")
    q = quantize_nf4(flat, blocksize=blocksize, double_quant=double_quant)
    restored = dequantize_nf4(q)
    error = (restored - flat).abs()
    return {"blocksize": blocksize, "double_quant": double_quant, "q": q, "restored": restored,
            "mean_abs_error": error.mean().item(), "max_abs_error": error.max().item(),
            "relative_error": ((restored - flat).norm() / flat.norm()).item(),
            "bits_per_weight": bits_per_parameter(blocksize, double_quant=double_quant),
            "stored_bits_per_weight": 8 * q.nbytes() / flat.numel()}


def draw_nf4(fig, weights: torch.Tensor, blocksize: int = 64, outlier_scale: float = 1.0, double_quant: bool = True,
             block_sizes=BLOCK_SIZES) -> dict:
    """Left: the block holding the largest weight, its values, the 16 NF4 levels times its absmax, and the
    dequantized values. Right: the mean error of the whole sample against the block size, and the bits each
    weight costs (codes + constants); the chosen size is marked. Returns the chosen size's ``nf4_error``."""
    data = with_outliers(weights, outlier_scale)
    sizes = sorted(set(block_sizes) | {blocksize})
    results = {b: nf4_error(data, b, double_quant) for b in sizes}
    chosen = results[blocksize]
    ax_block, ax_sweep = fig.subplots(1, 2, width_ratios=[1.4, 1])

    start = (int(data.abs().argmax()) // blocksize) * blocksize
    block = data[start:start + blocksize]
    restored = chosen["restored"][start:start + blocksize]
    absmax = restored.abs().max().item()  # the block's absmax as stored (after double quantization)
    levels = nf4_levels() * absmax
    for level in levels.tolist():
        ax_block.axhline(level, color="tab:red", linewidth=0.6, alpha=0.7)
    x = torch.arange(block.numel())
    ax_block.scatter(x, block, s=6, color="0.35", label="weight", zorder=3)
    ax_block.scatter(x, restored, s=10, marker="_", color="tab:red", label="dequantized", zorder=4)
    used = int(torch.unique(restored).numel())
    chosen["levels_used"] = used
    ax_block.set_title(f"block of {blocksize} holding the largest weight: {used} of 16 levels used", fontsize=9)
    ax_block.set_xlabel("position in block")
    ax_block.set_ylabel("value (red lines: levels x absmax)")
    ax_block.legend(fontsize=7, loc="lower right")

    errors = [results[b]["mean_abs_error"] for b in sizes]
    ax_sweep.plot(sizes, errors, "o-", color="tab:blue")
    ax_sweep.plot([blocksize], [chosen["mean_abs_error"]], "o", markersize=11, markerfacecolor="none",
                  markeredgecolor="black", markeredgewidth=2)
    ax_sweep.set_xscale("log", base=2)
    ax_sweep.set_xlabel("block size")
    ax_sweep.set_ylabel("mean |error|", color="tab:blue")
    bits = ax_sweep.twinx()
    bits.plot(sizes, [results[b]["bits_per_weight"] for b in sizes], "s--", color="tab:green", markersize=4)
    bits.set_ylabel("bits per weight", color="tab:green")
    ax_sweep.set_title(f"mean |err| {chosen['mean_abs_error']:.2e}, max {chosen['max_abs_error']:.2e}\n"
                       f"{chosen['bits_per_weight']:.3f} bits/weight "
                       f"({'double quant' if double_quant else 'fp32 absmax'})", fontsize=9)
    return chosen


def nf4_panel(weights: torch.Tensor, sample: int = 8192, block_sizes=BLOCK_SIZES) -> Explorable:
    """Controls for the block size, an outlier scale and double quantization over ``draw_nf4`` on the first
    ``sample`` values of ``weights``. A static page shows four fixed settings instead."""
    data = weights.detach().reshape(-1)[:sample].float()

    def draw(fig, blocksize, outlier_scale, double_quant):
        return draw_nf4(fig, data, blocksize, outlier_scale, double_quant, block_sizes)

    controls = {"blocksize": Choice(list(block_sizes), 64, slider=True, description="block size"),
                "outlier_scale": IntRange(1, 50, 1, description="outliers x"),
                "double_quant": Toggle(True, description="double quantization")}
    settings = [{"blocksize": 64}, {"blocksize": 1024}, {"blocksize": 64, "outlier_scale": 20},
                {"blocksize": 1024, "outlier_scale": 20}]

    def label(v: dict) -> str:
        return (f"block size {v['blocksize']}, "
                + (f"1 weight in {OUTLIER_EVERY} x{v['outlier_scale']}" if v["outlier_scale"] != 1 else "no outliers added")
                + ("" if v["double_quant"] else ", fp32 absmax"))

    return Explorable(draw, controls, settings, panel_size=(7.0, 3.2), label=label,
                      title=f"NF4 on {data.numel():,} weights")
