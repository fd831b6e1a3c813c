"""One base model, many adapters: load by name, switch, disable, unload — without reloading the
base. This is how one server answers for several fine-tunes: the base weights (the expensive
part) are shared, and an adapter costs a few MB. Built on PEFT, which already does it well."""

from __future__ import annotations

import contextlib

from lora_course.adapters.metadata import check_base
from lora_course.errors import SettingsError
from lora_course.lora.io import read_adapter_config


class AdapterSet:
    def __init__(self, base_model, tokenizer=None):
        self.base = base_model
        self.tokenizer = tokenizer
        self.model = None  # the PeftModel, created by the first load

    @property
    def names(self) -> list[str]:
        return [] if self.model is None else list(self.model.peft_config)

    @property
    def active(self) -> str | None:
        return None if self.model is None else self.model.active_adapter

    def load(self, name: str, adapter_dir, allow_mismatch: bool = False) -> None:
        from peft import PeftModel

        if name in self.names:
            raise SettingsError(f"An adapter named {name!r} is already loaded; unload it first or pick another name.")
        read_adapter_config(adapter_dir)  # a missing or corrupt folder fails here, with our message
        check_base(adapter_dir, self.model.get_base_model() if self.model else self.base, self.tokenizer,
                   allow_mismatch)
        if self.model is None:
            self.model = PeftModel.from_pretrained(self.base, str(adapter_dir), adapter_name=name)
        else:
            self.model.load_adapter(str(adapter_dir), adapter_name=name)
        self.model.eval()
        self.use(name)

    def use(self, name: str) -> None:
        self._require(name)
        self.model.set_adapter(name)

    def unload(self, name: str) -> None:
        self._require(name)
        if len(self.names) == 1:
            # PEFT keeps at least one adapter; with the last one gone, give the plain base back
            self.base = self.model.unload()
            self.model = None
            return
        if self.active == name:
            self.model.set_adapter(next(n for n in self.names if n != name))
        self.model.delete_adapter(name)

    @contextlib.contextmanager
    def disabled(self):
        """The base model's own answers inside the block."""
        if self.model is None:
            yield self.base
            return
        with self.model.disable_adapter():
            yield self.model

    def forward_model(self):
        return self.model if self.model is not None else self.base

    def generate_each(self, prompts, names=None, include_base: bool = True, **generate_kwargs) -> dict[str, list[str]]:
        """The same prompts answered by the base and each adapter in turn: one base in memory."""
        from lora_course.evaluate.generation import generate

        if self.tokenizer is None:
            raise SettingsError("AdapterSet needs the tokenizer to generate; pass it when creating the set.")
        replies = {}
        if include_base:
            with self.disabled() as model:
                replies["base"] = generate(model, self.tokenizer, prompts, **generate_kwargs)
        previous = self.active
        for name in names or self.names:
            self.use(name)
            replies[name] = generate(self.model, self.tokenizer, prompts, **generate_kwargs)
        if previous:
            self.use(previous)
        return replies

    def _require(self, name: str) -> None:
        if name not in self.names:
            raise KeyError(f"No adapter named {name!r}; loaded: {', '.join(self.names) or 'none'}.")
