"""How many parameters does an adapter train, and how big is it on disk? Answered on the meta
device, from a config alone: seconds for an 8B model, no weights downloaded or allocated."""

from __future__ import annotations

import dataclasses
import json

from lora_course.errors import SettingsError
from lora_course.lora.inject import inject_lora
from lora_course.lora.settings import METHODS as ALL_METHODS
from lora_course.lora.settings import LoraSettings
from lora_course.models import count_parameters, load_config, meta_model
from lora_course.models.dtypes import DTYPE_BYTES

# the methods a count (or a fit) needs no layer count for: partial fine-tuning freezes a number of layers
WHOLE_MODEL_METHODS = tuple(m for m in ALL_METHODS if m != "partial")
METHODS = WHOLE_MODEL_METHODS
_SAFETENSORS_DTYPE = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}


@dataclasses.dataclass
class ParameterReport:
    model: str
    architecture: str
    method: str
    total: int
    trainable: int
    saved_bytes: int  # size of what training produces on disk: the adapter file, or the whole model
    saved_dtype: str
    target_modules: list[str]
    lora_layers: int

    @property
    def trainable_fraction(self) -> float:
        return self.trainable / self.total

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["trainable_percent"] = round(100 * self.trainable_fraction, 4)
        return d


def parameter_report(model_name: str, method: str = "lora", settings: LoraSettings | None = None,
                     saved_dtype: str = "float32") -> ParameterReport:
    if method not in METHODS:
        raise SettingsError(f"method must be one of {METHODS}, got {method!r}.")
    if saved_dtype not in DTYPE_BYTES:
        raise SettingsError(f"saved_dtype must be one of {tuple(DTYPE_BYTES)}, got {saved_dtype!r}.")
    config = load_config(model_name)
    model = meta_model(config)
    targets: list[str] = []
    if method == "full":
        counts = count_parameters(model)
        saved = _safetensors_size({n: tuple(p.shape) for n, p in model.named_parameters()}, saved_dtype)
    else:
        settings = settings or LoraSettings()
        targets = inject_lora(model, settings)
        counts = count_parameters(model)
        from lora_course.lora.io import PEFT_PREFIX

        shapes = {PEFT_PREFIX + n: tuple(p.shape) for n, p in model.named_parameters() if p.requires_grad}
        saved = _safetensors_size(shapes, saved_dtype)
    return ParameterReport(
        model=model_name,
        architecture=type(model).__name__,
        method=method,
        total=counts["total"],
        trainable=counts["trainable"],
        saved_bytes=saved,
        saved_dtype=saved_dtype,
        target_modules=sorted({t.split(".")[-1] for t in targets}),
        lora_layers=len(targets),
    )


def _safetensors_size(shapes: dict[str, tuple[int, ...]], dtype: str) -> int:
    """Bytes of a safetensors file holding these tensors: 8-byte length, JSON header, raw data.

    The header is built as safetensors builds it, so the figure matches the real file to within
    the few bytes that the order of entries can change in the offsets' digits.
    """
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name in sorted(shapes):
        n = 1
        for s in shapes[name]:
            n *= s
        size = n * DTYPE_BYTES[dtype]
        header[name] = {"dtype": _SAFETENSORS_DTYPE[dtype], "shape": list(shapes[name]), "data_offsets": [offset, offset + size]}
        offset += size
    header_len = len(json.dumps(header, separators=(",", ":")))
    header_len += (8 - header_len % 8) % 8
    return 8 + header_len + offset
