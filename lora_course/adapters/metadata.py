"""What an adapter was trained from, written next to it, and checked when it is loaded.

An adapter is a difference from one particular set of base weights. Put onto another base (a
different checkpoint, another quantization, a model with the same shapes but other weights) it
loads without complaint and produces nonsense; so every adapter saved here carries the identity
of its base (name, a fingerprint of the weights, tokenizer and chat-template hashes), a hash of
its training data, the training configuration, library versions and any eval results, in
``lora_course.json`` beside PEFT's two files (which PEFT ignores).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from lora_course.errors import AdapterFormatError, BaseModelMismatchError
from lora_course.lora.io import PEFT_PREFIX, load_adapter, save_adapter

METADATA_NAME = "lora_course.json"
_SAMPLE = 4096  # values per tensor that enter the fingerprint


def _base_parameters(model):
    """(canonical name, tensor) for every base weight, named the same with or without LoRA or PEFT
    wrapping, so a model fingerprints alike before and after an adapter is injected."""
    for name, tensor in sorted(list(model.named_parameters()) + list(model.named_buffers())):
        if "lora_" in name or "rotary" in name:
            continue
        name = name.removeprefix(PEFT_PREFIX).replace(".base_layer.", ".")
        yield name, tensor


def weights_fingerprint(model) -> str:
    """A hash of every base tensor's name, shape, dtype and a strided sample of its values.

    Hashing every byte of an 8B model would take minutes; a strided sample of each tensor tells
    apart two checkpoints of one architecture (fine-tuning moves essentially every value) in well
    under a second. Quantized weights are hashed as stored, so an NF4 base and its 16-bit
    original count as different bases: an adapter trained on one is a correction for that one.
    """
    digest = hashlib.sha256()
    for name, tensor in _base_parameters(model):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // _SAMPLE)
        sample = flat[::step][:_SAMPLE].cpu().contiguous()
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(sample.view(torch.uint8).numpy().tobytes() if sample.numel() else b"")
    return digest.hexdigest()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenizer_hashes(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # canonical JSON of the vocabulary, merges and normalizers; padding and truncation are
        # runtime settings (generation switches padding sides), not part of the tokenizer's identity
        state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("padding", "truncation")}
        vocab = json.dumps(state, sort_keys=True)
    else:
        vocab = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return {"tokenizer": _sha(vocab), "chat_template": _sha(tokenizer.chat_template or "")}


def data_hash(records) -> str:
    return _sha(json.dumps(list(records), sort_keys=True, ensure_ascii=False))


def _model_name(model) -> str | None:
    """The name the model was loaded by: ``load_model`` keeps the hub id of a model it built from an
    offline copy, where the config only knows the cache folder it was read from."""
    return getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", None) or None


def base_dtype(model) -> str:
    """The dtype of the base's unquantized floating-point weights (what to load the base in again)."""
    for name, p in _base_parameters(model):
        if p.dtype.is_floating_point:
            return str(p.dtype).removeprefix("torch.")
    return "float32"


def base_identity(model, tokenizer=None, name: str | None = None) -> dict:
    identity = {"base_model": name or _model_name(model),
                "weights_fingerprint": weights_fingerprint(model)}
    if tokenizer is not None:
        identity.update(tokenizer_hashes(tokenizer))
    return identity


def library_versions() -> dict:
    import importlib.metadata as md

    versions = {}
    for package in ("lora-course", "torch", "transformers", "peft", "bitsandbytes"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return versions


def save_with_metadata(model, tokenizer, out_dir, base_model: str, training_config: dict | None = None,
                       data_records=None, eval_results: dict | None = None, quantization: str | None = None,
                       identity: dict | None = None) -> Path:
    """``save_adapter`` plus ``lora_course.json``. Pass ``identity`` when it was taken before training
    changed anything (it is the base's identity, and the base is frozen, so either way agrees)."""
    out = save_adapter(model, out_dir, base_model_name_or_path=base_model)
    metadata = {
        "base": identity or base_identity(model, tokenizer, base_model),
        "quantization": quantization,
        "dtype": base_dtype(model),
        "training_data_sha256": data_hash(data_records) if data_records is not None else None,
        "training_config": training_config,
        "versions": library_versions(),
        "eval_results": eval_results,
    }
    (out / METADATA_NAME).write_text(json.dumps(metadata, indent=2, default=str) + "\n")
    return out


def read_metadata(adapter_dir) -> dict | None:
    """The adapter's metadata, or None for an adapter saved elsewhere (plain PEFT has none)."""
    path = Path(adapter_dir) / METADATA_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise AdapterFormatError(f"{path} is not valid JSON ({e}). Fix: delete it to load the adapter "
                                 "without its metadata, or save the adapter again.") from e


def add_eval_results(adapter_dir, results: dict) -> None:
    path = Path(adapter_dir) / METADATA_NAME
    metadata = read_metadata(adapter_dir) or {}
    metadata["eval_results"] = {**(metadata.get("eval_results") or {}), **results}
    path.write_text(json.dumps(metadata, indent=2, default=str) + "\n")


def check_base(adapter_dir, model, tokenizer=None, allow_mismatch: bool = False) -> list[str]:
    """Compare the adapter's recorded base with ``model``; raise on a mismatch unless allowed.
    Returns the differences found (empty when they agree or the adapter has no metadata)."""
    metadata = read_metadata(adapter_dir)
    if not metadata or "base" not in metadata:
        return []
    recorded = metadata["base"]
    current = base_identity(model, tokenizer if "tokenizer" in recorded else None)
    differences = [key for key in ("weights_fingerprint", "tokenizer", "chat_template")
                   if key in recorded and key in current and recorded[key] != current[key]]
    if differences and not allow_mismatch:
        def show(identity):
            hashes = ", ".join(f"{k} {str(identity.get(k))[:12]}" for k in differences)
            return f"{identity.get('base_model')} ({hashes})"
        raise BaseModelMismatchError(
            f"Adapter {adapter_dir} was trained on another base: it records {show(recorded)}; this model has "
            f"{show(current)} (quantization at training: {metadata.get('quantization') or 'none'}). Fix: load the "
            "base it was trained on, or pass allow_mismatch=True (--allow-base-mismatch) to load it anyway.")
    return differences


def load_base_for_adapter(adapter_dir, base_model: str | None = None, log=print):
    """Load the base an adapter was trained on, as it was trained: the quantization and dtype its
    metadata records (a QLoRA adapter gets its NF4 base back). Returns ``(model, tokenizer, metadata)``.

    ``base_model`` defaults to the name the adapter records. Evaluation, merging and comparison all
    load bases through here, so none of them can put a QLoRA adapter onto a full-precision base."""
    from lora_course.lora.io import read_adapter_config
    from lora_course.models import load_model

    config = read_adapter_config(adapter_dir)  # a missing or corrupt folder fails here, with its fix
    metadata = read_metadata(adapter_dir) or {}
    name = base_model or (metadata.get("base") or {}).get("base_model") or config.get("base_model_name_or_path")
    if not name:
        raise AdapterFormatError(f"Adapter {adapter_dir} does not say which base model it belongs to. "
                                 "Fix: name the base model explicitly.")
    model, tokenizer = load_model(name, dtype=metadata.get("dtype"), quantization=metadata.get("quantization"),
                                  log=log)
    return model, tokenizer, metadata


def load_checked(model, adapter_dir, tokenizer=None, allow_mismatch: bool = False):
    """``load_adapter`` after checking that ``model`` is the base the adapter was trained on."""
    check_base(adapter_dir, model, tokenizer, allow_mismatch)
    return load_adapter(model, adapter_dir)
