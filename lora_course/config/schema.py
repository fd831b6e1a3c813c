"""The YAML training configuration: axolotl-style keys, checked before any model is loaded.

Every problem found is reported at once, each with its cause and fix: an unknown key (with the
closest known key), a wrong type, an impossible value, a target module the model does not have
(checked on a weightless meta-device copy of the model), a data set without the fields it needs.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from lora_course.errors import ConfigError
from lora_course.lora.settings import ADAPTER_METHODS, ALL_LINEAR, ATTENTION

ADAPTERS = (None, *ADAPTER_METHODS)  # adapter: null is full (or, with freeze_layers, partial) fine-tuning
DATASET_TYPES = ("chat", "alpaca", "classification")  # classification: text + label fields


@dataclasses.dataclass
class DatasetSpec:
    path: str  # "bundled:instructions", or a hub id / local file for datasets.load_dataset
    type: str = "chat"  # chat: a "messages" field; alpaca: instruction / input / output
    split: str = "train"
    field_messages: str = "messages"


@dataclasses.dataclass
class TrainingConfig:
    base_model: str
    output_dir: str
    datasets: list[DatasetSpec]
    sequence_length: int = 512
    micro_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    num_epochs: float = 1.0
    max_steps: int | None = None
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    optimizer: str = "adamw"
    adapter: str | None = "lora"
    lora_r: int = 16
    lora_alpha: float = 32
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = dataclasses.field(default_factory=lambda: list(ATTENTION))
    lora_target_linear: bool = False
    use_rslora: bool = False
    gradient_checkpointing: bool = False
    bf16: bool | str = "auto"
    fp16: bool = False
    train_on_inputs: bool = False
    val_set_size: int = 0
    eval_steps: int | None = None
    save_steps: int | None = None
    early_stopping_patience: int | None = None
    save_total_limit: int | None = None  # keep the newest N checkpoints (None: all)
    loss_chunk_rows: int | None = None  # output head + loss this many target rows at a time (None: all at once)
    compile: bool = False  # torch.compile the decoder after LoRA is injected
    padding_free: bool = False  # each micro-batch as one unpadded row, position ids restarting per example
    seed: int = 0
    freeze_layers: int = 0  # full fine-tuning with the embeddings and the first N decoder layers frozen
    tokenizer: str | None = None  # default: the base model's own tokenizer

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def lora_targets(self):
        return ALL_LINEAR if self.lora_target_linear else self.lora_target_modules

    @property
    def precision(self) -> str:
        """The trainer's precision from axolotl's two switches (auto: decided by the device)."""
        return "fp16" if self.fp16 else {True: "bf16", False: "fp32", "auto": "auto"}[self.bf16]

    @property
    def method(self) -> str:
        """full, partial, lora or qlora (lora_course.lora.METHODS)."""
        return self.adapter or ("partial" if self.freeze_layers else "full")

    def train_config(self, **runtime):
        """The trainer's settings: every field the two share, by name, plus the ones derived here.
        ``runtime`` adds what is not a run setting (``progress``) or overrides one."""
        from lora_course.train import TrainConfig

        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig) if f.name in _FIELDS}
        return TrainConfig(**shared, precision=self.precision, **runtime)

    def lora_settings(self):
        """The adapter's settings, or None for full and partial fine-tuning."""
        from lora_course.lora import LoraSettings

        if not self.adapter:
            return None
        return LoraSettings(r=self.lora_r, alpha=self.lora_alpha, dropout=self.lora_dropout,
                            target_modules=self.lora_targets, use_rslora=self.use_rslora)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainingConfig)}
_REQUIRED = [name for name, f in _FIELDS.items()
             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
# Other spellings of a key that users bring from other tools (axolotl writes sequence_len, and
# batch_flattening for what TRL and this package call padding_free).
ALIASES = {"sequence_len": "sequence_length", "batch_flattening": "padding_free"}


def _accepted_types(annotation) -> tuple:
    """The isinstance() types a YAML value may have for a field annotated ``annotation``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return tuple(t for member in typing.get_args(annotation) for t in _accepted_types(member))
    origin = typing.get_origin(annotation) or annotation
    if origin is float:
        return (int, float)  # YAML reads 1e-4 as a float but 1 as an int; both are numbers
    return (origin,)


# Derived from the dataclass, so that a new field is type-checked without anyone remembering to.
_TYPES: dict[str, tuple] = {name: _accepted_types(hint)
                            for name, hint in typing.get_type_hints(TrainingConfig).items()}


def load_config(path: str | Path, overrides: dict | None = None) -> TrainingConfig:
    """Read and validate a YAML file (no model is loaded; target modules are checked separately)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), [f"the file does not exist. Fix: check the path (examples are in examples/)."])
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(str(path), [f"not valid YAML{where}: {getattr(e, 'problem', e)}. "
                                      "Fix: check indentation and quoting there."]) from None
    return parse_config(raw, str(path), overrides)


def parse_config(raw: Any, source: str = "config", overrides: dict | None = None) -> TrainingConfig:
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the file must be a mapping of keys to values (key: value), not "
                                   f"{type(raw).__name__}."])
    problems = []
    for alias, key in ALIASES.items():
        if alias in raw and key in raw:
            problems.append(f"both '{alias}' and '{key}' are set (the same setting). Fix: keep one.")
        elif alias in raw:
            raw = {(key if k == alias else k): v for k, v in raw.items()}
    raw = {**raw, **(overrides or {})}
    for key in raw:
        if key not in _FIELDS:
            close = difflib.get_close_matches(str(key), _FIELDS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else f" Known keys: {', '.join(sorted(_FIELDS))}."
            problems.append(f"unknown key '{key}'.{hint}")
    for key in _REQUIRED:
        if key not in raw:
            problems.append(f"'{key}' is required.")
    for key, value in raw.items():
        types = _TYPES.get(key)
        if types and not (isinstance(value, types) and not (isinstance(value, bool) and bool not in types)):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            problems.append(f"'{key}' must be {wanted}, got {value!r} ({type(value).__name__}).")
    if problems:
        raise ConfigError(source, problems)
    datasets = []
    for i, spec in enumerate(raw["datasets"]):
        if isinstance(spec, str):
            spec = {"path": spec}
        if not isinstance(spec, dict) or "path" not in spec:
            problems.append(f"datasets[{i}] needs a 'path' (e.g. bundled:instructions or a hub id).")
            continue
        unknown = set(spec) - {f.name for f in dataclasses.fields(DatasetSpec)}
        if unknown:
            problems.append(f"datasets[{i}] has unknown field(s) {sorted(unknown)}; known: path, type, split, field_messages.")
            continue
        datasets.append(DatasetSpec(**spec))
        if datasets[-1].type not in DATASET_TYPES:
            problems.append(f"datasets[{i}].type must be one of {DATASET_TYPES}, got {datasets[-1].type!r}.")
    if not raw["datasets"]:
        problems.append("'datasets' is empty. Fix: name at least one, e.g. - path: bundled:instructions")
    config = TrainingConfig(**{**raw, "datasets": datasets})
    problems += _value_problems(config)
    if problems:
        raise ConfigError(source, problems)
    return config


def _value_problems(c: TrainingConfig) -> list[str]:
    from lora_course.train import OPTIMIZERS, SCHEDULERS

    p = []
    if c.adapter not in ADAPTERS:
        p.append(f"adapter must be lora, qlora or null (full fine-tuning), got {c.adapter!r}.")
    if c.adapter and c.lora_r <= 0:
        p.append(f"lora_r must be a positive integer, got {c.lora_r}.")
    if c.adapter and c.lora_alpha <= 0:
        p.append(f"lora_alpha must be positive, got {c.lora_alpha}.")
    if not 0 <= c.lora_dropout < 1:
        p.append(f"lora_dropout must be in [0, 1), got {c.lora_dropout}.")
    for key in ("sequence_length", "micro_batch_size", "gradient_accumulation_steps"):
        if getattr(c, key) < 1:
            p.append(f"{key} must be at least 1, got {getattr(c, key)}.")
    if c.learning_rate <= 0:
        p.append(f"learning_rate must be positive, got {c.learning_rate}.")
    if c.optimizer not in OPTIMIZERS:
        p.append(f"optimizer {c.optimizer!r} is unknown; choose one of {', '.join(OPTIMIZERS)}.")
    if c.lr_scheduler not in SCHEDULERS:
        p.append(f"lr_scheduler {c.lr_scheduler!r} is unknown; choose one of {', '.join(SCHEDULERS)}.")
    if c.bf16 not in (True, False, "auto"):
        p.append(f"bf16 must be true, false or auto, got {c.bf16!r}.")
    if c.fp16 and c.bf16 is True:
        p.append("bf16 and fp16 are both true. Fix: choose one.")
    if c.early_stopping_patience and not c.eval_steps:
        p.append("early_stopping_patience needs eval_steps (and val_set_size > 0) to have evaluations to compare.")
    if c.freeze_layers < 0:
        p.append(f"freeze_layers must be 0 or more, got {c.freeze_layers}.")
    if c.freeze_layers and c.adapter:
        p.append("freeze_layers is partial fine-tuning, which trains base weights; it does not combine with an "
                 "adapter. Fix: set adapter: null, or remove freeze_layers.")
    if c.loss_chunk_rows is not None and c.loss_chunk_rows < 1:
        p.append(f"loss_chunk_rows must be at least 1 (or null for the whole batch at once), got {c.loss_chunk_rows}.")
    if c.save_total_limit is not None and c.save_total_limit < 1:
        p.append(f"save_total_limit must be at least 1 (or null to keep every checkpoint), got {c.save_total_limit}.")
    if c.eval_steps and c.val_set_size <= 0:
        p.append("eval_steps is set but val_set_size is 0, so there is nothing to evaluate. Fix: set val_set_size.")
    return p


def check_against_model(config: TrainingConfig) -> list[str]:
    """Problems only the model's architecture reveals (read from its config on the meta device)."""
    from lora_course.lora import LoraSettings, find_targets
    from lora_course.models import load_config as load_model_config
    from lora_course.models import meta_model

    model = meta_model(load_model_config(config.base_model))
    layers = model.config.num_hidden_layers
    if config.freeze_layers >= layers:
        return [f"freeze_layers={config.freeze_layers}, but {config.base_model} has {layers} layers, so nothing "
                f"would train. Fix: at most {layers - 1}."]
    if not config.adapter:
        return []
    try:
        find_targets(model, LoraSettings(r=config.lora_r, alpha=config.lora_alpha, target_modules=config.lora_targets))
    except ValueError as e:
        return [f"lora_target_modules: {e}"]
    return []


def check_config(config: TrainingConfig, source: str = "config") -> None:
    """Raise ``ConfigError`` with what ``check_against_model`` finds (nothing loads but the model's config)."""
    problems = check_against_model(config)
    if problems:
        raise ConfigError(source, problems)


def pitfall_warnings(config: TrainingConfig, n_examples: int | None = None, p95_length: int | None = None,
                     tokenizer=None) -> list[str]:
    """The course's checklist of choices that run but usually disappoint."""
    w = []
    if config.adapter and config.lora_r >= 64 and n_examples is not None and n_examples < 10_000:
        w.append(f"lora_r={config.lora_r} on {n_examples} examples: a rank this high mostly adds capacity to memorise. "
                 "r=8 to 32 is the usual start.")
    if config.adapter and config.learning_rate < 5e-5:
        w.append(f"learning_rate={config.learning_rate:g} is low for LoRA (adapters start at zero); 1e-4 to 1e-3 is typical.")
    if p95_length is not None and config.sequence_length > 2 * p95_length:
        w.append(f"sequence_length={config.sequence_length} is over twice the p95 length ({p95_length}); "
                 "it costs memory for padding. Fix: lower it or pack.")
    if tokenizer is not None and tokenizer.pad_token_id is not None and tokenizer.pad_token_id == tokenizer.eos_token_id:
        w.append("pad token == eos token: fine here, because padding is masked by position (attention mask), "
                 "not by token id, so each response keeps its EOS; collators that mask by id would drop it.")
    return w


def tokenizer_mismatch(config: TrainingConfig, tokenizer, model) -> list[str]:
    """A tokenizer from another model family runs silently and trains on garbage ids."""
    if not config.tokenizer or config.tokenizer == config.base_model:
        return []
    from lora_course.models import load_tokenizer

    w = []
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        w.append(f"tokenizer {config.tokenizer} has {len(tokenizer):,} tokens but {config.base_model} has only "
                 f"{rows:,} embedding rows: ids past the end will crash or be wrong. Fix: use the base model's tokenizer.")
    try:
        own = load_tokenizer(config.base_model)
    except Exception:  # the base ships no tokenizer we can reach: only the size check applies
        return w
    if own.get_vocab() != tokenizer.get_vocab():
        w.append(f"tokenizer {config.tokenizer} is not {config.base_model}'s own (their vocabularies differ): the model "
                 "will see token ids it was never trained on. Fix: remove 'tokenizer' from the config.")
    elif own.chat_template != tokenizer.chat_template:
        w.append(f"tokenizer {config.tokenizer} has another chat template than {config.base_model}: train and "
                 "serve with the same template, or the model sees a format it was not tuned on.")
    return w
