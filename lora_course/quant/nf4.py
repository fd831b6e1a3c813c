"""NF4 (4-bit NormalFloat) with double quantization, from scratch, as in QLoRA (Dettmers et al., 2023).

1. The 16 levels are quantiles of a standard normal, rescaled to [-1, 1]: 8 from the negative
   half, 9 from the positive half (zero is shared), so zero is exact and the type is asymmetric.
2. Weights are cut into blocks of ``blocksize`` (64). Each block is divided by its absolute
   maximum ("absmax") and every value is replaced by the index of its nearest level (4 bits).
3. Double quantization: the absmax constants (one fp32 per block = 0.5 extra bits per weight)
   are themselves quantized: their mean is subtracted, they are cut into blocks of
   ``nested_blocksize`` (256), and each is stored as an 8-bit index into bitsandbytes' signed
   "dynamic" map, with one fp32 absmax per nested block.

Storage per weight: 4 + 8/64 + 32/(64*256) = 4.127 bits with double quantization, 4 + 32/64 = 4.5
without (plus one fp32 offset per tensor, negligible). ``lora_course.quant.bnb`` runs the same
algorithm through bitsandbytes; tests check the two agree.
"""

from __future__ import annotations

import dataclasses

import torch

# bitsandbytes' offset: the outermost quantile used, chosen so the levels span about +-1.85 sigma.
NF4_OFFSET = 0.9677083
BLOCKSIZE = 64  # weights per absmax
NESTED_BLOCKSIZE = 256  # absmax constants per fp32 constant, with double quantization (fixed in bitsandbytes)
NF4_LEVELS = 16  # the code book of a 4-bit type
DYNAMIC_MAP_LEVELS = 256  # the 8-bit "dynamic" code book the absmax constants are stored in


def nf4_levels(offset: float = NF4_OFFSET) -> torch.Tensor:
    """The 16 NF4 levels, sorted, in [-1, 1] (float32)."""
    ppf = torch.special.ndtri  # the normal quantile function (scipy's norm.ppf)
    positive = ppf(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])  # 8 values > 0
    negative = -ppf(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])  # 7 values < 0
    levels = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).sort().values
    return (levels / levels.max()).float()


def dynamic_map(max_exponent_bits: int = 7, total_bits: int = 8) -> torch.Tensor:
    """bitsandbytes' signed 8-bit "dynamic" map (Dettmers, 2015): a decimal exponent, 10**-6 .. 10**0,
    and a linear fraction whose resolution grows as the exponent grows. Used for the absmax constants."""
    non_sign_bits = total_bits - 1
    values: list[float] = []
    for i in range(max_exponent_bits):
        edges = torch.linspace(0.1, 1, 2 ** (i + non_sign_bits - max_exponent_bits) + 1, dtype=torch.float32)
        means = ((edges[:-1] + edges[1:]) / 2.0).tolist()
        scale = 10 ** (-(max_exponent_bits - 1) + i)
        values += [scale * m for m in means] + [-scale * m for m in means]
    values += [0.0, 1.0]
    values += [0.0] * (2**total_bits - len(values))
    return torch.tensor(sorted(values), dtype=torch.float32)


def _blockwise(x: torch.Tensor, levels: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the nearest level of each value divided by its block's absmax; and the absmaxes."""
    flat = x.reshape(-1).float()
    pad = (-flat.numel()) % blocksize
    blocks = torch.nn.functional.pad(flat, (0, pad)).view(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    scaled = (blocks / absmax.clamp(min=1e-38)[:, None]).clamp(-1, 1).reshape(-1)[: flat.numel()]
    midpoints = (levels[:-1] + levels[1:]) / 2  # nearest level == the bucket between midpoints
    return torch.bucketize(scaled, midpoints).to(torch.uint8), absmax


def _unblock(indices: torch.Tensor, levels: torch.Tensor, absmax: torch.Tensor, blocksize: int) -> torch.Tensor:
    values = levels[indices.long()]
    pad = (-values.numel()) % blocksize
    values = torch.nn.functional.pad(values, (0, pad)).view(-1, blocksize) * absmax[:, None]
    return values.reshape(-1)[: indices.numel()]


@dataclasses.dataclass
class NF4Tensor:
    """A weight in NF4: two 4-bit indices per byte, plus its (possibly double-quantized) absmaxes."""

    packed: torch.Tensor  # uint8, ceil(n/2): first value in the high nibble, as bitsandbytes packs
    shape: torch.Size
    dtype: torch.dtype
    blocksize: int
    absmax: torch.Tensor  # fp32 per block, or uint8 indices into dynamic_map() when double-quantized
    offset: float | None = None  # mean subtracted from the absmaxes before their quantization
    nested_absmax: torch.Tensor | None = None  # fp32 per nested block
    nested_blocksize: int | None = None

    @property
    def double_quant(self) -> bool:
        return self.nested_absmax is not None

    def nbytes(self) -> int:
        """Bytes actually stored: packed codes + constants."""
        n = self.packed.numel() + self.absmax.numel() * self.absmax.element_size()
        if self.double_quant:
            n += self.nested_absmax.numel() * 4 + 4
        return n


def quantize_nf4(weight: torch.Tensor, blocksize: int = BLOCKSIZE, double_quant: bool = True,
                 nested_blocksize: int = NESTED_BLOCKSIZE) -> NF4Tensor:
    """Quantize ``weight`` to NF4 with blockwise absmax scaling (and double quantization of the absmaxes)."""
    indices, absmax = _blockwise(weight, nf4_levels(), blocksize)
    if indices.numel() % 2:
        indices = torch.cat([indices, indices.new_zeros(1)])
    packed = (indices[0::2] << 4) | indices[1::2]
    q = NF4Tensor(packed=packed, shape=weight.shape, dtype=weight.dtype, blocksize=blocksize, absmax=absmax)
    if double_quant:
        offset = absmax.mean()
        q.absmax, q.nested_absmax = _blockwise(absmax - offset, dynamic_map(), nested_blocksize)
        q.offset, q.nested_blocksize = float(offset), nested_blocksize
    return q


def dequantize_nf4(q: NF4Tensor) -> torch.Tensor:
    """Undo ``quantize_nf4``: the nearest-level values times their block's absmax, in the original dtype."""
    absmax = q.absmax
    if q.double_quant:
        absmax = _unblock(q.absmax, dynamic_map(), q.nested_absmax, q.nested_blocksize) + q.offset
    n = q.shape.numel()
    indices = torch.stack([q.packed >> 4, q.packed & 0xF], dim=1).reshape(-1)[:n]
    return _unblock(indices, nf4_levels(), absmax, q.blocksize).view(q.shape).to(q.dtype)


def bits_per_parameter(blocksize: int = BLOCKSIZE, nested_blocksize: int = NESTED_BLOCKSIZE, double_quant: bool = True) -> float:
    """Storage bits per weight: 4-bit codes + the absmax constants spread over their block.

    >>> round(bits_per_parameter(), 3), bits_per_parameter(double_quant=False)
    (4.127, 4.5)
    """
    if not double_quant:
        return 4 + 32 / blocksize
    return 4 + 8 / blocksize + 32 / (blocksize * nested_blocksize)
