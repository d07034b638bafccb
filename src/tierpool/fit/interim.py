"""Interim updates: a model's published posterior (or a new model's family prior) updated by the
cells measured after the fit's window, exactly over the stored draws, without sampling.

For each stored draw ``s`` of the published fit, the model's location is conjugate given everything
else: with its parent's draw (μ_f, σ_f), its residual sd σ_m and the region effects μ_g,

    μ_m | cells ~ Normal(b/P, 1/P),  P = 1/σ_f² + Σ_c w_c/s²,  b = μ_f/σ_f² + Σ_c w_c (ȳ_c − μ_g)/s²

(``s² = σ_m² + δ²/12`` with the fit's resolution δ; ``w_c`` the cell's summed row weights, = its
row count ``n_c`` for single requests, which the normaliser ``−n_c ln s`` keeps). The old cells (inside the fit's window) and
the new ones enter the same way. σ_m touches only the model's own cells, so it is integrated out per
draw on a grid (prior HalfNormal(σ_f) × likelihood). The update multiplies each draw by the new
cells' likelihood integrated over μ_m and σ_m, ``w_s = Z(old + new) / Z(old)`` (importance weights:
they reweight μ_f, σ_f and the regions jointly), and draws σ_m and μ_m from their conditional
given old and new cells. Given the stored draws this is exact up to the grid; its Monte Carlo
error shows in the weights' effective sample size. A model the fit never saw has no old cells.

With a cell interaction (the fit has ``sigma_cell``) each cell mean has variance ``s²/W + σ_cell²``
(its weight in P and b is ``1/(s²/W + σ_cell²)``), old and new cells of one region are merged (they
share γ), and the summary's bias of a region adds γ from its conditional given the draw (its prior
``N(0, σ_cell²)`` in a region the model never ran in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tierpool.errors import FitError

_Q = (0.05, 0.95)


@dataclass(frozen=True)
class InterimDraws:
    """Weighted draws of one model's interim posterior."""

    mu: np.ndarray  # (B,) μ_m drawn from its conditional given old and new cells
    sigma: np.ndarray  # (B,) σ_m
    weights: np.ndarray  # (B,) normalised importance weights
    regions: np.ndarray  # (B, G) region effects of the published fit
    region_ids: np.ndarray  # (G,)
    n_new: int
    tau: np.ndarray | None = None  # (B,) σ_cell draws of a cell interaction, else None
    cell_w: np.ndarray | None = None  # (G,) the model's summed row weights per region (old + new; 0: none)
    cell_mean: np.ndarray | None = None  # (G,) its cell means per region

    @property
    def ess(self) -> float:
        """Effective sample size of the weights (Kish)."""
        return float(1.0 / np.sum(self.weights**2))


def _flat(post, name: str) -> np.ndarray:
    x = np.asarray(post[name].values, dtype=float)
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _log_z(cells: dict[str, np.ndarray], mu_f: np.ndarray, var_f: np.ndarray, s2: np.ndarray,
           mu_g: np.ndarray, tau2: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log ∫ Π N(y | μ + μ_g, s) N(μ | μ_f, σ_f²) dμ per draw and grid value of s², with the
    conditional's (mean, precision); shapes ``(b, K)`` for ``b`` draws and a grid of ``K`` values.
    ``tau2`` ``(b,)``: σ_cell² of a cell interaction (each cell's γ integrated out: one cell per region).

    The quadratic term is written as a weighted spread around the conditional mean (the prior
    as one pseudo-observation), which does not cancel when the data are many and precise.
    """
    n, w, ybar, S, g = cells["n"], cells["w"], cells["mean"], cells["S"], cells["g"]
    a0 = (1.0 / var_f)[:, None]  # (b, 1)
    if tau2 is not None:
        return _log_z_cells(n, w, ybar, S, g, a0, mu_f, s2, mu_g, tau2)
    a = w[None, None, :] / s2[:, :, None]  # (b, K, C)
    z = (ybar[None, :] - mu_g[:, g])[:, None, :]  # (b, 1, C): cell means net of their region
    P = a0 + a.sum(-1)
    mean = (a0 * mu_f[:, None] + (a * z).sum(-1)) / P
    spread = a0 * (mu_f[:, None] - mean) ** 2 + (a * (z - mean[..., None]) ** 2).sum(-1)
    within = -(0.5 * n.sum()) * np.log(2 * math.pi * s2) - S.sum() / (2 * s2)
    return within - 0.5 * np.log(var_f[:, None] * P) - 0.5 * spread, mean, P


def _log_z_cells(n, w, ybar, S, g, a0, mu_f, s2, mu_g, tau2):
    """``_log_z`` with γ integrated out: cell weights ``a = 1/(s²/W + σ_cell²)``, the within terms
    ``−(n − C)/2·ln 2πs² − S/(2s²) − ½ Σ ln 2π(s² + W σ_cell²)`` (the additive case at σ_cell = 0)."""
    v_w = s2[:, :, None] + w[None, None, :] * tau2[:, None, None]  # (b, K, C): W·(s²/W + σ_cell²)
    a = w[None, None, :] / v_w
    z = (ybar[None, :] - mu_g[:, g])[:, None, :]
    P = a0 + a.sum(-1)
    mean = (a0 * mu_f[:, None] + (a * z).sum(-1)) / P
    spread = a0 * (mu_f[:, None] - mean) ** 2 + (a * (z - mean[..., None]) ** 2).sum(-1)
    within = (-(0.5 * (n.sum() - len(n))) * np.log(2 * math.pi * s2) - S.sum() / (2 * s2)
              - 0.5 * np.log(2 * math.pi * v_w).sum(-1))
    return within - 0.5 * np.log(P / a0) - 0.5 * spread, mean, P


def _merge_regions(cells: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One cell per region (old and new cells of a region share its γ): exact pairwise merge."""
    g = np.unique(cells["g"])
    idx = np.searchsorted(g, cells["g"])
    w = np.bincount(idx, cells["w"], len(g))
    mean = np.bincount(idx, cells["w"] * cells["mean"], len(g)) / w
    S = np.bincount(idx, cells["S"] + cells["w"] * (cells["mean"] - mean[idx]) ** 2, len(g))
    return {"n": np.bincount(idx, cells["n"], len(g)), "w": w, "mean": mean, "S": S, "g": g}


def _cells(frame: pd.DataFrame, region_index: pd.Index) -> dict[str, np.ndarray]:
    g = region_index.get_indexer(frame["region_id"].astype(str))
    if (g < 0).any():
        missing = sorted(set(frame.loc[g < 0, "region_id"].astype(str)))
        raise FitError(f"interim update: region(s) {missing} are not in the published fit; drop their cells first")
    n = frame["n"].to_numpy(float)
    w = frame["w"].to_numpy(float) if "w" in frame.columns else n  # summed row weights (= n unweighted)
    return {"n": n, "w": w, "mean": frame["mean"].to_numpy(float), "S": frame["S"].to_numpy(float), "g": g}


def _sigma_grid(cells: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A grid in u = log σ (and its trapezoid weights): coarse over [1e-4, 50], fine around the data.

    With many rows σ's conditional posterior is narrow (relative sd ≈ 1/√(2·df)); the fine part
    spans ±8 of those around the within-cell estimate, so the quadrature resolves it.
    """
    coarse = np.linspace(math.log(1e-4), math.log(50.0), 400)
    df = cells["n"].sum() - len(cells["n"])
    parts = [coarse]
    if df > 0 and cells["S"].sum() > 0:
        centre, half = 0.5 * math.log(cells["S"].sum() / df), 8.0 / math.sqrt(2.0 * df)
        parts.append(np.linspace(centre - half, centre + half, 400))
    u = np.unique(np.concatenate(parts))
    du = np.zeros_like(u)
    du[1:] += 0.5 * np.diff(u)
    du[:-1] += 0.5 * np.diff(u)
    return u, du


def interim_draws(post, model_id: str, family_id: str, old_cells: pd.DataFrame, new_cells: pd.DataFrame,
                  resolution: float = 0.0, seed: int = 0, chunk: int = 256) -> InterimDraws:
    """The interim posterior of one model from a published fit's posterior draws.

    The model's σ_m is integrated out per draw on a grid (its prior HalfNormal(σ_f) times the
    likelihood of its cells; σ_m touches nothing else), so the weights do not collapse when many
    new rows pin σ_m down; a σ_m and then μ_m are drawn from that draw's exact conditional.

    Args:
        post: The fit's posterior (``idata.posterior``: sigma_family, mu_family, mu_region).
        model_id, family_id: The model and its family (the family must be in the fit).
        old_cells: The model's cells inside the fit's window (region_id, n, mean, S and
            optionally w, the summed row weights); empty for a model without data in the fit or
            not in it at all.
        new_cells: Its cells measured after the window (same columns), in regions of the fit.
        resolution: The fit's measurement resolution δ (``vars.fit.resolution``).
        seed: Seed of the conditional draws.
    """
    families = pd.Index([str(f) for f in post["family"].values])
    if family_id not in families:
        raise FitError(f"interim update: family {family_id!r} is not in the published fit")
    f = families.get_loc(family_id)
    rng = np.random.default_rng(seed)
    mu_f, sd_f = _flat(post, "mu_family")[:, f], _flat(post, "sigma_family")[:, f]
    region_ids = np.array([str(r) for r in post["region"].values], dtype=object)
    mu_g = _flat(post, "mu_region")
    index = pd.Index(region_ids)
    old, new = _cells(old_cells, index), _cells(new_cells, index)
    both = {k: np.concatenate([old[k], new[k]]) for k in old}
    tau = _flat(post, "sigma_cell").reshape(-1) if "sigma_cell" in post else None
    if tau is not None:  # a cell interaction: a region's old and new rows share its γ
        both = _merge_regions(both)
    u, du = _sigma_grid(both)
    sig = np.exp(u)
    s2_grid = sig**2 + resolution**2 / 12.0
    B = len(mu_f)
    log_w = np.empty(B)
    sigma, mu = np.empty(B), np.empty(B)
    for lo in range(0, B, chunk):
        hi = min(B, lo + chunk)
        sf = sd_f[lo:hi, None]
        # HalfNormal(σ_f) density of σ, times dσ = σ du (trapezoid in u)
        log_prior = 0.5 * math.log(2 / math.pi) - np.log(sf) - 0.5 * (sig / sf) ** 2 + u + np.log(du)
        s2 = np.broadcast_to(s2_grid, (hi - lo, len(u)))
        t2 = None if tau is None else tau[lo:hi] ** 2
        lz_old = _log_z(old, mu_f[lo:hi], sd_f[lo:hi] ** 2, s2, mu_g[lo:hi], t2)[0]
        lz_all, mean, prec = _log_z(both, mu_f[lo:hi], sd_f[lo:hi] ** 2, s2, mu_g[lo:hi], t2)
        joint_all, joint_old = log_prior + lz_all, log_prior + lz_old
        top_all, top_old = joint_all.max(1), joint_old.max(1)
        p_all = np.exp(joint_all - top_all[:, None])
        log_w[lo:hi] = (top_all + np.log(p_all.sum(1))) - (top_old + np.log(np.exp(joint_old - top_old[:, None]).sum(1)))
        cdf = np.cumsum(p_all, 1)
        k = (cdf < rng.random(hi - lo)[:, None] * cdf[:, -1:]).sum(1)  # σ_m from its grid posterior
        rows = np.arange(hi - lo)
        sigma[lo:hi] = sig[k]
        mu[lo:hi] = mean[rows, k] + rng.standard_normal(hi - lo) / np.sqrt(prec[rows, k])
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    if tau is None:
        return InterimDraws(mu, sigma, w, mu_g, region_ids, int(new["n"].sum()))
    cell_w, cell_mean = np.zeros(len(region_ids)), np.zeros(len(region_ids))
    cell_w[both["g"]], cell_mean[both["g"]] = both["w"], both["mean"]
    return InterimDraws(mu, sigma, w, mu_g, region_ids, int(new["n"].sum()), tau, cell_w, cell_mean)


def weighted_quantiles(x: np.ndarray, w: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Quantiles of a weighted sample (midpoint rule on the sorted cumulative weights)."""
    order = np.argsort(x, kind="stable")
    xs, ws = x[order], w[order]
    cum = np.cumsum(ws) - 0.5 * ws
    return [float(np.interp(q, cum, xs)) for q in qs]


def _stats(x: np.ndarray, w: np.ndarray) -> tuple[float, float, float, float]:
    mean = float(np.sum(w * x))
    sd = float(math.sqrt(max(np.sum(w * (x - mean) ** 2), 0.0)))
    q05, q95 = weighted_quantiles(x, w, _Q)
    return mean, sd, q05, q95


def interim_summary(draws: InterimDraws, resolution: float = 0.0, seed: int = 1) -> pd.DataFrame:
    """Per fitted region: the model's interim bias (μ_m + μ_g) and predictive summaries."""
    rng = np.random.default_rng(seed)
    rng_gamma = np.random.default_rng([seed, 611953])  # the cell interaction's own stream
    rows = []
    s = np.sqrt(draws.sigma**2 + resolution**2 / 12.0)
    for j, region in enumerate(draws.region_ids):
        bias = draws.mu + draws.regions[:, j]
        if draws.tau is not None:  # γ of (model, region): its conditional given the draw, or its prior
            prec_data = draws.cell_w[j] / s**2
            prec = 1.0 / draws.tau**2 + prec_data
            bias = bias + prec_data * (draws.cell_mean[j] - bias) / prec + rng_gamma.standard_normal(len(bias)) / np.sqrt(prec)
        pred = bias + s * rng.standard_normal(len(bias))
        b_mean, b_sd, b_q05, b_q95 = _stats(bias, draws.weights)
        p_mean, p_sd, p_q05, p_q95 = _stats(pred, draws.weights)
        rows.append({"region_id": region, "bias_mean": b_mean, "bias_sd": b_sd, "bias_q05": b_q05,
                     "bias_q95": b_q95, "pred_mean": p_mean, "pred_sd": p_sd, "pred_q05": p_q05,
                     "pred_q95": p_q95, "dispersion": float(np.sum(draws.weights * draws.sigma))})
    out = pd.DataFrame(rows)
    out["n_new"] = draws.n_new
    out["weights_ess"] = draws.ess
    return out
