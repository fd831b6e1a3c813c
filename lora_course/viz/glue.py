"""Put a number computed in a cell into the prose of a book page.

Inside the book build this is myst-nb's ``glue``: the page's Markdown shows the value with
``{glue:text}`name```. In Colab or plain Jupyter, where myst-nb is not installed, there is no prose to
paste into, so the value is only displayed (when asked) and the notebook still runs.
"""

from __future__ import annotations

from typing import Any


def glue(name: str, value: Any, display: bool = False) -> None:
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            from IPython.display import display as ipython_display

            ipython_display(value)
        return
    myst_glue(name, value, display=display)
