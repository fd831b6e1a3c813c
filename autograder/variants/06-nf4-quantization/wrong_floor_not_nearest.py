# %% answer id=quantize
# picks the level just below each value (searchsorted) instead of the nearest one
def quantize_nf4(w, blocksize=64):
    blocks = w.float().reshape(-1, blocksize)
    absmax = blocks.abs().max(1).values
    scaled = (blocks / absmax[:, None]).contiguous()
    codes = (torch.searchsorted(NF4_LEVELS, scaled, right=True) - 1).clamp(0, 15)
    return codes.reshape(-1).to(torch.uint8), absmax


def dequantize_nf4(codes, absmax, blocksize=64):
    return (NF4_LEVELS[codes.long()].reshape(-1, blocksize) * absmax[:, None]).reshape(-1)
