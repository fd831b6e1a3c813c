# %% answer id=double_quant
# double_dequantize ignores its blocksize argument and always uses 256 (the default): right for the default,
# wrong for any other block size
def double_quantize(absmax, blocksize=256):
    mean = absmax.mean().item()
    blocks = (absmax - mean).reshape(-1, blocksize)
    c = blocks.abs().max(dim=1).values
    q = torch.round(blocks / c.clamp_min(1e-30)[:, None] * 127).to(torch.int8)
    return q.reshape(-1), c, mean


def double_dequantize(q, c, mean, blocksize=256):
    return (q.float().reshape(-1, 256) / 127 * c.reshape(-1, 1)[: q.numel() // 256]).reshape(-1) + mean


def bits_per_weight(blocksize=64, double_quant=False, dq_blocksize=256):
    if not double_quant:
        return 4 + 32 / blocksize
    return 4 + 8 / blocksize + 32 / (blocksize * dq_blocksize)
