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
    assert p.model == SMOLLM2 and p.large_model == "Qwen/Qwen2.5-3B-Instruct"


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


def test_the_gpu_profile_needs_no_login_and_a_gated_choice_explains_it(monkeypatch, with_cuda):
    from lora_course.profiles import LARGE_MODEL_VAR, gated

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv(LARGE_MODEL_VAR, raising=False)
    default = current_profile()
    assert not gated(default.large_model) and "login" not in str(default)
    monkeypatch.setenv(LARGE_MODEL_VAR, "meta-llama/Llama-3.1-8B-Instruct")
    chosen = current_profile()
    assert chosen.large_model == "meta-llama/Llama-3.1-8B-Instruct"
    text = str(chosen)
    assert "gated" in text and "login()" in text and LARGE_MODEL_VAR in text


def test_colab_check_names_each_upgraded_package_and_asks_for_a_restart():
    import types

    from lora_course.colab import check_runtime, restart_message, upgraded_while_imported

    import transformers

    fake = {"transformers": types.SimpleNamespace(__version__="4.46.0"), "peft": None,
            "numpy": types.SimpleNamespace(__version__=__import__("numpy").__version__)}
    changed = upgraded_while_imported(fake)
    assert changed == {"transformers": ("4.46.0", transformers.__version__)}
    message = restart_message(changed)
    assert message.startswith("Restart the runtime") and f"transformers 4.46.0 -> {transformers.__version__}" in message
    assert upgraded_while_imported({"torch": __import__("torch")}) == {}  # a local build tag (+cpu) is no upgrade
    check_runtime()  # this process imported what is installed: nothing to say
