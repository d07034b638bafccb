"""Interim priors between quarterly refits (docs/fit.md, "Interim updates").

For each indicator's fit in force (``latest_fit``), every model with fit-fold measurements after the
fit's window gets its published posterior (or, for a model the fit never saw, its family's prior)
updated by those cells, exactly over the fit's stored draws (``tierpool.fit.interim``): seconds, no
sampling. The rows override ``priors`` for the model's fitted regions (``source_level =
'model_interim'``); the next refit, whose window takes the new cells in, supersedes them.
"""

from __future__ import annotations

import json
import zlib
from datetime import date
from pathlib import Path

import pandas as pd

from tierpool.calibration.lifecycle import cells_in_window

COLUMNS = ["indicator", "model_id", "family_id", "region_id", "region_class_id", "bias_mean", "bias_sd",
           "bias_q05", "bias_q95", "dispersion", "pred_mean", "pred_sd", "pred_q05", "pred_q95",
           "n_new", "n_new_unused", "weights_ess", "fit_id"]
_CELL = ["region_id", "n", "w", "mean", "S"]


def _resolution(fit_runs: pd.DataFrame, fit_id: str, indicator: str) -> float:
    """The resolution δ the fit used (recorded in fit_runs.settings; 0 for fits recorded before it)."""
    rows = fit_runs[(fit_runs["fit_id"] == fit_id) & (fit_runs["indicator"] == indicator)]
    if rows.empty or rows["settings"].isna().all():
        return 0.0
    return float(json.loads(rows["settings"].dropna().iloc[-1]).get("resolution", 0.0))


def interim_priors(target_dir: str | Path, quarterly_cells: pd.DataFrame, latest_fit: pd.DataFrame,
                   fit_draws: pd.DataFrame, fit_runs: pd.DataFrame, regions: pd.DataFrame,
                   log=lambda message: None) -> pd.DataFrame:
    """Interim rows for every model measured after its indicator's fit in force (see module doc).

    ``log`` receives one line per indicator (models updated, cells that could not be used).
    """
    import arviz as az

    from tierpool.fit.interim import interim_draws, interim_summary

    out = []
    region_class = dict(zip(regions["region_id"].astype(str), regions["region_class_id"].astype(str)))
    present = {(str(r.fit_id), str(r.indicator)): str(r.path) for r in fit_draws.itertuples() if bool(r.present)}
    for fit in latest_fit.itertuples():
        fit_id, indicator = str(fit.fit_id), str(fit.indicator)
        window_end = pd.Timestamp(fit.window_end).date()
        cells = quarterly_cells[quarterly_cells["indicator"] == indicator]
        after = cells[pd.to_datetime(cells["quarter_start"]) >= pd.Timestamp(window_end)]
        if after.empty:
            continue
        if (fit_id, indicator) not in present:
            log(f"{indicator}: no draws of fit {fit_id} under target/fits: no interim update")
            continue
        post = az.from_netcdf(str(Path(target_dir) / present[(fit_id, indicator)])).posterior
        new = cells_in_window(after, date.max)
        old = cells_in_window(cells, window_end)
        fitted_regions = {str(r) for r in post["region"].values}
        families = {str(f) for f in post["family"].values}
        resolution = _resolution(fit_runs, fit_id, indicator)
        updated, unused = 0, 0
        for model_id, group in new.groupby("model_id", sort=True):
            family = str(group["family_id"].iloc[0])
            usable = group[group["region_id"].astype(str).isin(fitted_regions)]
            lost = int(group["n"].sum() - usable["n"].sum())
            if family not in families or usable.empty:  # a new family keeps its fallback prior
                unused += int(group["n"].sum())
                continue
            seed = zlib.crc32(f"{fit_id}/{indicator}/{model_id}".encode())
            draws = interim_draws(post, str(model_id), family, old[old["model_id"] == model_id][_CELL],
                                  usable[_CELL], resolution=resolution, seed=seed)
            summary = interim_summary(draws, resolution, seed=seed + 1)
            summary = summary.assign(indicator=indicator, model_id=str(model_id), family_id=family, fit_id=fit_id,
                                     n_new_unused=lost)
            summary["region_class_id"] = summary["region_id"].map(region_class)
            out.append(summary[COLUMNS])
            updated += 1
            unused += lost
        log(f"{indicator}: interim update of {updated} model(s) from fit {fit_id}"
            + (f"; {unused} new residual(s) in regions or families the fit never saw stay out" if unused else ""))
    if not out:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c.startswith(("bias", "pred", "disp", "weights"))
                                          else "int64" if c.startswith("n_") else "object") for c in COLUMNS})
    frame = pd.concat(out, ignore_index=True)
    return frame.dropna(subset=["region_class_id"]).reset_index(drop=True)
