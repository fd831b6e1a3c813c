"""A measured rank / alpha sweep, explored: where one run sits in the grid, and its loss curve.

The explorer only reads what a sweep measured (a table with one row per run, and optionally each run's
training-loss curve); it never trains. A chapter runs the sweep once, then hands both over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lora_course.errors import SettingsError
from lora_course.viz.widgets import Choice, Explorable

REQUIRED = ("targets", "r", "alpha", "trainable")


def _check(sweep, metric: str) -> None:
    missing = [c for c in REQUIRED + (metric,) if c not in sweep.columns]
    if missing:
        raise SettingsError(f"the sweep table lacks the columns {missing}. Fix: give one row per run with "
                            f"{', '.join(REQUIRED)} and {metric!r}.")
    if sweep.duplicated(["targets", "r", "alpha"]).any():
        raise SettingsError("the sweep table has two rows for the same targets, r and alpha. Fix: keep one row "
                            "per run (average repeats first).")


def find_run(sweep, targets, r, alpha):
    """The sweep's row for (targets, r, alpha), or None where that point was not measured."""
    rows = sweep[(sweep["targets"] == targets) & (sweep["r"] == r) & (sweep["alpha"] == alpha)]
    return None if rows.empty else rows.iloc[0]


def draw_sweep(fig, sweep, curves: Mapping | None = None, targets=None, r=None, alpha=None,
               metric: str = "held-out loss") -> dict:
    """Left: ``metric`` over the r x alpha grid of one target set, the chosen cell outlined (dashed where that
    point was not measured). Right: the chosen run's training loss per step over the other runs' (grey),
    with its final ``metric``. ``curves``: ``{(targets, r, alpha): [loss per step, ...]}``.
    Returns ``{"row": the chosen row or None, "cell": (alpha index, r index)}``."""
    import matplotlib
    import numpy as np
    from matplotlib import patches

    _check(sweep, metric)
    curves = curves or {}
    targets = sweep["targets"].iloc[0] if targets is None else targets
    ranks, alphas = sorted(sweep["r"].unique()), sorted(sweep["alpha"].unique())
    r = ranks[0] if r is None else r
    alpha = alphas[0] if alpha is None else alpha
    group = sweep[sweep["targets"] == targets]
    grid = np.full((len(alphas), len(ranks)), np.nan)
    for _, row in group.iterrows():
        grid[alphas.index(row["alpha"]), ranks.index(row["r"])] = row[metric]
    ax_grid, ax_curve = fig.subplots(1, 2, width_ratios=[1, 1.2])

    finite = sweep[metric].dropna()
    cmap = matplotlib.colormaps["viridis_r"].with_extremes(bad="0.92")  # "not run" cells in light grey
    image = ax_grid.imshow(np.ma.masked_invalid(grid), cmap=cmap, origin="lower", aspect="auto",
                           vmin=finite.min(), vmax=finite.max())
    for (i, j), value in np.ndenumerate(grid):
        if np.isnan(value):
            ax_grid.text(j, i, "not run", ha="center", va="center", fontsize=7, color="0.4")
        else:  # dark text on the light (low-loss) end of the colour map, light text on the dark end
            ax_grid.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=7,
                         color="black" if image.norm(value) < 0.5 else "white")
    ax_grid.set_xticks(range(len(ranks)), [str(v) for v in ranks])
    ax_grid.set_yticks(range(len(alphas)), [str(v) for v in alphas])
    ax_grid.set_xlabel("r")
    ax_grid.set_ylabel("alpha")
    cell = (alphas.index(alpha), ranks.index(r)) if alpha in alphas and r in ranks else None
    chosen = find_run(sweep, targets, r, alpha)
    if cell is not None:
        ax_grid.add_patch(patches.Rectangle((cell[1] - 0.5, cell[0] - 0.5), 1, 1, fill=False, edgecolor="red",
                                            linewidth=2.5, linestyle="-" if chosen is not None else "--",
                                            label="chosen"))
    ax_grid.set_title(f"{metric}, {targets}", fontsize=9)
    fig.colorbar(image, ax=ax_grid, shrink=0.8)

    for key, losses in curves.items():
        if key != (targets, r, alpha):
            ax_curve.plot(range(1, len(losses) + 1), losses, color="0.8", linewidth=1)
    if chosen is None:
        ax_curve.text(0.5, 0.5, f"{targets}, r={r}, alpha={alpha}:\nnot measured in this sweep",
                      transform=ax_curve.transAxes, ha="center", va="center")
        ax_curve.set_title("no run at this point", fontsize=9)
    else:
        losses = curves.get((targets, r, alpha))
        if losses:
            ax_curve.plot(range(1, len(losses) + 1), losses, "o-", color="tab:red", markersize=3,
                          label="training loss")
            ax_curve.plot([len(losses)], [chosen[metric]], "*", color="black", markersize=11, label=metric)
            ax_curve.legend(fontsize=7)
        ax_curve.set_title(f"r={r}, alpha={alpha} (alpha/r={alpha / r:g}): {metric} {chosen[metric]:.3f}\n"
                           f"{int(chosen['trainable']):,} trainable parameters", fontsize=9)
    ax_curve.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax_curve.set_xlabel("step")
    ax_curve.set_ylabel("loss")
    return {"row": chosen, "cell": cell}


def sweep_explorer(sweep, curves: Mapping | None = None, metric: str = "held-out loss",
                   settings: Sequence[Mapping] | None = None) -> Explorable:
    """Dropdown for the target set and sliders for r and alpha over a measured sweep (``draw_sweep``).
    The static page shows ``settings``: by default the best and the worst run, and the best run of every
    other target set."""
    _check(sweep, metric)
    measured = sweep.dropna(subset=[metric])
    if measured.empty:
        raise SettingsError(f"no run of the sweep has a {metric!r}. Fix: give the runs a held-out set.")

    def point(row) -> dict:
        return {"targets": row["targets"], "r": int(row["r"]), "alpha": int(row["alpha"])}

    if settings is None:
        picks = [measured.loc[measured[metric].idxmin()], measured.loc[measured[metric].idxmax()]]
        picks += [g.loc[g[metric].idxmin()] for _, g in measured.groupby("targets", sort=False)]
        settings = []
        for row in picks:
            if point(row) not in settings:
                settings.append(point(row))
        settings = settings[:4]

    def draw(fig, targets, r, alpha):
        return draw_sweep(fig, sweep, curves, targets, r, alpha, metric)

    best = measured.loc[measured[metric].idxmin()]
    controls = {"targets": Choice(list(dict.fromkeys(sweep["targets"])), best["targets"]),
                "r": Choice(sorted(sweep["r"].unique().tolist()), int(best["r"]), slider=True),
                "alpha": Choice(sorted(sweep["alpha"].unique().tolist()), int(best["alpha"]), slider=True)}
    return Explorable(draw, controls, settings, panel_size=(8.0, 3.3), ncols=1,
                      label=lambda v: f"{v['targets']}, r={v['r']}, alpha={v['alpha']}",
                      title="the rank / alpha sweep")
