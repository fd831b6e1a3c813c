"""The "auto" precision rule for the card at hand, decided by one function and tested by stubbing the
device query: bf16 only where the card computes it natively, fp16 with a gradient scaler on older cards
(Colab's T4), fp32 on a CPU; the QLoRA compute dtype follows the same rule."""

import pytest
import torch

from lora_course.models import hardware


@pytest.mark.parametrize("capability, precision, scaler", [
    ((7, 5), "fp16", True),   # T4: is_bf16_supported() says True (emulated), but it is slow there
    ((7, 0), "fp16", True),   # V100
    ((8, 0), "bf16", False),  # A100
    ((8, 9), "bf16", False),  # L4
    ((9, 0), "bf16", False),  # H100 / H200
    (None, "fp32", False),    # no CUDA
])
def test_auto_precision_follows_the_compute_capability(monkeypatch, capability, precision, scaler):
    monkeypatch.setattr(hardware, "cuda_capability", lambda device=None: capability)
    monkeypatch.setattr(hardware, "_device_name", lambda device=None: "Tesla T4" if capability == (7, 5) else "GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 answers
    choice = hardware.auto_precision()
    assert (choice.precision, choice.needs_grad_scaler) == (precision, scaler)
    assert choice.reason  # the log line says why
    if capability:
        assert f"{capability[0]}.{capability[1]}" in choice.reason
    assert hardware.qlora_compute_dtype() == {"fp16": torch.float16, "bf16": torch.bfloat16,
                                              "fp32": torch.float32}[precision]


def test_the_qlora_config_takes_the_rule(monkeypatch):
    pytest.importorskip("bitsandbytes")
    from lora_course.models.loading import bnb_config

    monkeypatch.setattr(hardware, "cuda_capability", lambda device=None: (7, 5))
    assert bnb_config("nf4").bnb_4bit_compute_dtype == torch.float16
    monkeypatch.setattr(hardware, "cuda_capability", lambda device=None: (9, 0))
    assert bnb_config("nf4").bnb_4bit_compute_dtype == torch.bfloat16


def test_a_cpu_device_is_fp32_whatever_cuda_says(monkeypatch):
    monkeypatch.setattr(hardware, "cuda_capability", lambda device=None: (9, 0))
    assert hardware.auto_precision("cpu").precision == "fp32"


def test_the_fp16_path_with_its_gradient_scaler_trains_on_cpu():
    """T4's path (fp16 autocast, scaled loss, unscale before clipping, skipped steps on overflow) run on the CPU."""
    from lora_course.data import Collator, load_bundled, tokenize_dataset
    from lora_course.lora import LoraSettings, inject_lora
    from lora_course.models import tiny_model
    from lora_course.train import TrainConfig, train

    losses = {}
    for precision in ("fp32", "fp16"):
        model, tokenizer = tiny_model(0)
        torch.manual_seed(0)
        inject_lora(model, LoraSettings(r=4, alpha=8))
        data, _ = tokenize_dataset(load_bundled("instructions", limit=16), tokenizer, 64)
        result = train(model, data, Collator(tokenizer.pad_token_id),
                       TrainConfig(micro_batch_size=4, max_steps=4, learning_rate=1e-2, precision=precision,
                                   progress=False, shuffle=False), log=None)
        assert result.precision == precision
        losses[precision] = [r["loss"] for r in result.history]
    assert all(torch.isfinite(torch.tensor(losses["fp16"])))
    # fp16 rounds differently; the run follows the fp32 one closely
    assert losses["fp16"] == pytest.approx(losses["fp32"], rel=2e-2)


def test_the_gpu_check_says_there_is_no_cuda_and_exits_0():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the real check")
    assert done.returncode == 0 and "no CUDA device" in done.stdout, done.stderr[-2000:]
    # and its measuring code runs (on the tiny model, on the CPU) before any GPU time is spent on it
    done = subprocess.run([sys.executable, str(script), "--dry-run", "--steps", "2"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("(b) ") == 4 and "tokens/s" in done.stdout and "estimate" in done.stdout


@pytest.mark.parametrize("capability, precision", [((7, 5), "fp16"), ((7, 0), "fp16"), ((8, 0), "bf16"),
                                                   ((8, 9), "bf16"), ((9, 0), "bf16")])
def test_the_rule_answers_for_a_card_that_is_not_here(monkeypatch, capability, precision):
    """precision_for_capability is the rule auto_precision applies to the card at hand: the same answer."""
    choice = hardware.precision_for_capability(capability, "some card")
    assert choice.precision == precision and "some card" in choice.reason
    monkeypatch.setattr(hardware, "cuda_capability", lambda device=None: capability)
    monkeypatch.setattr(hardware, "_device_name", lambda device=None: "some card")
    assert hardware.auto_precision() == choice


@pytest.mark.parametrize("capability", [(7,), (7, 5, 0), ("7", "5"), (-1, 0)])
def test_a_malformed_capability_is_a_settings_error(capability):
    from lora_course.errors import SettingsError

    with pytest.raises(SettingsError, match="compute capability"):
        hardware.precision_for_capability(capability)
