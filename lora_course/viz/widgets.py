"""A widget that is honest on a static page: sliders where a kernel runs, small multiples where none does.

``Explorable(draw, controls, settings)`` takes one drawing function ``draw(fig, **values)``, which draws a
setting into a matplotlib ``Figure`` or ``SubFigure``, the controls that pick its values, and a few
representative settings. Displayed (the last line of a cell), it puts ONE output in the notebook: a
MIME bundle holding both

* the live ipywidgets view (``application/vnd.jupyter.widget-view+json``): sliders and a plot that the
  same ``draw`` redraws, and
* a PNG of the representative settings side by side, drawn by the same ``draw``, captioned with how many
  fixed settings it shows.

Each front end shows the richest type it can: Jupyter, JupyterLab, VS Code and Colab, which have a
widget manager, show the sliders; the book's static site shows the picture, because ``_config.yml``
ranks a widget view below an image for the HTML builders (``nb_mime_priority_overrides``; a widget view
alone, such as a progress bar, still renders as before). A viewer with no widget support at all
(GitHub, nbviewer) shows the picture too, instead of ``interactive(children=...)``. So nothing is shown
twice, nothing needs configuring by the reader, and no page shows sliders that cannot move. Without
ipywidgets the bundle holds only the picture.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of ``options``: a dropdown, or a slider over them (``slider=True``, for ordered numbers)."""

    options: Sequence[Any]
    value: Any = None
    slider: bool = False
    description: str | None = None

    @property
    def default(self) -> Any:
        return self.options[0] if self.value is None else self.value


@dataclasses.dataclass(frozen=True)
class IntRange:
    """An integer slider from ``min`` to ``max`` in steps of ``step``."""

    min: int
    max: int
    value: int
    step: int = 1
    description: str | None = None

    @property
    def default(self) -> int:
        return self.value


@dataclasses.dataclass(frozen=True)
class Toggle:
    """A check box."""

    value: bool = False
    description: str | None = None

    @property
    def default(self) -> bool:
        return self.value


Control = Choice | IntRange | Toggle


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets


def _to_widget(w, name: str, control: Control):
    description = control.description or name.replace("_", " ")
    style = {"description_width": "initial"}
    if isinstance(control, Toggle):
        return w.Checkbox(value=control.value, description=description, style=style)
    if isinstance(control, IntRange):
        return w.IntSlider(value=control.value, min=control.min, max=control.max, step=control.step,
                           description=description, continuous_update=False, style=style)
    if control.slider:
        return w.SelectionSlider(options=list(control.options), value=control.default, description=description,
                                 continuous_update=False, style=style)
    return w.Dropdown(options=list(control.options), value=control.default, description=description, style=style)


class Explorable:
    """``draw(fig, **values)`` behind controls, with a static figure of ``settings`` for pages without a kernel.

    ``settings``: the representative settings, each a dict of the values that differ from the controls'
    defaults; ``label(values)`` names a panel of the static figure (by default the values that vary).
    ``panel_size``: inches of one panel, which is also the size of the live plot."""

    def __init__(self, draw: Callable[..., Any], controls: Mapping[str, Control], settings: Sequence[Mapping],
                 *, panel_size: tuple[float, float] = (6.0, 3.5), ncols: int = 2, title: str | None = None,
                 label: Callable[[dict], str] | None = None, dpi: int = 90):
        if not settings:
            raise ValueError("an Explorable needs at least one representative setting for its static figure")
        unknown = {k for s in settings for k in s} - set(controls)
        if unknown:
            raise ValueError(f"settings name values that are not controls: {sorted(unknown)}")
        self.draw, self.controls, self.title = draw, dict(controls), title
        self.settings = [self.values(s) for s in settings]
        self.panel_size, self.ncols, self.dpi = panel_size, max(1, min(ncols, len(settings))), dpi
        self._label = label or self._default_label
        self._widget = None
        self._png: bytes | None = None

    def values(self, setting: Mapping | None = None) -> dict:
        """The controls' defaults, overridden by ``setting``."""
        return {name: control.default for name, control in self.controls.items()} | dict(setting or {})

    def _default_label(self, values: dict) -> str:
        varying = [k for k in self.controls if len({repr(s[k]) for s in self.settings}) > 1] or list(self.controls)
        return ", ".join(f"{k.replace('_', ' ')}={values[k]}" for k in varying)

    # --- the static side -------------------------------------------------------------------------------

    def static_figure(self):
        """The representative settings as small multiples, one subfigure each, drawn by ``draw``."""
        import matplotlib.pyplot as plt

        n = len(self.settings)
        nrows = math.ceil(n / self.ncols)
        width, height = self.panel_size
        fig = plt.figure(figsize=(width * self.ncols, (height + 0.35) * nrows + 0.5), layout="constrained")
        subfigs = fig.subfigures(nrows, self.ncols, squeeze=False).reshape(-1)
        for subfig, values in zip(subfigs, self.settings):
            self.draw(subfig, **values)
            subfig.suptitle(self._label(values), fontsize=10, fontweight="bold")
        for subfig in subfigs[n:]:
            subfig.set_visible(False)
        caption = f"the same plot for {n} fixed settings (in Colab or Jupyter, controls let you pick any)"
        fig.suptitle(f"{self.title}\n{caption}" if self.title else caption, fontsize=11)
        return fig

    def static_png(self) -> bytes:
        if self._png is None:
            import matplotlib.pyplot as plt

            fig = self.static_figure()
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=self.dpi)
            plt.close(fig)  # drawn for the bundle only: the inline backend must not show it a second time
            self._png = buffer.getvalue()
        return self._png

    # --- the live side ---------------------------------------------------------------------------------

    def render(self, **values) -> bytes:
        """One setting drawn in a figure of its own, as PNG bytes."""
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=self.panel_size, layout="constrained")
        try:
            self.draw(fig, **self.values(values))
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=self.dpi)
        finally:
            plt.close(fig)
        return buffer.getvalue()

    @property
    def widget(self):
        """The controls above an ``Output`` holding the plot, or None where ipywidgets is not installed.

        The plot is put into the ``Output`` as display data set from the kernel (``append_display_data``),
        never by capturing what a cell prints into it: capturing needs a front end to answer, and a notebook
        executed with no front end (the book's build, nbclient) then waits for its cell timeout."""
        if self._widget is None:
            w = _ipywidgets()
            if w is None:
                return None
            from IPython.display import Image

            controls = {name: _to_widget(w, name, control) for name, control in self.controls.items()}
            out = w.Output()

            def redraw(_change=None):
                image = Image(self.render(**{name: c.value for name, c in controls.items()}))
                out.outputs = ()
                out.append_display_data(image)

            for control in controls.values():
                control.observe(redraw, names="value")
            redraw()
            self._widget = w.VBox([*controls.values(), out])
        return self._widget

    def _repr_mimebundle_(self, include=None, exclude=None):
        n = len(self.settings)
        bundle = {"text/plain": f"<{self.title or 'widget'}: {n} fixed settings shown; "
                                "a live kernel with ipywidgets shows the controls>",
                  "image/png": base64.b64encode(self.static_png()).decode("ascii")}
        widget = self.widget
        if widget is not None:
            bundle[WIDGET_VIEW] = {"version_major": 2, "version_minor": 0, "model_id": widget.model_id}
        return bundle
