"""The book's widgets: each draws for several control values and shows them, each carries a static
fallback drawn by the same function, with or without ipywidgets, and the site picks that fallback."""

import base64
import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch
import yaml

from lora_course.errors import SettingsError
from lora_course.viz.widgets import WIDGET_VIEW, Choice, Explorable, IntRange, Toggle

ROOT = Path(__file__).resolve().parents[1]
TINY = "lora-course/tiny-random-llama"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def no_ipywidgets(monkeypatch):
    """ipywidgets not importable (a plain Python or a kernel without it)."""
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # `import ipywidgets` now raises ImportError


def png_size(bundle: dict) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(bundle["image/png"]))).size


# --- the shared mechanism ------------------------------------------------------------------------------

def _counting_explorable():
    calls = []

    def draw(fig, n=1, kind="a", flag=False):
        calls.append((n, kind, flag))
        fig.subplots().bar(range(n), range(n))

    controls = {"n": IntRange(1, 10, 3), "kind": Choice(["a", "b"]), "flag": Toggle(False)}
    settings = [{}, {"n": 5}, {"kind": "b", "flag": True}]
    return Explorable(draw, controls, settings, title="test"), calls


def test_static_figure_draws_every_setting_with_the_same_function():
    explorable, calls = _counting_explorable()
    fig = explorable.static_figure()
    assert calls == [(3, "a", False), (5, "a", False), (3, "b", True)]  # defaults filled in, in order
    assert len(fig.subfigs) == 4 and sum(s.get_visible() for s in fig.subfigs) == 3  # 2 x 2, one left empty
    assert [s._suptitle.get_text() for s in fig.subfigs[:3]] == ["n=3, kind=a, flag=False", "n=5, kind=a, flag=False",
                                                                 "n=3, kind=b, flag=True"]
    assert "3 fixed settings" in fig._suptitle.get_text()


def test_bundle_holds_the_widget_view_and_the_picture():
    explorable, calls = _counting_explorable()
    bundle = explorable._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "image/png", WIDGET_VIEW}
    assert bundle[WIDGET_VIEW]["model_id"] == explorable.widget.model_id
    assert png_size(bundle)[0] > 500
    # the live widget drew the defaults once; moving a control redraws with the new value
    assert calls[0] == (3, "a", False)
    explorable.widget.children[0].value = 7
    assert calls[-1] == (7, "a", False)
    assert not plt.get_fignums()  # neither side leaves a figure open for the inline backend to show twice


def test_without_ipywidgets_the_bundle_is_the_picture_alone(no_ipywidgets):
    explorable, calls = _counting_explorable()
    assert explorable.widget is None
    bundle = explorable._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "image/png"}
    assert len(calls) == 3


def test_settings_must_name_controls():
    with pytest.raises(ValueError, match="not controls"):
        Explorable(lambda fig, n=1: None, {"n": IntRange(1, 3, 1)}, [{"m": 2}])
    with pytest.raises(ValueError, match="at least one"):
        Explorable(lambda fig, n=1: None, {"n": IntRange(1, 3, 1)}, [])


def test_the_site_shows_the_picture_and_keeps_a_lone_widget_view():
    """The overrides of _config.yml, through myst-nb's own ranking: a bundle with a picture (a widget with its
    fallback) renders the picture on every HTML builder, a widget view alone (a progress bar) stays a widget."""
    from myst_nb.core.render import get_mime_priority

    overrides = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]["nb_mime_priority_overrides"]
    for builder in ("html", "dirhtml", "singlehtml"):
        priority = get_mime_priority(builder, [tuple(o) for o in overrides])
        with_fallback = next(m for m in priority if m in {"text/plain", "image/png", WIDGET_VIEW})
        widget_alone = next(m for m in priority if m in {"text/plain", WIDGET_VIEW})
        assert (with_fallback, widget_alone) == ("image/png", WIDGET_VIEW), builder


# --- the memory panel ----------------------------------------------------------------------------------

def test_memory_panel_draws_its_setups(monkeypatch):
    from lora_course.viz.memory import memory_panel

    panel = memory_panel(TINY)
    assert {s["method"] for s in panel.settings} == {"lora", "qlora"}
    fig = plt.figure()
    breakdowns = panel.draw(fig, method="qlora", r=8, sequence_length=128)
    assert list(breakdowns) == ["full", "qlora"] and breakdowns["qlora"].quant_constants > 0
    longer = panel.draw(plt.figure(), method="lora", sequence_length=1024)["lora"]
    shorter = panel.draw(plt.figure(), method="lora", sequence_length=128)["lora"]
    assert longer.activations > shorter.activations
    assert set(panel._repr_mimebundle_()) == {"text/plain", "image/png", WIDGET_VIEW}


def test_memory_panel_without_ipywidgets(no_ipywidgets):
    from lora_course.viz.memory import memory_panel

    bundle = memory_panel(TINY)._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "image/png"} and png_size(bundle)[1] > 400


# --- NF4 ------------------------------------------------------------------------------------------------

@pytest.fixture
def heavy_tailed():
    torch.manual_seed(0)
    return torch.distributions.StudentT(torch.tensor(3.0)).sample(torch.Size([8192]))


def test_nf4_error_grows_with_the_block_size_on_heavy_tailed_weights(heavy_tailed):
    from lora_course.quant import bits_per_parameter
    from lora_course.viz.nf4 import nf4_error

    sizes = [16, 64, 256, 1024]
    errors = [nf4_error(heavy_tailed, b)["mean_abs_error"] for b in sizes]
    assert errors == sorted(errors) and errors[-1] > 1.5 * errors[0]
    bits = [nf4_error(heavy_tailed, b)["bits_per_weight"] for b in sizes]
    assert bits == sorted(bits, reverse=True) and bits[1] == pytest.approx(bits_per_parameter())
    plain = nf4_error(heavy_tailed, 64, double_quant=False)
    assert plain["bits_per_weight"] == 4.5 and plain["stored_bits_per_weight"] == pytest.approx(4.5)
    with pytest.raises(SettingsError, match="power of two"):
        nf4_error(heavy_tailed, 48)


def test_nf4_draw_reflects_block_size_and_outliers(heavy_tailed):
    from lora_course.quant import nf4_levels
    from lora_course.viz.nf4 import draw_nf4, with_outliers

    small = draw_nf4(plt.figure(), heavy_tailed, blocksize=64)
    large = draw_nf4(plt.figure(), heavy_tailed, blocksize=1024)
    assert small["mean_abs_error"] < large["mean_abs_error"]
    assert 1 <= small["levels_used"] <= 16 and 1 <= large["levels_used"] <= 16
    # outliers stretch their block's absmax: the error grows
    spiked = draw_nf4(plt.figure(), heavy_tailed, blocksize=1024, outlier_scale=30)
    assert spiked["mean_abs_error"] > large["mean_abs_error"]
    spikes = with_outliers(heavy_tailed, 30)
    changed = spikes != heavy_tailed
    assert int(changed.sum()) == 8192 // 1000 and torch.allclose(spikes[changed], 30 * heavy_tailed[changed])
    # the left panel draws the 16 levels scaled by the block's absmax, and the chosen size is marked on the right
    fig = plt.figure()
    chosen = draw_nf4(fig, heavy_tailed, blocksize=256)
    block_ax, sweep_ax = fig.axes[:2]
    lines = [line.get_ydata()[0] for line in block_ax.lines]
    absmax = max(abs(v) for v in lines)
    assert torch.allclose(torch.tensor(sorted(lines)), nf4_levels() * absmax, atol=1e-5)
    marked = sweep_ax.lines[1]
    assert list(marked.get_xdata()) == [256] and list(marked.get_ydata()) == [chosen["mean_abs_error"]]


def test_nf4_panel_static_and_live(heavy_tailed):
    from lora_course.viz.nf4 import nf4_panel

    panel = nf4_panel(heavy_tailed)
    assert [s["blocksize"] for s in panel.settings] == [64, 1024, 64, 1024]
    bundle = panel._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "image/png", WIDGET_VIEW}


def test_nf4_panel_without_ipywidgets(heavy_tailed, no_ipywidgets):
    from lora_course.viz.nf4 import nf4_panel

    assert set(nf4_panel(heavy_tailed)._repr_mimebundle_()) == {"text/plain", "image/png"}


# --- the rank / alpha explorer -------------------------------------------------------------------------

@pytest.fixture
def sweep():
    rows, curves = [], {}
    for targets, runs in [("attention", [(4, 8), (8, 16), (16, 32), (32, 64), (4, 16), (32, 16)]),
                          ("all linear", [(8, 16), (16, 32)])]:
        for r, alpha in runs:
            loss = 3.0 - 0.2 * alpha / r - (0.1 if targets == "all linear" else 0)
            rows.append({"targets": targets, "r": r, "alpha": alpha, "trainable": 1000 * r, "held-out loss": loss})
            curves[(targets, r, alpha)] = [3.5, 3.2, loss + 0.05]
    return pd.DataFrame(rows), curves


def _outline(ax):
    from matplotlib.patches import Rectangle

    (rect,) = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_label() == "chosen"]
    return rect


def test_explorer_highlights_the_chosen_run(sweep):
    from lora_course.viz.sweep import draw_sweep

    table, curves = sweep
    for targets, r, alpha in [("attention", 32, 16), ("attention", 4, 8), ("all linear", 16, 32)]:
        fig = plt.figure()
        drawn = draw_sweep(fig, table, curves, targets, r, alpha)
        row = drawn["row"]
        assert (row["targets"], row["r"], row["alpha"]) == (targets, r, alpha)
        ranks, alphas = sorted(table["r"].unique()), sorted(table["alpha"].unique())
        rect = _outline(fig.axes[0])
        assert rect.get_xy() == (ranks.index(r) - 0.5, alphas.index(alpha) - 0.5)
        assert rect.get_linestyle() == "-"
        # the curve panel shows this run's curve, ending at its measured held-out loss
        red = [line for line in fig.axes[1].lines if line.get_color() == "tab:red"]
        assert list(red[0].get_ydata()) == curves[(targets, r, alpha)]
        assert f"{row['held-out loss']:.3f}" in fig.axes[1].get_title()
        assert f"{1000 * r:,} trainable" in fig.axes[1].get_title()


def test_explorer_marks_a_point_the_sweep_did_not_measure(sweep):
    from lora_course.viz.sweep import draw_sweep

    table, curves = sweep
    fig = plt.figure()
    drawn = draw_sweep(fig, table, curves, "attention", 16, 64)
    assert drawn["row"] is None and _outline(fig.axes[0]).get_linestyle() == "--"
    assert "not measured" in fig.axes[1].texts[0].get_text()


def test_explorer_settings_controls_and_bad_tables(sweep):
    from lora_course.viz.sweep import sweep_explorer

    table, curves = sweep
    explorer = sweep_explorer(table, curves)
    best = table.loc[table["held-out loss"].idxmin()]
    worst = table.loc[table["held-out loss"].idxmax()]
    assert explorer.settings[0] == {"targets": best.targets, "r": best.r, "alpha": best.alpha}
    assert explorer.settings[1] == {"targets": worst.targets, "r": worst.r, "alpha": worst.alpha}
    assert {s["targets"] for s in explorer.settings} == {"attention", "all linear"}
    assert explorer.controls["r"].options == [4, 8, 16, 32] and explorer.controls["alpha"].options == [8, 16, 32, 64]
    assert set(explorer._repr_mimebundle_()) == {"text/plain", "image/png", WIDGET_VIEW}
    with pytest.raises(SettingsError, match="alpha"):
        sweep_explorer(table.drop(columns="alpha"))
    with pytest.raises(SettingsError, match="one row"):
        sweep_explorer(pd.concat([table, table.head(1)]))


def test_explorer_without_ipywidgets(sweep, no_ipywidgets):
    from lora_course.viz.sweep import sweep_explorer

    table, curves = sweep
    explorer = sweep_explorer(table, curves)
    bundle = explorer._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "image/png"}
    width, height = png_size(bundle)
    assert height > width  # one panel per setting, stacked: three settings


def test_the_widget_never_captures_output(monkeypatch):
    """Capturing prints into an Output widget needs a front end to answer; executed with none (the book's
    build) a cell then waited for its timeout. The plot goes in as display data set from the kernel instead."""
    import ipywidgets

    def no_capture(self):
        raise AssertionError("the widget captured output")

    monkeypatch.setattr(ipywidgets.Output, "__enter__", no_capture)
    explorable, calls = _counting_explorable()
    out = explorable.widget.children[-1]
    assert isinstance(out, ipywidgets.Output) and out.outputs[0]["data"]["image/png"]
    explorable.widget.children[1].value = "b"
    assert calls[-1] == (3, "b", False) and len(out.outputs) == 1
