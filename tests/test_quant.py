"""NF4 from scratch against bitsandbytes: the same levels, the same codes, the same dequantized weights."""

import pytest
import torch

from lora_course.quant import bits_per_parameter, dequantize_nf4, dynamic_map, nf4_levels, quantize_nf4

bnb = pytest.importorskip("bitsandbytes")
from lora_course.quant.bnb import bnb_dequantize_nf4, bnb_nbytes, bnb_nf4_levels, bnb_quantize_nf4  # noqa: E402


@pytest.fixture(scope="module")
def weight():
    torch.manual_seed(0)
    return torch.randn(384, 320) * 0.02  # 122,880 values: 1,920 blocks of 64, 7.5 nested blocks of 256


def test_levels_are_bitsandbytes_table():
    # Ours come from the normal quantile function in float64; theirs are the same numbers typed in
    # float32. They agree to float32 rounding (one ulp near 1 is 1.2e-7).
    torch.testing.assert_close(nf4_levels(), bnb_nf4_levels(), rtol=0, atol=2e-7)
    assert nf4_levels()[7] == 0 and nf4_levels()[0] == -1 and nf4_levels()[-1] == 1
    assert (nf4_levels()[:7] < 0).all() and (nf4_levels()[8:] > 0).all()  # 7 negative, 8 positive


def test_dynamic_map_is_bitsandbytes_map():
    from bitsandbytes.functional import create_dynamic_map

    torch.testing.assert_close(dynamic_map(), create_dynamic_map(), rtol=0, atol=1e-8)


def test_without_double_quant_codes_and_weights_equal_bitsandbytes(weight):
    ours = quantize_nf4(weight, double_quant=False)
    packed, state = bnb_quantize_nf4(weight, double_quant=False)
    assert torch.equal(ours.packed, packed.reshape(-1))  # identical 4-bit codes, identical packing
    assert torch.equal(ours.absmax, state.absmax)
    # Same code times same absmax; the only freedom is the float32 level table (<= 1.2e-7 apart),
    # so the error bound is 2e-7 x the largest absmax.
    torch.testing.assert_close(dequantize_nf4(ours), bnb_dequantize_nf4(packed, state), rtol=0,
                               atol=2e-7 * float(weight.abs().max()))


def test_with_double_quant_matches_bitsandbytes_up_to_midpoint_ties(weight):
    ours = quantize_nf4(weight)
    packed, state = bnb_quantize_nf4(weight)
    assert torch.equal(ours.packed, packed.reshape(-1))
    assert ours.offset == pytest.approx(float(state.offset), rel=1e-6)
    torch.testing.assert_close(ours.nested_absmax, state.state2.absmax, rtol=1e-6, atol=0)
    # The 8-bit absmax codes: bitsandbytes' CPU kernel computes the midpoints between map values in
    # another order, so a constant lying within float rounding of a midpoint can go to the other
    # neighbour. Such ties are rare and never more than one step apart.
    differ = ours.absmax != state.absmax
    assert differ.float().mean() < 0.005
    assert (ours.absmax.int() - state.absmax.int()).abs().max() <= 1
    mine, theirs = dequantize_nf4(ours).view(-1, 64), bnb_dequantize_nf4(packed, state).view(-1, 64)
    # Blocks with the same constant dequantize to the same values (float32 rounding of the sum offset + x).
    same = ~differ
    torch.testing.assert_close(mine[same], theirs[same], rtol=1e-5, atol=1e-8)
    # A tied block differs by one step of the dynamic map (about 10% of that absmax at worst).
    step = (mine[differ] - theirs[differ]).abs().amax(dim=1) / weight.view(-1, 64)[differ].abs().amax(dim=1)
    assert (step < 0.12).all()


def test_quantization_error_is_small_against_fp32(weight):
    restored = dequantize_nf4(quantize_nf4(weight))
    relative = (restored - weight).norm() / weight.norm()
    assert relative < 0.11  # NF4 on Gaussian weights: about 9-10% RMS error
    # Every value stays within half a level gap of its original (gap <= 0.33 of the block absmax)
    worst = ((restored - weight).abs().view(-1, 64) / weight.abs().view(-1, 64).amax(1, keepdim=True)).max()
    assert worst < 0.17


def test_bits_per_parameter_matches_what_is_stored(weight):
    assert bits_per_parameter() == pytest.approx(4.127, abs=5e-4)
    assert bits_per_parameter(double_quant=False) == 4.5
    q = quantize_nf4(weight)
    stored_bits = q.nbytes() * 8 / weight.numel()
    assert stored_bits == pytest.approx(bits_per_parameter(), abs=0.002)  # ragged last nested block
    assert bnb_nbytes(*bnb_quantize_nf4(weight)) == q.nbytes()


def test_odd_sizes_round_trip():
    x = torch.randn(3, 67)
    q = quantize_nf4(x)
    assert dequantize_nf4(q).shape == x.shape
    assert (dequantize_nf4(q) - x).norm() / x.norm() < 0.15


# resident memory once the model has been used: a forward pass reads every weight (a memory-mapped fp32
# checkpoint is only read in as it is touched, so right after loading it looks smaller than it is)
_RSS_AFTER_FORWARD = """
import resource, sys, torch
from lora_course.models import load_model
model, _ = load_model("HuggingFaceTB/SmolLM2-135M-Instruct", quantization=sys.argv[1] or None, device="cpu", log=None)
with torch.no_grad():
    model(torch.randint(0, 1000, (1, 64)))
print(int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize())
"""


@pytest.mark.slow
def test_an_nf4_model_holds_less_memory_than_the_fp32_one(smollm2):
    """bitsandbytes leaves the unquantized tensors as views into the checkpoint's memory map on a CPU; unless
    they are copied out, the mapping keeps the whole fp32 file resident and QLoRA costs more than LoRA."""
    import subprocess
    import sys

    def resident(quantization: str) -> int:
        done = subprocess.run([sys.executable, "-c", _RSS_AFTER_FORWARD, quantization], capture_output=True, text=True,
                              timeout=300, check=True)
        return int(done.stdout.strip().splitlines()[-1])

    fp32, nf4 = resident(""), resident("nf4")
    print(f"resident after a forward pass: fp32 {fp32 / 2**20:.0f} MiB, nf4 {nf4 / 2**20:.0f} MiB")
    assert nf4 < fp32
