# %% answer id=quantize
# one absmax for the whole tensor instead of one per block
def quantize_nf4(w, blocksize=64):
    scale = w.abs().max()
    codes = ((w.float() / scale)[:, None] - NF4_LEVELS).abs().argmin(-1).to(torch.uint8)
    return codes, scale.repeat(w.numel() // blocksize)


def dequantize_nf4(codes, absmax, blocksize=64):
    return NF4_LEVELS[codes.long()] * absmax[0]
