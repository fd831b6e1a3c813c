"""A tiny, randomly initialised model with SmolLM2's architecture and tokenizer, for fast tests.

Same family (LlamaForCausalLM: grouped-query attention, SwiGLU MLP, RMSNorm, tied embeddings)
and the same 49,152-token vocabulary and chat template, so everything that runs on it runs on
the real model; only the widths are small. It is written to the cache once per seed, so it can
also be loaded by path with plain ``from_pretrained`` (PEFT and bitsandbytes need that).
"""

from __future__ import annotations

import json
from pathlib import Path

TINY = "lora-course/tiny-random-llama"
TOKENIZER_ASSETS = Path(__file__).resolve().parent.parent / "assets" / "smollm2_tokenizer"


def tiny_tokenizer():
    """SmolLM2's tokenizer and chat template, shipped with the package (no network needed)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TOKENIZER_ASSETS)


def tiny_config(num_hidden_layers: int = 3, hidden_size: int = 64, **overrides):
    from transformers import LlamaConfig

    # The special token ids and rope settings are SmolLM2-135M-Instruct's.
    kwargs = dict(
        vocab_size=49152,
        hidden_size=hidden_size,
        # a multiple of 32, like real SwiGLU widths; bitsandbytes' CPU 4-bit inference kernel needs it
        intermediate_size=hidden_size * 3,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        attn_implementation="eager",
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def tiny_model(seed: int = 0, **config_overrides):
    """Return ``(model, tokenizer)``: a fresh tiny model, identical for the same seed."""
    import torch
    from transformers import AutoModelForCausalLM

    config = tiny_config(**config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.name_or_path = model.config._name_or_path = TINY
    model.eval()
    return model, tiny_tokenizer()


def tiny_qwen2_model(seed: int = 0, num_hidden_layers: int = 2, hidden_size: int = 64, **config_overrides):
    """Return ``(model, tokenizer)``: a tiny random model with Qwen2's architecture, identical for the same seed.

    Qwen2 (and Qwen2.5) put a bias on the q, k and v projections, which Llama and SmolLM2 do not: the
    model to show what LoRA's ``bias`` setting trains. Its widths and tokenizer are the tiny Llama's
    (SmolLM2's tokenizer and chat template), so it runs everywhere the tiny model runs. Built offline."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    llama = tiny_config(num_hidden_layers=num_hidden_layers, hidden_size=hidden_size)
    kwargs = {k: getattr(llama, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                             "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                                             "rms_norm_eps", "tie_word_embeddings", "bos_token_id", "eos_token_id",
                                             "pad_token_id")}
    kwargs.update(attn_implementation="eager", **config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(Qwen2Config(**kwargs), dtype=torch.float32)
        # transformers starts linear biases at zero; random ones make a trained bias visible against its start
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith(".bias"):
                    param.normal_(0.0, 0.02)
    model.eval()
    return model, tiny_tokenizer()


def ensure_tiny_on_disk(seed: int = 0) -> Path:
    """Save the tiny model (seed 0) under the cache so it loads by path like any checkpoint."""
    from lora_course.models.offline import cache_root

    import hashlib

    # the config's hash in the name: a cached copy from an older tiny config is never reused
    version = hashlib.sha256(tiny_config().to_json_string().encode()).hexdigest()[:8]
    target = cache_root() / "models" / f"tiny-random-llama-{version}-seed{seed}"
    if (target / "model.safetensors").is_file():
        return target
    import shutil
    import tempfile

    model, tokenizer = tiny_model(seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tiny-"))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "lora_course_source.json").write_text(json.dumps({"model": TINY, "seed": seed}) + "\n")
    try:
        tmp.rename(target)
    except OSError:  # another process finished first; its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return target
