"""Exercise 6's hidden checks, run by the grader only: the inputs (from the grading seed) and the verdicts.

Besides random normal weights, the inputs hold the cases a correct NF4 must handle and typical wrong ones do
not: an all-zero block (absmax 0: dividing by it gives NaN codes), constant blocks (every weight is its block's
absmax, positive or negative), bfloat16 weights (absmax stays float32), another block size, tiny and huge
scales, an outlier; for double quantization a block of equal absmax values (centred, it is all zeros) and a
block size other than 256; for the bit count, arguments other than the defaults.
"""

import torch

ZERO_LEVEL = 7  # index of the exact 0.0 in NF4's 16 levels


def make_inputs(g: torch.Generator) -> dict:
    def randn(n, scale=1.0):
        return torch.randn(n, generator=g) * scale

    outlier = randn(64 * 8)
    outlier[int(torch.randint(0, 64, (1,), generator=g))] = 100.0
    zero_block = randn(64 * 6)
    zero_block[128:192] = 0.0
    constant = randn(64 * 4)
    constant[:64] = 0.37
    constant[128:192] = -2.5
    equal_absmax = torch.rand(512, generator=g) * 3 + 1
    equal_absmax[256:] = 1.75
    return {
        "test_roundtrip": {"weights": {
            "random normal weights": randn(64 * 32),
            "weights with one outlier": outlier,
            "weights with an all-zero block": zero_block,
            "weights with constant blocks": constant,
            "bfloat16 weights": randn(64 * 8).to(torch.bfloat16),
        }},
        "test_matches_bitsandbytes": {"cases": {
            f"blocksize {b}, scale {s}": {"w": randn(b * 24, s), "blocksize": b, "scale": s}
            for b, s in [(64, 1.0), (128, 0.02), (64, 30.0), (256, 1.0)]}},
        "test_double_quant": {"cases": {
            "1024 absmax values, blocks of 256": {"absmax": torch.rand(1024, generator=g) * 3 + 1, "blocksize": 256},
            "a block of equal absmax values": {"absmax": equal_absmax, "blocksize": 256},
            "blocks of 128": {"absmax": torch.rand(512, generator=g) * 0.5 + 0.01, "blocksize": 128},
        }},
        "test_bits_per_weight": {"calls": {
            "bits_per_weight()": {},
            "bits_per_weight(double_quant=True)": {"double_quant": True},
            "bits_per_weight(blocksize=128)": {"blocksize": 128},
            "bits_per_weight(blocksize=32, double_quant=True, dq_blocksize=512)":
                {"blocksize": 32, "double_quant": True, "dq_blocksize": 512},
        }},
    }


def _ok(result, case: str) -> None:
    assert not (isinstance(result, dict) and "__error__" in result), f"{case}: {result.get('__error__')}"


def test_roundtrip(inputs, got, want):
    for case, w in inputs["weights"].items():
        mine, ref = got[case], want[case]
        _ok(mine, case)
        codes, absmax, w_hat = mine["codes"], mine["absmax"], mine["w_hat"]
        assert isinstance(codes, torch.Tensor) and codes.dtype == torch.uint8 and codes.shape == w.shape, (
            f"{case}: codes must be a uint8 tensor shaped like the weights")
        assert isinstance(absmax, torch.Tensor) and absmax.dtype == torch.float32 and absmax.shape == (w.numel() // 64,), (
            f"{case}: absmax must be float32, one value per block of 64")
        assert int(codes.max()) <= 15, f"{case}: codes index the 16 levels"
        assert torch.allclose(absmax, ref["absmax"]), f"{case}: absmax must be the largest |weight| of each block of 64"
        blocks = w.float().reshape(-1, 64)
        zero = (blocks == 0).all(dim=1)
        if zero.any():
            assert (codes.reshape(-1, 64)[zero] == ZERO_LEVEL).all(), (
                f"{case}: an all-zero block must get the code of the level 0.0 (its absmax is 0: divide by it "
                "with care)")
        assert isinstance(w_hat, torch.Tensor) and torch.isfinite(w_hat).all(), f"{case}: dequantized weights must be finite"
        assert torch.allclose(w_hat.float(), ref["w_hat"].float(), rtol=1e-5, atol=1e-6 * float(absmax.max().clamp_min(1))), (
            f"{case}: the round trip differs from NF4's (nearest level of weight / block absmax)")


def test_matches_bitsandbytes(inputs, got, want):
    import bitsandbytes.functional as bnbf

    assert torch.allclose(got["levels"], bnbf.get_4bit_type("nf4", device="cpu")), "the levels table was changed"
    for case, spec in inputs["cases"].items():
        mine = got["dequantized"][case]
        _ok(mine, case)
        assert isinstance(mine, torch.Tensor) and mine.shape == spec["w"].shape, f"{case}: wrong shape"
        assert torch.allclose(mine.float(), want["dequantized"][case], rtol=1e-5, atol=1e-6 * spec["scale"]), (
            f"differs from bitsandbytes NF4 ({case})")


def test_double_quant(inputs, got, want):
    for case, spec in inputs["cases"].items():
        mine, ref = got[case], want[case]
        _ok(mine, case)
        absmax = spec["absmax"]
        assert isinstance(mine["q"], torch.Tensor) and mine["q"].dtype == torch.int8 and mine["q"].shape == absmax.shape, (
            f"{case}: q must be int8, one value per absmax")
        assert torch.as_tensor(mine["c"]).shape == (absmax.numel() // spec["blocksize"],), f"{case}: one scale per block"
        assert abs(float(mine["mean"]) - absmax.mean().item()) < 1e-5, f"{case}: the mean is subtracted before quantizing"
        assert (mine["q"].int() - ref["q"].int()).abs().max() <= 1, f"{case}: q = round(x / c * 127) per block"
        back = mine["back"]
        assert isinstance(back, torch.Tensor) and torch.isfinite(back).all(), (
            f"{case}: dequantized absmax must be finite (a block whose values are all equal has c = 0)")
        step = float(ref["c"].max()) / 127
        assert (back - absmax).abs().max() <= step + 1e-6, f"{case}: dequantization error above half a step"


def test_bits_per_weight(inputs, got, want):
    for call in inputs["calls"]:
        _ok(got[call], call)
        assert isinstance(got[call], (int, float)) and abs(got[call] - want[call]) < 1e-9, (
            f"{call} should be {want[call]:.6g}")
