"""Memory breakdowns drawn for the book: stacked bars side by side, and a slider panel."""

from __future__ import annotations

import dataclasses

from lora_course.memory import Setup, estimate
from lora_course.memory.fit import WHOLE_MODEL_METHODS
from lora_course.viz.widgets import Choice, Explorable, IntRange, Toggle

COLORS = {"weights": "#4c72b0", "quant_constants": "#8172b3", "gradients": "#dd8452", "optimizer_states": "#c44e52",
          "activations": "#55a868", "autocast_copies": "#64b5cd", "logits": "#937860", "overhead": "#bbbbbb"}
# What lives through the step, then what its largest moment adds (the logits, or the loss's gradients, or a
# layer's backward scratch: whichever is largest), then the CUDA allowance: the bar ends at the total
THROUGHOUT = ("weights", "quant_constants", "gradients", "optimizer_states", "activations", "autocast_copies")
PEAK_EXTRA = "logits and temporaries at the peak"


def plot_breakdowns(breakdowns: dict, ax=None, unit: float = 2**30, unit_name: str = "GiB", capacity=None):
    """One stacked bar per setup (``{label: Breakdown}``); a dashed line at ``capacity`` bytes."""
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 + 1.3 * len(breakdowns), 4))
    labels = list(breakdowns)
    bottoms = [0.0] * len(labels)
    for component in THROUGHOUT + (PEAK_EXTRA, "overhead"):
        if component == PEAK_EXTRA:
            values = [(b.total - b.overhead - sum(getattr(b, c) for c in THROUGHOUT)) / unit
                      for b in breakdowns.values()]
        else:
            values = [getattr(breakdowns[label], component) / unit for label in labels]
        if any(values):
            ax.bar(labels, values, bottom=bottoms, color=COLORS.get(component, "#dddddd"),
                   label=component.replace("_", " "))
            bottoms = [b + v for b, v in zip(bottoms, values)]
    if capacity:
        ax.axhline(capacity / unit, color="black", linestyle="--", linewidth=1)
        ax.text(len(labels) - 0.5, capacity / unit, f" {capacity / unit:.0f} {unit_name}", va="bottom", ha="right")
    ax.set_ylabel(unit_name)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig = ax.figure
    if isinstance(fig, Figure) and fig.get_layout_engine() is None:  # a subfigure's root lays itself out
        fig.tight_layout()
    return ax


def memory_panel(model_name: str, capacity: float | None = None) -> Explorable:
    """Controls for method, r, micro-batch, sequence length and checkpointing over the estimate, next to full
    fine-tuning. A static page shows four fixed setups instead (see ``lora_course.viz.widgets``)."""

    def draw(fig, method="lora", r=16, micro_batch_size=1, sequence_length=512, gradient_checkpointing=False):
        setup = Setup(method=method, r=r, micro_batch_size=micro_batch_size, sequence_length=sequence_length,
                      gradient_checkpointing=gradient_checkpointing)
        full = dataclasses.replace(setup, method="full")
        breakdowns = {"full": estimate(model_name, full), method: estimate(model_name, setup)}
        plot_breakdowns(breakdowns, ax=fig.subplots(), capacity=capacity)
        return breakdowns

    controls = {"method": Choice(list(WHOLE_MODEL_METHODS), "lora"), "r": IntRange(1, 128, 16),
                "micro_batch_size": IntRange(1, 32, 1), "sequence_length": IntRange(64, 4096, 512, step=64),
                "gradient_checkpointing": Toggle(False)}
    settings = [{"method": "lora"}, {"method": "qlora"}, {"method": "lora", "sequence_length": 2048},
                {"method": "lora", "sequence_length": 2048, "gradient_checkpointing": True}]

    def label(v: dict) -> str:
        return (f"{v['method']}, r={v['r']}, {v['micro_batch_size']} x {v['sequence_length']} tokens"
                + (", checkpointing" if v["gradient_checkpointing"] else ""))

    return Explorable(draw, controls, settings, panel_size=(5.0, 3.2), label=label,
                      title=f"memory of a training step, {model_name}")
