"""Partial fine-tuning: train the top of the network, freeze the bottom.

The baseline LoRA is usually measured against (the seed experiment's "freeze all but the last
layers"): the embeddings and the first N decoder layers keep their pretrained weights, the
layers above them and the output head train in full. It saves the gradients and optimizer
states of the frozen part, and the backward pass stops at the first trainable layer.
"""

from __future__ import annotations

from torch import nn

from lora_course.errors import SettingsError


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    base = getattr(model, "model", model)  # *ForCausalLM / *ForSequenceClassification wrap the decoder
    layers = getattr(base, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise SettingsError(f"{type(model).__name__} has no .model.layers list of decoder layers to freeze.")
    return layers


def freeze_first_layers(model: nn.Module, n: int) -> list[str]:
    """Freeze the input embeddings and decoder layers 0..n-1; return the names left trainable."""
    layers = decoder_layers(model)
    if not 0 <= n < len(layers):
        raise SettingsError(f"n must be between 0 and {len(layers) - 1} (the model has {len(layers)} layers), got {n}.")
    model.requires_grad_(True)
    model.get_input_embeddings().requires_grad_(False)
    for layer in layers[:n]:
        layer.requires_grad_(False)
    # A tied output head shares the (frozen) embedding matrix, so it stays frozen too: say so.
    return [name for name, p in model.named_parameters() if p.requires_grad]
