# %% markdown
# # Exercise 6: NF4, the 4-bit NormalFloat of QLoRA
#
# QLoRA stores the frozen weights in 4 bits. Three ideas make that accurate enough:
#
# 1. **Blockwise absmax**: cut the weights into blocks of 64 and divide each block by its largest absolute value,
#    so one outlier only spoils its own block.
# 2. **NF4 levels**: the 16 values a 4-bit code can point at are placed at quantiles of a normal distribution
#    (weights are roughly normal), with an exact zero; each weight becomes the index of its nearest level.
# 3. **Double quantization**: the per-block absmax constants are themselves quantized to 8 bits, in blocks of 256,
#    which brings their cost from 32/64 = 0.5 bits per weight down to about 0.127.
#
# Your implementation is checked against `bitsandbytes.functional`, which runs on a CPU.
# %% setup
# %% code id=imports
import warnings

import torch
import bitsandbytes.functional as bnbf

warnings.filterwarnings("ignore")
torch.manual_seed(0)

# The 16 NF4 levels (from the QLoRA paper's appendix): quantiles of N(0, 1) rescaled to [-1, 1],
# 8 on the positive side, 7 on the negative side, and an exact zero.
NF4_LEVELS = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
])
# %% markdown
# ## 6.1 Quantize and dequantize
#
# Write `quantize_nf4(w, blocksize=64)` for a 1-d float tensor (float32 or bfloat16) whose length is a multiple of
# `blocksize`. Return `(codes, absmax)`: `codes` a `torch.uint8` tensor of the same length holding, for each weight,
# the index (0-15) of the level in `NF4_LEVELS` nearest to `weight / absmax_of_its_block`; `absmax` a float32
# tensor with one value per block. A block of zeros has absmax 0: its weights get the code of the level 0.0 (as
# in bitsandbytes), not whatever 0 / 0 gives. Then write `dequantize_nf4(codes, absmax, blocksize=64)` that maps
# codes back to weights (float32).
# %% answer id=quantize
def quantize_nf4(w: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    ### BEGIN SOLUTION
    blocks = w.float().reshape(-1, blocksize)
    absmax = blocks.abs().max(dim=1).values
    scaled = blocks / absmax.clamp_min(torch.finfo(torch.float32).tiny)[:, None]
    codes = (scaled[..., None] - NF4_LEVELS).abs().argmin(dim=-1)
    return codes.reshape(-1).to(torch.uint8), absmax
    ### END SOLUTION


def dequantize_nf4(codes: torch.Tensor, absmax: torch.Tensor, blocksize: int = 64) -> torch.Tensor:
    ### BEGIN SOLUTION
    values = NF4_LEVELS[codes.long()].reshape(-1, blocksize)
    return (values * absmax[:, None]).reshape(-1)
    ### END SOLUTION
# %% test id=test_roundtrip points=3
w = torch.randn(64 * 32)
codes, absmax = quantize_nf4(w)
assert codes.dtype == torch.uint8 and codes.shape == w.shape
assert absmax.shape == (32,)
w_hat = dequantize_nf4(codes, absmax)
print(f"mean absolute error: {(w - w_hat).abs().mean():.4f}")
### BEGIN HIDDEN TESTS
assert int(codes.max()) <= 15, "codes index the 16 levels"
assert torch.allclose(absmax, w.reshape(-1, 64).abs().max(1).values), "absmax must be per block of 64"
assert (w - w_hat).abs().mean() < 0.1, "the round trip error is too large for NF4"
outlier = torch.randn(64 * 8)
outlier[3] = 100.0
o_hat = dequantize_nf4(*quantize_nf4(outlier))
assert (o_hat[64:] - outlier[64:]).abs().mean() < 0.15, "an outlier must only spoil its own block (blockwise absmax)"
edge = torch.randn(64 * 4)
edge[64:128] = 0.0
edge[128:192] = -2.5
e_codes, e_absmax = quantize_nf4(edge)
assert (e_codes[64:128] == 7).all(), "an all-zero block gets the code of the level 0.0 (its absmax is 0)"
assert torch.allclose(dequantize_nf4(e_codes, e_absmax)[128:192], edge[128:192]), "a constant block comes back exactly"
b_codes, b_absmax = quantize_nf4(torch.randn(64 * 4).to(torch.bfloat16))
assert b_absmax.dtype == torch.float32 and b_codes.dtype == torch.uint8, "bfloat16 weights: absmax stays float32"
### END HIDDEN TESTS
# %% test id=test_matches_bitsandbytes points=4
w = torch.randn(64 * 16)
packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4")
reference = bnbf.dequantize_4bit(packed, state).reshape(-1)
mine = dequantize_nf4(*quantize_nf4(w))
print(f"largest difference from bitsandbytes: {(mine - reference).abs().max():.2e}")
### BEGIN HIDDEN TESTS
assert torch.allclose(bnbf.get_4bit_type("nf4", device="cpu"), NF4_LEVELS), "the levels table was changed"
for seed, blocksize, scale in [(1, 64, 1.0), (2, 128, 0.02), (3, 64, 30.0)]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(blocksize * 24, generator=g) * scale
    packed, state = bnbf.quantize_4bit(w, blocksize=blocksize, quant_type="nf4")
    reference = bnbf.dequantize_4bit(packed, state).reshape(-1)
    mine = dequantize_nf4(*quantize_nf4(w, blocksize), blocksize)
    assert torch.allclose(mine, reference, rtol=1e-5, atol=1e-6 * scale), (
        f"differs from bitsandbytes NF4 (blocksize {blocksize}, scale {scale})")
### END HIDDEN TESTS
# %% markdown
# ## 6.2 Double quantization
#
# Write `double_quantize(absmax, blocksize=256)`: subtract the mean of `absmax` (keep it, as a float), cut the
# result into blocks of `blocksize` (the length is a multiple of it), and quantize each block *linearly and
# symmetrically* to int8: `q = round(x / c * 127)` with `c` the block's absmax (a block of equal values has
# `c = 0` once centred: its `q` must be 0, not what 0 / 0 gives). Return `(q, c, mean)` with `q` an
# `int8` tensor. Write `double_dequantize(q, c, mean, blocksize=256)` too. (bitsandbytes uses a non-linear 8-bit
# code here; linear int8 keeps the exercise short and the idea is the same.)
#
# Finally, `bits_per_weight(blocksize=64, double_quant=False, dq_blocksize=256)`: the storage cost per weight of
# 4-bit codes plus the per-block constants (fp32 absmax; or int8 absmax plus one fp32 constant per
# `dq_blocksize` blocks, with double quantization).
# %% answer id=double_quant
def double_quantize(absmax: torch.Tensor, blocksize: int = 256):
    ### BEGIN SOLUTION
    mean = absmax.mean().item()
    blocks = (absmax - mean).reshape(-1, blocksize)
    c = blocks.abs().max(dim=1).values
    q = torch.round(blocks / c.clamp_min(torch.finfo(torch.float32).tiny)[:, None] * 127).to(torch.int8)
    return q.reshape(-1), c, mean
    ### END SOLUTION


def double_dequantize(q: torch.Tensor, c: torch.Tensor, mean: float, blocksize: int = 256) -> torch.Tensor:
    ### BEGIN SOLUTION
    return (q.float().reshape(-1, blocksize) / 127 * c[:, None]).reshape(-1) + mean
    ### END SOLUTION


def bits_per_weight(blocksize: int = 64, double_quant: bool = False, dq_blocksize: int = 256) -> float:
    ### BEGIN SOLUTION
    if not double_quant:
        return 4 + 32 / blocksize
    return 4 + 8 / blocksize + 32 / (blocksize * dq_blocksize)
    ### END SOLUTION
# %% test id=test_double_quant points=3
absmax = torch.rand(1024) * 3 + 1
q, c, mean = double_quantize(absmax)
assert q.dtype == torch.int8 and q.shape == absmax.shape and c.shape == (4,)
back = double_dequantize(q, c, mean)
print(f"largest absmax error after double quantization: {(back - absmax).abs().max():.4f}")
### BEGIN HIDDEN TESTS
assert abs(mean - absmax.mean().item()) < 1e-6, "the mean is subtracted before quantizing"
centered = (absmax - absmax.mean()).reshape(-1, 256)
ref_c = centered.abs().max(1).values
ref_q = torch.round(centered / ref_c[:, None] * 127).to(torch.int8).reshape(-1)
assert torch.allclose(c, ref_c), "one scale per block of 256 absmax values"
assert (q.int() - ref_q.int()).abs().max() <= 1, "q = round(x / c * 127) per block"
assert (back - absmax).abs().max() <= ref_c.max() / 127, "dequantization error above half a step"
flat = torch.rand(512) + 1
flat[256:] = flat[:256].mean()
flat[:256] = flat[256]
f_back = double_dequantize(*double_quantize(flat))
assert torch.isfinite(f_back).all() and torch.allclose(f_back, flat), "a block of equal values (c = 0) comes back exactly"
### END HIDDEN TESTS
# %% test id=test_bits_per_weight points=2
print(bits_per_weight(), bits_per_weight(double_quant=True))
### BEGIN HIDDEN TESTS
assert abs(bits_per_weight() - 4.5) < 1e-12, "4 bits + a 32-bit absmax per 64 weights = 4.5"
assert abs(bits_per_weight(double_quant=True) - (4 + 8 / 64 + 32 / (64 * 256))) < 1e-12, "about 4.127 bits with double quantization"
assert abs(bits_per_weight(blocksize=128) - 4.25) < 1e-12
assert abs(bits_per_weight(blocksize=32, double_quant=True, dq_blocksize=512) - (4 + 8 / 32 + 32 / (32 * 512))) < 1e-12, (
    "dq_blocksize sets how many blocks share one fp32 constant")
### END HIDDEN TESTS
# %% markdown
# Why does NF4 have 8 positive levels but only 7 negative ones? (Graded by hand.)
# %% written id=asymmetry points=1
# Four bits give 16 codes, and NF4 wants an exact zero (padding and zero weights must stay exactly zero). A
# symmetric set around zero would need an odd number of levels; QLoRA builds 8 positive and 7 negative quantiles
# and shares the zero, which uses all 16 codes.
