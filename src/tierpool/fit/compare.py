"""Compare hierarchies (e.g. family → model against family → architecture → model) out of sample.

Each spec is fitted on the same fit-fold cells; then, from the posterior draws θ_s:

* **elpd_test** (the main metric): the exact log predictive density of the held-out test fold.
  A test cell's rows are i.i.d. N(μ_m + μ_g, σ_m) given θ, so its joint density depends on the
  rows only through (n, mean, S): ``log p = −n·ln σ − n/2·ln 2π − (S + n(mean − μ)²)/(2σ²)``.
  Per cell ``log mean_s exp(log p_s)``, summed over cells. The cell (not the row) is the unit:
  rows of one cell share θ, so their joint density is what a hierarchy has to predict.
* **PSIS-LOO over fit-fold cells** (ArviZ) on the same per-cell log densities. A cell with many
  rows is very informative about its own (μ, σ): leaving it out moves the posterior a lot and its
  Pareto k is high; ``n_pareto_k_high`` counts k > 0.7 and ``loo_warning`` says so.
* **coverage_90 / mean_width**: held-out coverage of the 90% predictive interval of a new residual
  (one simulated residual per draw, as ``predictive.py`` does), counted exactly on the test rows
  when they are given, else approximated from each cell's (mean, S) as a normal.

Unseen groups: models or regions that appear only in the test fold are added to the fit as
catalogue groups (ids only, no data), so their draws come from the hierarchy's new-model /
new-region prior given their parent. None are excluded; ``n_test_cells_unseen`` counts them.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from tierpool.errors import FitError
from tierpool.fit.api import FitResult, fit_hierarchical
from tierpool.fit.interaction import CellData, draws_of_tau, gamma_moments
from tierpool.fit.sample import FitSettings
from tierpool.fit.spec import FitSpec

PARETO_K_HIGH = 0.7
_CHUNK = 2_000_000  # draws × cells evaluated at once (~16 MB per float array)

COLUMNS = [
    "hierarchy", "elpd_test", "elpd_test_se", "elpd_diff", "elpd_diff_se", "loo_elpd", "loo_se", "p_loo",
    "n_pareto_k_high", "max_pareto_k", "loo_warning", "coverage_90", "mean_width", "coverage_method",
    "n_test_rows", "n_test_cells", "n_test_cells_unseen", "n_fit_cells", "fit_seconds", "max_r_hat",
    "divergences", "gate_passed",
]


@dataclass
class HierarchyScore:
    """One spec's fit and its scores (``row`` is its line of the comparison table)."""

    name: str
    result: FitResult
    row: dict[str, Any]
    test_pointwise: np.ndarray  # elpd contribution of each test cell (order of the test cells)
    loo: Any  # arviz ELPDData (pointwise, with pareto_k)


def cell_log_density(n: np.ndarray, mean: np.ndarray, S: np.ndarray, mu: np.ndarray, sigma: np.ndarray,
                     w: np.ndarray | None = None, log_w: np.ndarray | None = None) -> np.ndarray:
    """Exact joint log density of a cell's rows under N(μ, σ), from (n, mean, S) alone.

    With weighted rows (row i ~ N(μ, σ²/w_i); ``w`` = Σ w_i, ``mean`` and ``S`` weighted,
    ``log_w`` = Σ ln w_i) it is ``−n ln σ − n/2 ln 2π + ½ Σ ln w_i − (S + w(mean − μ)²)/(2σ²)``.
    Broadcasts: e.g. stats of shape (C,) against draws (B, C) gives (B, C).
    """
    n = np.asarray(n, float)
    if w is None:
        return (-n * np.log(sigma) - 0.5 * n * math.log(2 * math.pi)
                - (S + n * (mean - mu) ** 2) / (2.0 * sigma**2))
    out = -n * np.log(sigma) - 0.5 * n * math.log(2 * math.pi) - (S + w * (mean - mu) ** 2) / (2.0 * sigma**2)
    return out if log_w is None else out + 0.5 * log_w


def cell_log_density_gamma(n, mean, S, mu, sigma, w, log_w, g_mean, g_var) -> np.ndarray:
    """:func:`cell_log_density` with the cell interaction γ ~ N(g_mean, g_var) integrated out: the
    rows share γ, so only the mean's term changes, ``log N(mean | μ + g_mean, σ²/w + g_var)``
    (``w``: None = n; ``log_w``: None = 0)."""
    n = np.asarray(n, float)
    w = n if w is None else w
    v = sigma**2 / w + g_var
    out = (-(n - 1.0) * np.log(sigma) - 0.5 * (n - 1.0) * math.log(2 * math.pi) - S / (2.0 * sigma**2)
           - 0.5 * np.log(w) - 0.5 * np.log(2 * math.pi * v) - (mean - mu - g_mean) ** 2 / (2.0 * v))
    return out if log_w is None else out + 0.5 * log_w


WEIGHT = "weight"  # rows' column: how many requests a row averages (optional; 1 when absent)


def cells_from_rows(rows: pd.DataFrame, keys: Sequence[str], value: str = "residual") -> pd.DataFrame:
    """Reduce rows to cells: keys + n, mean, S (two-pass: deviations from the cell mean).

    Rows with a ``weight`` column other than 1 give weighted cells: ``w`` = Σ w_i, the weighted
    mean, ``S`` = Σ w_i (y_i − mean)² and ``log_w`` = Σ ln w_i (what an exact row-level density
    needs); unweighted rows give the columns n, mean, S only, as before.
    """
    if WEIGHT in rows.columns and not (pd.to_numeric(rows[WEIGHT]) == 1.0).all():
        return _weighted_cells(rows, keys, value)
    g = rows.groupby(list(keys), sort=True, observed=True)[value]
    out = g.agg(n="count", mean="mean").reset_index()
    dev = rows[value] - g.transform("mean")
    out["S"] = (dev**2).groupby([rows[k] for k in keys], sort=True, observed=True).sum().to_numpy()
    return out


def _weighted_cells(rows: pd.DataFrame, keys: Sequence[str], value: str) -> pd.DataFrame:
    wt = pd.to_numeric(rows[WEIGHT]).astype(float)
    frame = rows[list(keys)].assign(_w=wt, _wy=wt * rows[value], _lw=np.log(wt))
    by = [frame[k] for k in keys]
    g = frame.groupby(by, sort=True, observed=True)
    out = g.agg(n=("_w", "size"), w=("_w", "sum"), _wy=("_wy", "sum"), log_w=("_lw", "sum"))
    out["mean"] = out.pop("_wy") / out["w"]
    mean_row = (frame["_wy"].groupby(by, sort=True, observed=True).transform("sum")
                / frame["_w"].groupby(by, sort=True, observed=True).transform("sum"))
    dev = rows[value] - mean_row
    out["S"] = (wt * dev**2).groupby(by, sort=True, observed=True).sum().to_numpy()
    return out.reset_index()[[*keys, "n", "w", "mean", "S", "log_w"]]


class _Draws:
    """Flattened posterior draws of the leaf locations, residual sds and additive effects."""

    def __init__(self, result: FitResult) -> None:
        spec, post = result.spec, result.idata.posterior
        self.spec = spec

        def flat(var: str) -> np.ndarray:
            x = post[var].values
            return x.reshape(x.shape[0] * x.shape[1], -1)

        leaf = spec.main.leaf.name
        self.mu_m, self.sd_m = flat(f"mu_{leaf}"), flat(f"sigma_{leaf}")
        self.m_index = pd.Index([str(v) for v in post[leaf].values])
        self.B = self.mu_m.shape[0]
        if spec.additive is not None:
            reg = spec.additive.leaf.name
            self.mu_g = flat(f"mu_{reg}")
            self.g_index = pd.Index([str(v) for v in post[reg].values])
        else:
            self.mu_g, self.g_index = np.zeros((self.B, 1)), None
        self.tau = draws_of_tau(result.idata)  # σ_cell of a cell interaction, else None
        self.cells = CellData(result.structure) if self.tau is not None else None

    def gamma(self, m: np.ndarray, g: np.ndarray, mu: np.ndarray, prior: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, var)`` ``(B, J)`` of each pair's γ: given the fitted cells (``prior``: its prior
        N(0, σ_cell²), e.g. for leave-one-out of a fitted cell, whose γ must not see its own rows)."""
        if prior:
            var = np.broadcast_to((self.tau**2)[:, None], mu.shape)
            return np.zeros_like(mu), var
        return gamma_moments(self.cells, m, g, mu, self.sd_m[:, m], self.tau)

    def locate(self, cells: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Indices of each cell's leaf and additive leaf in the draws (FitError if absent)."""
        m = self.m_index.get_indexer(cells[self.spec.main.leaf.column].astype(str))
        if self.g_index is not None:
            g = self.g_index.get_indexer(cells[self.spec.additive.leaf.column].astype(str))
        else:
            g = np.zeros(len(cells), dtype=np.int64)
        if (m < 0).any() or (g < 0).any():
            raise FitError("a cell's model or region has no posterior draws: pass it in the catalogue")
        return m, g

    def log_density(self, cells: pd.DataFrame, spec: FitSpec, gamma_prior: bool = False) -> np.ndarray:
        """(B, C) per-draw log density of each cell, computed in chunks of cells (with a cell
        interaction, γ integrated out given the fit, or under its prior if ``gamma_prior``)."""
        m, g = self.locate(cells)
        n = cells[spec.n_col].to_numpy(float)
        mean = cells[spec.mean_col].to_numpy(float)
        S = cells[spec.s_col].to_numpy(float)
        w = cells[spec.w_col].to_numpy(float) if spec.w_col in cells.columns else None
        log_w = cells["log_w"].to_numpy(float) if "log_w" in cells.columns else None
        out = np.empty((self.B, len(cells)))
        step = max(1, _CHUNK // self.B)
        for lo in range(0, len(cells), step):
            sl = slice(lo, lo + step)
            mu = self.mu_m[:, m[sl]] + self.mu_g[:, g[sl]]
            w_sl, lw_sl = None if w is None else w[sl], None if log_w is None else log_w[sl]
            if self.tau is None:
                out[:, sl] = cell_log_density(n[sl], mean[sl], S[sl], mu, self.sd_m[:, m[sl]], w_sl, lw_sl)
            else:
                g_mean, g_var = self.gamma(m[sl], g[sl], mu, gamma_prior)
                out[:, sl] = cell_log_density_gamma(n[sl], mean[sl], S[sl], mu, self.sd_m[:, m[sl]], w_sl, lw_sl,
                                                    g_mean, g_var)
        return out


def _catalogue(fit_cells: pd.DataFrame, test_cells: pd.DataFrame, spec: FitSpec) -> pd.DataFrame:
    cols = spec.id_columns()
    return pd.concat([fit_cells[cols], test_cells[cols]], ignore_index=True).astype(str).drop_duplicates()


def _loo(ll: np.ndarray, posterior: Any) -> Any:
    import arviz as az
    import xarray as xr

    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    ds = xr.Dataset({"cells": (("chain", "draw", "cell"), ll.reshape(chains, draws, ll.shape[1]))},
                    coords={"chain": posterior["chain"].values, "draw": posterior["draw"].values})
    # the posterior is there for the relative efficiency of the draws (r_eff) PSIS needs
    idata = az.InferenceData(posterior=posterior, log_likelihood=ds)
    with warnings.catch_warnings():  # high Pareto k is reported in the table, not as a warning
        warnings.simplefilter("ignore")
        return az.loo(idata, pointwise=True)


def _intervals(d: _Draws, cells: pd.DataFrame, seed: int, weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """q05, q95 of a new residual per cell: one simulated residual per posterior draw (of a row
    averaging ``weight`` requests, noise sd σ/√weight, where given)."""
    m, g = d.locate(cells)
    rng = np.random.default_rng([seed, 3571])
    gamma_rng = np.random.default_rng([seed, 611953])
    q05, q95 = np.empty(len(cells)), np.empty(len(cells))
    step = max(1, _CHUNK // d.B)
    for lo in range(0, len(cells), step):
        sl = slice(lo, lo + step)
        sd = d.sd_m[:, m[sl]] if weight is None else d.sd_m[:, m[sl]] / np.sqrt(weight[sl])
        r = d.mu_m[:, m[sl]] + d.mu_g[:, g[sl]] + sd * rng.standard_normal((d.B, len(m[sl])))
        if d.tau is not None:  # the pair's γ: its own stream, so the draws above are unchanged
            g_mean, g_var = d.gamma(m[sl], g[sl], d.mu_m[:, m[sl]] + d.mu_g[:, g[sl]])
            r += g_mean + np.sqrt(g_var) * gamma_rng.standard_normal(g_mean.shape)
        q = np.quantile(r, [0.05, 0.95], axis=0)
        q05[sl], q95[sl] = q[0], q[1]
    return q05, q95


def _coverage(d: _Draws, test_cells: pd.DataFrame, test_rows: pd.DataFrame | None, keys: list[str],
              value: str, seed: int, spec: FitSpec) -> tuple[float, float, str]:
    if test_rows is not None and WEIGHT in test_rows.columns and not (pd.to_numeric(test_rows[WEIGHT]) == 1.0).all():
        return _weighted_coverage(d, test_rows, keys, value, seed)
    q05, q95 = _intervals(d, test_cells, seed)
    n = test_cells[spec.n_col].to_numpy(float)
    width = float(np.sum(n * (q95 - q05)) / n.sum())  # per row: each row carries its cell's interval
    if test_rows is not None:
        bounds = test_cells[keys].astype(str).assign(_q05=q05, _q95=q95)
        rows = test_rows[keys + [value]].astype({k: str for k in keys}).merge(bounds, on=keys, how="left")
        r = rows[value].to_numpy(float)
        inside = (r >= rows["_q05"].to_numpy()) & (r <= rows["_q95"].to_numpy())
        return float(inside.mean()), width, "rows"
    from scipy.stats import norm

    # no rows: treat each cell's rows as N(mean, S/n) (approximate; the tails are what matter)
    mean = test_cells[spec.mean_col].to_numpy(float)
    sd = np.sqrt(np.maximum(test_cells[spec.s_col].to_numpy(float) / n, 1e-300))
    share = norm.cdf((q95 - mean) / sd) - norm.cdf((q05 - mean) / sd)
    return float(np.sum(n * share) / n.sum()), width, "cell_normal_approx"


def _weighted_coverage(d: _Draws, test_rows: pd.DataFrame, keys: list[str], value: str,
                       seed: int) -> tuple[float, float, str]:
    """Coverage and mean width per row when rows average several requests: each row gets the 90%
    interval of a row of its own weight (one interval per cell and weight)."""
    rows = test_rows[keys + [value, WEIGHT]].astype({k: str for k in keys})
    rows[WEIGHT] = pd.to_numeric(rows[WEIGHT]).astype(float)
    combos = rows[keys + [WEIGHT]].drop_duplicates().sort_values(keys + [WEIGHT]).reset_index(drop=True)
    q05, q95 = _intervals(d, combos, seed, combos[WEIGHT].to_numpy(float))
    rows = rows.merge(combos.assign(_q05=q05, _q95=q95), on=keys + [WEIGHT], how="left")
    r = rows[value].to_numpy(float)
    inside = (r >= rows["_q05"].to_numpy()) & (r <= rows["_q95"].to_numpy())
    return float(inside.mean()), float((rows["_q95"] - rows["_q05"]).mean()), "rows"


def score_hierarchy(
    name: str,
    spec: FitSpec,
    fit_cells: pd.DataFrame,
    test_cells: pd.DataFrame,
    settings: FitSettings,
    test_rows: pd.DataFrame | None = None,
    value: str = "residual",
) -> HierarchyScore:
    """Fit one spec on the fit cells and score it on the test fold (see the module docstring).

    Raises:
        FitError: If the cells do not fit the spec (missing id columns, bad nesting, ...).
    """
    keys = [spec.main.leaf.column] + ([spec.additive.leaf.column] if spec.additive else [])
    missing = [c for c in spec.id_columns() + spec.stat_columns() if c not in test_cells.columns]
    if missing:
        raise FitError(f"test cells lack column(s) {missing} needed by hierarchy {name!r}")
    start = time.perf_counter()
    result = fit_hierarchical(fit_cells, spec, settings, catalogue=_catalogue(fit_cells, test_cells, spec))
    seconds = time.perf_counter() - start
    d = _Draws(result)
    test_ll = d.log_density(test_cells, spec)
    point = logsumexp(test_ll, axis=0) - math.log(d.B)
    loo = _loo(d.log_density(result.structure.cells, spec, gamma_prior=True), result.idata.posterior)
    k = np.asarray(loo.pareto_k)
    n_high = int((k > PARETO_K_HIGH).sum())
    cov, width, method = _coverage(d, test_cells, test_rows, keys, value, settings.seed, spec)
    seen_m = set(result.structure.cells[spec.main.leaf.column])
    seen_g = set(result.structure.cells[keys[1]]) if len(keys) > 1 else None
    unseen = ~test_cells[keys[0]].astype(str).isin(seen_m)
    if seen_g is not None:
        unseen |= ~test_cells[keys[1]].astype(str).isin(seen_g)
    row = {
        "hierarchy": name,
        "elpd_test": float(point.sum()),
        "elpd_test_se": float(math.sqrt(len(point)) * point.std(ddof=1)) if len(point) > 1 else float("nan"),
        "loo_elpd": float(loo.elpd_loo), "loo_se": float(loo.se), "p_loo": float(loo.p_loo),
        "n_pareto_k_high": n_high, "max_pareto_k": float(k.max()),
        "loo_warning": (f"{n_high} of {len(k)} fit cells have Pareto k > {PARETO_K_HIGH}: PSIS-LOO is "
                        "unreliable there (large cells dominate their own posterior); trust elpd_test")
        if n_high else "",
        "coverage_90": cov, "mean_width": width, "coverage_method": method,
        "n_test_rows": int(test_cells[spec.n_col].sum()), "n_test_cells": int(len(test_cells)),
        "n_test_cells_unseen": int(unseen.sum()), "n_fit_cells": int(len(result.structure.cells)),
        "fit_seconds": seconds, "max_r_hat": float(result.gate.max_r_hat),
        "divergences": int(result.gate.divergences), "gate_passed": bool(result.gate.passed),
    }
    return HierarchyScore(name, result, row, point, loo)


def compare_hierarchies(
    fit_cells: pd.DataFrame,
    test_cells: pd.DataFrame,
    specs: Mapping[str, FitSpec],
    settings: FitSettings | None = None,
    test_rows: pd.DataFrame | None = None,
    value: str = "residual",
) -> pd.DataFrame:
    """Fit every spec on ``fit_cells`` and compare them on the held-out ``test_cells``.

    Args:
        fit_cells: Fit-fold cells: every spec's id columns plus n, mean, S.
        test_cells: Test-fold cells, same columns (see :func:`cells_from_rows`).
        specs: Hierarchy name -> spec, e.g. ``{"two_level": default_spec(), "three_level":
            three_level_spec()}``; all specs are scored on the same cells.
        settings: Sampler settings (default :class:`FitSettings`).
        test_rows: Optional test-fold rows (id columns + ``value``) for exact coverage.
        value: Column of ``test_rows`` holding the residual.

    Returns:
        One row per hierarchy (columns :data:`COLUMNS`), best ``elpd_test`` first.
        ``elpd_diff`` is elpd_test minus the best one's, ``elpd_diff_se`` the standard error of
        that difference paired over test cells (0 for the best).

    Raises:
        FitError: On empty inputs or cells that do not fit a spec.
    """
    if not specs:
        raise FitError("compare_hierarchies: no hierarchies given")
    if len(test_cells) == 0:
        raise FitError("compare_hierarchies: the test fold has no cells")
    settings = settings or FitSettings()
    order = ["model_id", "region_id"]  # stable cell order for the paired differences
    sort_cols = [c for c in order if c in test_cells.columns]
    test_cells = test_cells.sort_values(sort_cols).reset_index(drop=True) if sort_cols else test_cells
    scores = [score_hierarchy(n, s, fit_cells, test_cells, settings, test_rows, value) for n, s in specs.items()]
    best = max(scores, key=lambda sc: sc.row["elpd_test"])
    for sc in scores:
        diff = sc.test_pointwise - best.test_pointwise
        sc.row["elpd_diff"] = float(diff.sum())
        sc.row["elpd_diff_se"] = float(math.sqrt(len(diff)) * diff.std(ddof=1)) if len(diff) > 1 else 0.0
    frame = pd.DataFrame([sc.row for sc in scores])[COLUMNS]
    return frame.sort_values("elpd_test", ascending=False, ignore_index=True)
