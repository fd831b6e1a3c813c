# %% answer id=quantize
# nearest level through the midpoints between levels (how bitsandbytes' kernels decide)
MID = (NF4_LEVELS[1:] + NF4_LEVELS[:-1]) / 2


def quantize_nf4(w, blocksize=64):
    b = w.reshape(-1, blocksize).to(torch.float32)
    absmax = torch.amax(b.abs(), dim=1)
    codes = torch.bucketize(b / absmax.clamp_min(1e-30).unsqueeze(1), MID)  # a zero block: 0 / tiny = 0
    return codes.flatten().to(torch.uint8), absmax


def dequantize_nf4(codes, absmax, blocksize=64):
    return torch.repeat_interleave(absmax, blocksize) * NF4_LEVELS[codes.to(torch.int64)]
# %% answer id=double_quant
def double_quantize(absmax, blocksize=256):
    mean = float(absmax.mean())
    x = (absmax - mean).view(-1, blocksize)
    c = x.abs().amax(1)
    return (x * (127 / c.clamp_min(1e-30)[:, None])).round().to(torch.int8).flatten(), c, mean


def double_dequantize(q, c, mean, blocksize=256):
    return (q.view(-1, blocksize).float() * (c[:, None] / 127)).flatten() + mean


def bits_per_weight(blocksize=64, double_quant=False, dq_blocksize=256):
    scale_bits = 8 + 32 / dq_blocksize if double_quant else 32
    return 4 + scale_bits / blocksize
