"""The report's figures: matplotlib (Agg) drawn to PNG and returned as base64 strings.

Every function takes plain frames for one indicator and returns the PNG's base64 text,
so the HTML needs no files beside it. Figures are kept small (dpi 80) so a report with
a dozen figures renders in a few seconds.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

_DPI = 80
_STATUS_COLOURS = {"pass": "#2a9d8f", "review": "#e9c46a", "fail": "#e76f51"}


def to_png(fig: Any) -> str:
    """Render a figure to base64 PNG text and close it (figures are not reused)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _sizes(n: pd.Series) -> np.ndarray:
    # Area grows with n, but with a floor so one-observation cells stay visible.
    return 8 + 60 * np.sqrt(n.to_numpy(dtype=float) / max(float(n.max()), 1.0))


def _identity(ax: Any, x: np.ndarray, y: np.ndarray) -> None:
    lo, hi = float(np.nanmin([x.min(), y.min()])), float(np.nanmax([x.max(), y.max()]))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--", label="no pooling (y = x)")


def shrinkage(cells: pd.DataFrame, predictive: pd.DataFrame, levels: pd.DataFrame,
              regions: pd.DataFrame) -> str:
    """Raw means against posterior means, sized by n: per cell and per model.

    Args:
        cells: ``residual_cells`` rows (model_id, region_id, n, mean).
        predictive: ``posterior_predictive`` rows of kind ``model_region``.
        levels: ``posterior_models`` rows of parameter ``level`` (with pooling).
        regions: ``posterior_regions`` rows of parameter ``mu``.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    merged = cells.merge(predictive[["model_id", "region_id", "mean"]], on=["model_id", "region_id"],
                         suffixes=("_raw", "_post"))
    if not merged.empty:
        x, y = merged["mean_raw"].to_numpy(), merged["mean_post"].to_numpy()
        left.scatter(x, y, s=_sizes(merged["n"]), alpha=0.5, color="#264653", edgecolor="none")
        _identity(left, x, y)
        left.legend(loc="upper left", fontsize=8)
    left.set(title="Cells (model x region)", xlabel="raw cell mean of log residual",
             ylabel="posterior predictive mean")
    region_mu = regions.set_index("region_id")["mean"]
    own = cells.assign(own=cells["mean"] - cells["region_id"].map(region_mu).fillna(0.0))
    own = own.assign(w=own["own"] * own["n"]).groupby("model_id", as_index=False)[["w", "n"]].sum()
    own["raw"] = own["w"] / own["n"]
    per_model = own.merge(levels[["model_id", "mean", "pooling"]], on="model_id")
    if not per_model.empty:
        x, y = per_model["raw"].to_numpy(), per_model["mean"].to_numpy()
        pts = right.scatter(x, y, s=_sizes(per_model["n"]), c=per_model["pooling"], cmap="viridis",
                            vmin=0, vmax=1, alpha=0.8, edgecolor="none")
        _identity(right, x, y)
        fig.colorbar(pts, ax=right, label="pooling (share from family)")
    right.set(title="Models (region effects removed)", xlabel="raw model mean", ylabel="posterior model bias")
    return to_png(fig)


def forest(levels: pd.DataFrame, families: pd.DataFrame) -> str:
    """Model biases (posterior ``level``, 90% interval) grouped by family, with the family mean."""
    fam_mu = families[families["parameter"] == "mu"].set_index("family_id")
    order = levels.sort_values(["family_id", "mean"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.17 * len(order)), layout="constrained")
    ypos, labels, y = [], [], 0.0
    for family, group in order.groupby("family_id", sort=True):
        start = y
        for _, row in group.iterrows():
            ypos.append(y)
            labels.append(str(row["model_id"]))
            y += 1
        if family in fam_mu.index:
            f = fam_mu.loc[family]
            ax.fill_between([f["q05"], f["q95"]], start - 0.5, y - 0.5, color="#e9c46a", alpha=0.25, lw=0)
            ax.plot([f["mean"]] * 2, [start - 0.5, y - 0.5], color="#e9c46a", lw=1.5)
        ax.text(1.01, (start + y - 1) / 2, str(family), transform=ax.get_yaxis_transform(), va="center", fontsize=8)
        y += 0.6
    ax.errorbar(order["mean"], ypos, xerr=[order["mean"] - order["q05"], order["q95"] - order["mean"]],
                fmt="o", ms=3, color="#264653", elinewidth=1, capsize=0)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(ypos, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="model bias (log residual), posterior mean and 90% interval",
           title="Model biases by family (band: family mean, 90% interval)")
    return to_png(fig)


def region_effects(regions: pd.DataFrame, classes: pd.DataFrame) -> str:
    """Region effects (90% intervals) grouped by region class, with each class's mean."""
    cls_mu = classes[classes["parameter"] == "mu"].set_index("region_class_id")
    order = regions.sort_values(["region_class_id", "mean"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.25 * len(order)), layout="constrained")
    colours = plt.get_cmap("tab10")
    for i, (cls, group) in enumerate(order.groupby("region_class_id", sort=True)):
        ys = group.index.to_numpy()
        ax.errorbar(group["mean"], ys, xerr=[group["mean"] - group["q05"], group["q95"] - group["mean"]],
                    fmt="o", ms=4, color=colours(i % 10), label=str(cls), capsize=0)
        if cls in cls_mu.index:
            ax.plot([cls_mu.loc[cls, "mean"]] * 2, [ys.min() - 0.4, ys.max() + 0.4],
                    color=colours(i % 10), lw=2, alpha=0.5)
    ax.set_yticks(order.index, order["region_id"], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="grey", lw=0.8)
    ax.legend(fontsize=7, loc="best")
    ax.set(xlabel="region effect (log residual); vertical bar: class mean", title="Region effects by class")
    return to_png(fig)


def new_model_priors(predictive: pd.DataFrame, region_id: str) -> str:
    """Per family: the new-model predictive interval at one region against the family's fitted models."""
    at = predictive[predictive["region_id"] == region_id]
    new = at[at["kind"] == "new_model_region"].sort_values("family_id").reset_index(drop=True)
    fitted = at[at["kind"] == "model_region"]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.35 * max(len(new), 1)), layout="constrained")
    for y, row in new.iterrows():
        ax.plot([row["q05"], row["q95"]], [y, y], color="#e76f51", lw=6, alpha=0.45, solid_capstyle="butt",
                label="new model: 90% predictive" if y == 0 else None)
        ax.plot(row["mean"], y, "|", color="#e76f51", ms=12)
        own = fitted[fitted["family_id"] == row["family_id"]]
        ax.scatter(own["mean"], np.full(len(own), y), s=14, color="#264653", zorder=3,
                   label="fitted models: predictive mean" if y == 0 else None)
    ax.set_yticks(range(len(new)), new["family_id"], fontsize=8)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="best")
    ax.set(xlabel="predictive log residual of a new request", title=f"New-model priors at {region_id}")
    return to_png(fig)


def coverage(cells: pd.DataFrame, nominal: float) -> str:
    """Held-out coverage per cell against n, with the binomial band a correct interval would hit."""
    from scipy import stats

    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    for status, group in cells.groupby("status"):
        ax.scatter(group["n"], group["empirical_coverage"], s=18, alpha=0.7,
                   color=_STATUS_COLOURS.get(str(status), "grey"), label=f"{status} ({len(group)})")
    n = np.unique(np.geomspace(1, max(int(cells["n"].max()), 2), 60).astype(int))
    ax.fill_between(n, stats.binom.ppf(0.025, n, nominal) / n, stats.binom.ppf(0.975, n, nominal) / n,
                    color="grey", alpha=0.2, label="95% binomial range at nominal")
    ax.axhline(nominal, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.legend(fontsize=7, loc="lower right")
    ax.set(xlabel="test-fold requests in cell (n)", ylabel="empirical coverage",
           title=f"Held-out coverage by cell (nominal {nominal:.0%})", ylim=(-0.02, 1.02))
    return to_png(fig)


def rank_plots(idata: Any, params: list[tuple[str, dict[str, Any]]]) -> str:
    """ArviZ rank plots (bars) for a few parameters: flat, overlapping chains mean good mixing."""
    import arviz as az

    fig, axes = plt.subplots(1, len(params), figsize=(3.2 * len(params), 2.8), squeeze=False, layout="constrained")
    for ax, (var, coords) in zip(axes[0], params):
        az.plot_rank(idata, var_names=[var], coords={k: [v] for k, v in coords.items()}, ax=ax, kind="bars")
        label = ", ".join(str(v) for v in coords.values())
        ax.set_title(f"{var}[{label}]" if label else var, fontsize=8)
    return to_png(fig)
