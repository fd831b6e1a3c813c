# %% answer id=double_quant
# double quantization without subtracting the mean, and the fp32 constants forgotten in the bit count
def double_quantize(absmax, blocksize=256):
    blocks = absmax.reshape(-1, blocksize)
    c = blocks.abs().max(1).values
    return torch.round(blocks / c[:, None] * 127).to(torch.int8).reshape(-1), c, 0.0


def double_dequantize(q, c, mean, blocksize=256):
    return (q.float().reshape(-1, blocksize) / 127 * c[:, None]).reshape(-1) + mean


def bits_per_weight(blocksize=64, double_quant=False, dq_blocksize=256):
    return 4 + (8 if double_quant else 32) / blocksize
