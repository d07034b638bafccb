"""The report's sections: per indicator (shrinkage, forest, regions, new-model priors,
coverage, diagnostics) and the fit history. Each returns an HTML fragment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tierpool.report import plots
from tierpool.report.data import ReportData
from tierpool.report.page import figure, note, section, table

_RANK_PARAMS = 4
_WORST_ROWS = 8
_DRAWS_DIM = {"families": "family", "models": "model", "region_classes": "region_class", "regions": "region"}
_LEVEL_ID = {"posterior_families": "family_id", "posterior_models": "model_id",
             "posterior_region_classes": "region_class_id", "posterior_regions": "region_id"}


def _shrinkage(data: ReportData, ind: str) -> str:
    cells = data.get("residual_cells", ind)
    pred = data.get("posterior_predictive", ind)
    models = data.get("posterior_models", ind)
    regions = data.get("posterior_regions", ind)
    if cells is None or cells.empty:
        return note("No residual_cells table: nothing to compare the posterior with.")
    png = plots.shrinkage(cells, pred[pred["kind"] == "model_region"],
                          models[models["parameter"] == "level"], regions[regions["parameter"] == "mu"])
    return note("Raw means (current residual_cells) against the fit's posterior; points sized by n. "
                "Small cells are pulled towards their family (off the dashed line), large ones keep their own mean.") \
        + figure(png, f"shrinkage {ind}")


def _forest(data: ReportData, ind: str) -> str:
    models = data.get("posterior_models", ind)
    png = plots.forest(models[models["parameter"] == "level"], data.get("posterior_families", ind))
    return figure(png, f"forest plot of model biases {ind}")


def _regions(data: ReportData, ind: str) -> str:
    regions = data.get("posterior_regions", ind)
    regions = regions[regions["parameter"] == "mu"]
    if regions.empty:
        return note("This fit has no region level.")
    return figure(plots.region_effects(regions, data.get("posterior_region_classes", ind)), f"region effects {ind}")


def _reference_region(data: ReportData, ind: str, pred: pd.DataFrame) -> str | None:
    cells = data.get("residual_cells", ind)
    if cells is not None and not cells.empty:
        sizes = cells.groupby("region_id")["n"].sum().sort_values(ascending=False)
        for region in sizes.index:
            if (pred["region_id"] == region).any():
                return str(region)
    regions = pred["region_id"].dropna()
    return str(regions.iloc[0]) if not regions.empty else None


def _new_models(data: ReportData, ind: str) -> str:
    pred = data.get("posterior_predictive", ind)
    pred = pred[pred["kind"].isin(["new_model_region", "model_region"])]
    region = _reference_region(data, ind, pred[pred["kind"] == "new_model_region"])
    if region is None:
        return note("No new_model_region predictive rows in this fit.")
    return note(f"Prior for a model not yet measured, at the region with the most data ({region}): "
                "its family's spread of models plus the region effect and residual noise.") \
        + figure(plots.new_model_priors(pred, region), f"new-model priors {ind}")


def _coverage(data: ReportData, ind: str) -> str:
    report = data.get("coverage_report", ind)
    if report is None:
        return note("No coverage_report table in this warehouse: "
                    "build the conformal calibration models to see coverage.")
    cells = report[report["grouping"] == "cell"]
    if cells.empty:
        return note("coverage_report has no cell rows for this indicator.")
    parts = []
    for mode, group in cells.groupby("mode", sort=True):
        nominal = float(group["nominal"].dropna().iloc[0]) if group["nominal"].notna().any() else 0.9
        parts.append(f"<h4>Folds: {mode}</h4>" + figure(plots.coverage(group, nominal), f"coverage {ind} {mode}"))
    flagged = cells[cells["status"] != "pass"]
    wanted = ("mode", "model_id", "region_id", "n", "empirical_coverage", "mean_width_pct", "p_value", "status")
    cols = [c for c in wanted if c in cells.columns]
    summary = report[report["grouping"] != "cell"].sort_values(["mode", "grouping", "n"], ascending=[True, True, False])
    group_cols = [c for c in ("mode", "grouping", "family_id", "region_class_id", "conformal_level", "n",
                              "empirical_coverage", "mean_width_log", "mean_width_pct", "elpd", "elpd_se",
                              "p_value", "status") if c in summary.columns]
    return "".join(parts) + "<h4>Cells not passing</h4>" + table(flagged[cols], status_col="status") \
        + "<h4>Groups (fallback levels, overall, and the hold-out modes: new models, regions, families)</h4>" \
        + table(summary[group_cols], status_col="status")


def _worst_parameters(data: ReportData, ind: str) -> pd.DataFrame:
    frames = []
    for name, id_col in _LEVEL_ID.items():
        frame = data.get(name, ind)
        if frame is not None and not frame.empty:
            frames.append(frame.assign(level=name.removeprefix("posterior_"), group_id=frame[id_col]))
    allp = pd.concat(frames, ignore_index=True)[["level", "group_id", "parameter", "r_hat", "ess_bulk", "ess_tail"]]
    worst = pd.concat([allp.nlargest(_WORST_ROWS, "r_hat"), allp.nsmallest(_WORST_ROWS, "ess_bulk")])
    return worst.drop_duplicates().sort_values("r_hat", ascending=False)


def _rank_params(worst: pd.DataFrame, idata: Any) -> list[tuple[str, dict[str, Any]]]:
    """The worst parameters (already ranked by r_hat in the posterior tables) as draws-file names.

    Reuses the published r_hat instead of recomputing it over every variable, which would
    cost more than the plots; ``level`` is ``mu`` in the draws file.
    """
    params = []
    for row in worst.itertuples(index=False):
        dim = _DRAWS_DIM[row.level]
        var = f"{'mu' if row.parameter == 'level' else row.parameter}_{dim}"
        if var in idata.posterior and row.group_id in idata.posterior[var].coords[dim].values:
            if (var, {dim: row.group_id}) not in params:
                params.append((var, {dim: row.group_id}))
        if len(params) == _RANK_PARAMS:
            break
    return params


def _rank_section(fits_dir: Path | None, fit_id: str, ind: str, worst: pd.DataFrame) -> str:
    path = fits_dir / fit_id / f"{ind}.nc" if fits_dir is not None else None
    if path is None or not path.exists():
        where = f"no draws file {path}" if path is not None else "no draws folder given"
        return note(f"Rank plots need the fit's ArviZ file ({where}).")
    import arviz as az

    idata = az.from_netcdf(path)
    params = _rank_params(worst, idata)
    if not params:
        return note(f"{path.name} has none of the worst parameters: no rank plots.")
    return note(f"Rank plots of the {len(params)} parameters with the highest r_hat (from {path.name}): "
                "bars near the dashed uniform line in every chain mean the chains agree.") \
        + figure(plots.rank_plots(idata, params), f"rank plots {ind}")


def _diagnostics(data: ReportData, ind: str, fits_dir: Path | None) -> str:
    runs = data.get("fit_runs", ind)
    run = runs[runs["fit_id"] == data.fit_id]
    cols = [c for c in ("fit_id", "attempt", "status", "max_r_hat", "min_ess_bulk", "divergences", "n_cells", "n_obs",
                        "compile_seconds", "sampling_seconds", "reason") if c in run.columns]
    worst = _worst_parameters(data, ind)
    return table(run[cols], status_col="status") + "<h4>Worst parameters (r_hat, ESS)</h4>" \
        + table(worst) + _rank_section(fits_dir, data.fit_id, ind, worst)


def indicator_section(data: ReportData, ind: str, fits_dir: Path | None) -> str:
    """All per-indicator subsections, in reading order."""
    parts = [
        ("shrinkage", "Shrinkage: raw means against the posterior", lambda: _shrinkage(data, ind)),
        ("forest", "Model biases by family", lambda: _forest(data, ind)),
        ("regions", "Region effects by class", lambda: _regions(data, ind)),
        ("new-models", "New-model priors against their family", lambda: _new_models(data, ind)),
        ("coverage", "Coverage by cell", lambda: _coverage(data, ind)),
        ("diagnostics", "Sampler diagnostics", lambda: _diagnostics(data, ind, fits_dir)),
    ]
    body = "".join(section(f"{ind}-{key}", title, build(), level=3) for key, title, build in parts)
    return section(ind, f"Indicator: {ind}", body)


def history_section(data: ReportData) -> str:
    """Every recorded fit (fit_runs), the methodology releases and the coverage release."""
    runs = data.tables["fit_runs"]
    cols = [c for c in ("fit_id", "indicator", "attempt", "status", "started_at", "finished_at", "window_end", "max_r_hat",
                        "min_ess_bulk", "divergences", "n_cells", "n_obs", "reason") if c in runs.columns]
    body = "<h3>Fits</h3>" + table(runs[cols], status_col="status")
    releases = data.get("methodology_releases")
    body += "<h3>Methodology releases</h3>" + (table(releases) if releases is not None else note("No releases yet."))
    coverage = data.get("coverage_release")
    if coverage is not None:
        body += "<h3>Coverage release</h3>" + table(coverage, status_col="status")
    return section("history", "History of fits", body)
