"""Posterior of the locations (exact conditional draws) and tidy per-level tables.

NUTS sampled only the scales; here every location is drawn from its exact Gaussian conditional
given each draw of the scales and added to the InferenceData posterior group (``mu_<level>``,
``mu_global``), so ArviZ diagnostics cover sampled and derived parameters alike.

Identified quantities: the additive leaf's effects sum to zero in every draw (they are drawn in the
constrained subspace), so ``mu_model`` *is* the model at the average region; it is reported a
second time as parameter ``level`` so downstream code need not know the constraint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from tierpool.fit.build import theta_from_posterior
from tierpool.fit.diagnostics import DIAGNOSTICS, summarise
from tierpool.fit.gaussian import draw_locations
from tierpool.fit.quantiles import row_quantiles
from tierpool.fit.spec import FitSpec, Side
from tierpool.fit.structure import Structure

_STAT_COLS = ["mean", "sd", "q05", "q50", "q95", "r_hat", "ess_bulk", "ess_tail"]


def tidy_posterior(idata: Any, st: Structure) -> None:
    """Drop the sampler's transformed copies and label every level dim with its group ids."""
    post = idata.posterior
    drop = [v for v in post.data_vars if str(v).endswith("__")]
    post = post.drop_vars(drop)
    for name, ids in st.ids.items():
        if name in post.dims:
            post = post.assign_coords({name: list(ids)})
    idata.posterior = post


def add_locations(idata: Any, st: Structure, seed: int) -> np.ndarray:
    """Draw all locations given each scale draw; add them to ``idata.posterior``.

    Returns:
        The pooling factor per leaf and draw, ``(chains, draws, M)``.
    """
    post = idata.posterior
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    theta = theta_from_posterior(post, st)
    rng = np.random.default_rng([seed, 7919])
    xk, xm, pooling = draw_locations(theta, st, rng, return_pooling=True)  # one pass: draws and q/d
    idata.posterior = store_locations(post, st, xk, xm)
    return pooling.reshape(nc, nd, -1)


def store_locations(post: xr.Dataset, st: Structure, xk: np.ndarray, xm: np.ndarray) -> xr.Dataset:
    """Add the flat location draws ``xk (B, K)``, ``xm (B, M)`` as ``mu_<level>`` variables."""
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    new = {f"mu_{st.spec.main.leaf.name}": (xm, st.spec.main.leaf.name)}
    for name, off in st.kept_offset.items():
        size = 1 if name == "global" else len(st.ids[name])
        new[f"mu_{name}"] = (xk[:, off:off + size], None if name == "global" else name)
    for var, (arr, dim) in new.items():
        if dim is None:
            post[var] = (("chain", "draw"), arr.reshape(nc, nd))
        else:
            post[var] = (("chain", "draw", dim), arr.reshape(nc, nd, -1))
    return post.assign_coords({k: list(v) for k, v in st.ids.items() if k in post.dims})


def _summaries(
    ds: xr.Dataset, diagnostics: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, pd.DataFrame]:
    """Per variable: a frame indexed by group with the standard summary columns.

    ``diagnostics``: this posterior's r_hat/ess_bulk/ess_tail from
    :func:`tierpool.fit.diagnostics.summarise` if the caller already has them (computed if omitted).
    """
    diag = diagnostics if diagnostics is not None else summarise(ds)
    out = {}
    for var in ds.data_vars:
        x = ds[var].values
        rows = x.reshape(x.shape[0] * x.shape[1], -1).T.copy()  # (groups, draws), a copy: partitioned below
        mean, sd = rows.mean(1), rows.std(1, ddof=1)
        q = row_quantiles(rows, (0.05, 0.5, 0.95))  # = np.quantile, bit for bit (partitions rows)
        out[str(var)] = pd.DataFrame({
            "mean": mean, "sd": sd, "q05": q[0], "q50": q[1], "q95": q[2],
            **{col: np.atleast_1d(np.asarray(diag[col][str(var)])).ravel() for col in DIAGNOSTICS},
        })
    return out


def level_tables(
    idata: Any,
    st: Structure,
    pooling: np.ndarray | None,
    diagnostics: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, pd.DataFrame]:
    """One tidy frame per level: a row per group and parameter (mu, sigma[, level]).

    ``diagnostics``: precomputed :func:`tierpool.fit.diagnostics.summarise` of
    ``idata.posterior`` (so a fit computes them once for tables and gate); computed if omitted.
    """
    spec = st.spec
    summ = _summaries(idata.posterior, diagnostics)
    n_obs = _n_obs(st)
    tables: dict[str, pd.DataFrame] = {}
    for side in (spec.main, spec.additive):
        if side is None:
            continue
        for lv in side.levels:
            ids_frame = _ancestor_ids(st, side, lv.name)
            parts = []
            params = [("mu", f"mu_{lv.name}"), ("sigma", f"sigma_{lv.name}")]
            if lv is spec.main.leaf:
                params.append(("level", f"mu_{lv.name}"))
            for param, var in params:
                if var not in summ:
                    continue
                frame = pd.concat([ids_frame, summ[var]], axis=1)
                frame.insert(len(ids_frame.columns), "parameter", param)
                frame["n_obs"] = n_obs[lv.name]
                if lv is spec.main.leaf and pooling is not None:
                    frame["pooling"] = pooling.reshape(-1, st.n_leaf).mean(0)
                parts.append(frame)
            tables[lv.name] = pd.concat(parts, ignore_index=True)
    if "sigma_residual" in summ:  # a pooled residual sd: level `residual`, parameter `sigma`
        level = spec.residual_level()
        ids = _ancestor_ids(st, spec.main, level.name) if level else pd.DataFrame(index=range(1))
        frame = pd.concat([ids, summ["sigma_residual"]], axis=1)
        frame.insert(len(ids.columns), "parameter", "sigma")
        frame["n_obs"] = n_obs[level.name] if level else float(sum(n_obs[spec.main.leaf.name]))
        tables["residual"] = frame
    if "sigma_cell" in summ:  # the cell interaction's sd: level `cell`, parameter `sigma` (n_obs: measured cells)
        frame = summ["sigma_cell"].assign(parameter="sigma", n_obs=float(len(st.cells)))
        tables["cell"] = frame[["parameter", *_STAT_COLS, "n_obs"]]
    if spec.global_level is not None:
        rows = [("mu", "mu_global"), ("tau", "tau_global")]
        frames = [summ[v].assign(parameter=p) for p, v in rows if v in summ]
        glob = pd.concat(frames, ignore_index=True)
        glob["n_obs"] = float(sum(n_obs[spec.main.leaf.name]))
        tables["global"] = glob[["parameter", *_STAT_COLS, "n_obs"]]
    return tables


def _ancestor_ids(st: Structure, side: Side, level: str) -> pd.DataFrame:
    names = [lv.name for lv in side.levels]
    k = names.index(level)
    idx = np.arange(len(st.ids[level]))
    cols = {side.levels[k].column: st.ids[level]}
    for j in range(k, 0, -1):
        idx = st.parents[names[j]][idx]
        cols[side.levels[j - 1].column] = st.ids[names[j - 1]][idx]
    order = [side.levels[j].column for j in range(k + 1)]
    return pd.DataFrame({c: cols[c] for c in order})


def _n_obs(st: Structure) -> dict[str, np.ndarray]:
    """Sum of n (cells_nms) or number of cells (cells_se) in each group's cells."""
    spec, cells = st.spec, st.cells
    weight = cells[spec.n_col].to_numpy(float) if spec.likelihood == "cells_nms" else np.ones(len(cells))
    out = {}
    for side, cell_idx in ((spec.main, st.cell_leaf), (spec.additive, st.cell_add)):
        if side is None:
            continue
        idx = cell_idx
        for k in range(len(side.levels) - 1, -1, -1):
            name = side.levels[k].name
            out[name] = np.bincount(idx, weight, minlength=len(st.ids[name]))
            if k:
                idx = st.parents[name][idx]
    return out


def location_draws(idata: Any, spec: FitSpec, name: str) -> np.ndarray:
    """Flattened draws ``(B, groups)`` of ``mu_<name>`` or ``sigma_<name>`` (name includes prefix)."""
    x = idata.posterior[name].values
    return x.reshape(x.shape[0] * x.shape[1], -1)
