import pytest

from lora_course import SMOLLM2
from lora_course import profiles
from lora_course.models import TINY
from lora_course.profiles import ENV_VAR, current_profile, profile


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(profiles, "_cuda_available", lambda: False)


@pytest.fixture
def with_cuda(monkeypatch):
    monkeypatch.setattr(profiles, "_cuda_available", lambda: True)


def test_default_is_cpu_without_cuda(monkeypatch, no_cuda):
    monkeypatch.delenv(ENV_VAR, raising=False)
    p = current_profile()
    assert p.name == "cpu" and p.model == SMOLLM2 and p.device == "cpu" and not p.use_hub


def test_default_is_gpu_with_cuda(monkeypatch, with_cuda):
    monkeypatch.delenv(ENV_VAR, raising=False)
    p = current_profile()
    assert p.name == "gpu" and p.device == "cuda" and p.use_hub
    assert p.model == SMOLLM2 and p.large_model == "meta-llama/Llama-3.1-8B-Instruct"


@pytest.mark.parametrize("value", ["fast", " FAST ", "Fast"])
def test_env_var_selects_fast(monkeypatch, no_cuda, value):
    monkeypatch.setenv(ENV_VAR, value)
    p = current_profile()
    assert p.name == "fast" and p.model == TINY == p.large_model


def test_unknown_profile_names_the_choices(monkeypatch, no_cuda):
    monkeypatch.setenv(ENV_VAR, "turbo")
    with pytest.raises(ValueError, match=r"'turbo'.*fast, cpu, gpu"):
        current_profile()


def test_gpu_profile_without_cuda_is_an_error(monkeypatch, no_cuda):
    monkeypatch.setenv(ENV_VAR, "gpu")
    with pytest.raises(ValueError, match="no CUDA device"):
        current_profile()


def test_profiles_grow_from_fast_to_gpu():
    fast, cpu, gpu = (profile(n) for n in ("fast", "cpu", "gpu"))
    for field in ("train_steps", "seq_len", "eval_examples", "effective_batch_size"):
        assert getattr(fast, field) < getattr(cpu, field) < getattr(gpu, field), field


def test_pick_returns_the_profiles_value_and_gpu_falls_back_to_cpu():
    assert profile("fast").pick(fast=1, cpu=2, gpu=3) == 1
    assert profile("cpu").pick(fast=1, cpu=2, gpu=3) == 2
    assert profile("gpu").pick(fast=1, cpu=2, gpu=3) == 3
    assert profile("gpu").pick(fast=1, cpu=2) == 2
    assert profile("gpu").pick(fast=1, cpu=2, gpu=None) is None  # an explicit None is a value, not "missing"
    with pytest.raises(TypeError):
        profile("cpu").pick(1, 2, 3)  # keyword-only: a chapter must say which number is which


def test_str_names_model_and_sizes():
    text = str(profile("cpu"))
    assert "'cpu'" in text and SMOLLM2 in text and "30 steps" in text
