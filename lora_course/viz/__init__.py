"""Plots, widgets and book helpers (the last layer: nothing in the package depends on it)."""

from lora_course.viz.glue import glue

__all__ = ["glue"]
