"""Diagrams drawn by code for the book: the LoRA branch beside the frozen weight, what gradient checkpointing
keeps and recomputes, and an accumulation window. Each returns a matplotlib Figure built from the numbers it is
given (the chapter's own shapes and settings), so a diagram cannot drift from what the chapter computes."""

from __future__ import annotations

import io

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle


class Diagram(Figure):
    """A Figure that shows itself as a PNG in a notebook, without pyplot (so drawing one does not change the
    notebook's plotting state) and without an interactive backend (the static site keeps the image)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        return buffer.getvalue()


FROZEN, TRAINED, KEPT, DROPPED, RECOMPUTED = "#c9d6e3", "#f4a259", "#5b8e7d", "#eeeeee", "#bc4b51"


def _box(ax, x, y, w, h, color, label, fontsize=9):
    ax.add_patch(Rectangle((x, y), w, h, facecolor=color, edgecolor="black", linewidth=0.8))
    ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start, end):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, linewidth=0.8, color="black"))


def lora_branch(d_in: int, d_out: int, r: int, alpha: float) -> Figure:
    """x goes through the frozen W (d_out x d_in) on top and, below it, through A (r x d_in) then B (d_out x r);
    the branch is scaled by alpha / r and added to Wx. Box heights follow the matrices' shapes (A and B widened
    just enough to be seen); the title counts the values each side has."""
    fig = Diagram(figsize=(7.5, 3.6))
    ax = fig.add_subplot()
    unit = 1.4 / max(d_in, d_out)
    thin = max(r * unit, 0.1)
    top, bottom = 2.2, 0.2
    _box(ax, 1.2, top, d_in * unit * 1.6, d_out * unit, FROZEN, f"W (frozen)\n{d_out} x {d_in}")
    branch = max(thin, 0.35)  # tall enough for its label; the title gives the real sizes
    _box(ax, 1.2, bottom, 1.1, branch, TRAINED, f"A  {r} x {d_in}", fontsize=8)
    _box(ax, 3.0, bottom, 1.1, branch, TRAINED, f"B  {d_out} x {r}", fontsize=8)
    w_mid, b_mid = top + d_out * unit / 2, bottom + branch / 2
    ax.text(0.3, (w_mid + b_mid) / 2, "x", fontsize=13, ha="center", va="center")
    _arrow(ax, (0.45, (w_mid + b_mid) / 2), (1.2, w_mid))
    _arrow(ax, (0.45, (w_mid + b_mid) / 2), (1.2, b_mid))
    _arrow(ax, (2.3, b_mid), (3.0, b_mid))
    ax.text(4.75, b_mid + 0.25, f"x alpha/r = {alpha / r:g}", fontsize=8, ha="center")
    _arrow(ax, (4.1, b_mid), (5.5, (w_mid + b_mid) / 2 - 0.1))
    _arrow(ax, (1.2 + d_in * unit * 1.6, w_mid), (5.5, (w_mid + b_mid) / 2 + 0.1))
    ax.text(5.6, (w_mid + b_mid) / 2, "+", fontsize=14, va="center")
    ax.text(6.0, (w_mid + b_mid) / 2, "h = Wx + (alpha/r) B(Ax)", fontsize=9, va="center")
    ax.text(3.55, bottom - 0.15, "trained (B starts at zero: h = Wx at step 0)", fontsize=8, ha="center", va="top")
    ax.set_xlim(0, 9)
    ax.set_ylim(-0.5, top + d_out * unit + 0.2)
    ax.axis("off")
    trained, frozen = r * (d_in + d_out), d_in * d_out
    ax.set_title(f"trained: r(d_in + d_out) = {trained:,} values; frozen: d_in x d_out = {frozen:,} "
                 f"(the adapter is {trained / frozen:.1%} of it)", fontsize=9)
    return fig


def checkpointing(n_layers: int, backward_at: int | None = None) -> Figure:
    """What a forward keeps for backward, without and with checkpointing, and what backward recomputes: each
    layer is drawn as its input (one tensor) and its internals (attention, MLP). With checkpointing only the
    inputs are kept; when backward reaches layer ``backward_at``, that layer's internals are recomputed from its
    kept input, used, and freed before the next."""
    backward_at = n_layers - 2 if backward_at is None else backward_at
    fig = Diagram(figsize=(7.5, 2.9))
    ax = fig.add_subplot()
    parts = ["in", "attn", "mlp"]

    def layer(x, y, colors, name):
        for k, (part, color) in enumerate(zip(parts, colors)):
            _box(ax, x + k * 0.33, y, 0.3, 0.6, color, part, fontsize=6)
        ax.text(x + 0.48, y + 0.7, name, ha="center", fontsize=7)

    rows = [("no checkpointing:\nforward keeps", lambda i: [KEPT] * 3),
            ("checkpointing:\nforward keeps", lambda i: [KEPT, DROPPED, DROPPED]),
            (f"backward at L{backward_at}:\nrecomputes", lambda i: [KEPT, RECOMPUTED, RECOMPUTED] if i == backward_at
             else ([DROPPED] * 3 if i > backward_at else [KEPT, DROPPED, DROPPED]))]
    for row, (label, colors) in enumerate(rows):
        y = 2.2 - row * 1.05
        ax.text(-0.2, y + 0.3, label, ha="right", va="center", fontsize=8)
        for i in range(n_layers):
            layer(i * 1.15, y, colors(i), f"L{i}")
    ax.text(n_layers * 1.15 / 2 - 1, -0.45, "green: kept   grey: not in memory   red: recomputed for this layer's backward, "
            "then freed", ha="center", fontsize=7)
    ax.set_xlim(-2.2, n_layers * 1.15)
    ax.set_ylim(-0.7, 3.1)
    ax.axis("off")
    return fig


def accumulation_window(micro_batches: int, rows_each: list[int] | None = None) -> Figure:
    """One optimizer step made of ``micro_batches`` forward+backward passes whose gradients add up; the
    optimizer steps (and gradients are zeroed) once, at the end of the window."""
    rows_each = rows_each or [1] * micro_batches
    fig = Diagram(figsize=(7.5, 2.6))
    ax = fig.add_subplot()
    width = 1.6
    for i, rows in enumerate(rows_each):
        _box(ax, i * (width + 0.2), 0.8, width, 0.9, TRAINED, f"micro-batch {i + 1}\n{rows} row(s)\nforward, backward",
             fontsize=7)
        _arrow(ax, (i * (width + 0.2) + width / 2, 0.8), (i * (width + 0.2) + width / 2, 0.42))
    span = micro_batches * (width + 0.2) - 0.2
    ax.add_patch(Rectangle((0, 0.0), span, 0.4, facecolor=KEPT, edgecolor="black"))
    ax.text(span / 2, 0.2, "their gradients add up in .grad", ha="center", va="center", fontsize=8)
    _box(ax, span + 0.5, 0.0, 2.0, 1.7, FROZEN, "optimizer.step()\nzero_grad()", fontsize=8)
    _arrow(ax, (span, 0.2), (span + 0.5, 0.6))
    ax.set_xlim(-0.1, span + 2.6)
    ax.set_ylim(-0.2, 2.0)
    ax.axis("off")
    ax.set_title(f"one optimizer step = {micro_batches} micro-batches\n(each one's loss is divided by the whole "
                 "window's target tokens)", fontsize=9)
    return fig
