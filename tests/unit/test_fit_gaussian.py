"""The exact marginal likelihood against independent references (no sampling here)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from tierpool.fit.cells_check import validate_cells
from tierpool.fit.gaussian import draw_locations, marginal_loglik_np
from tierpool.fit.spec import (
    FitSpec,
    Level,
    Side,
    default_spec,
    three_level_spec,
)
from tierpool.fit.structure import build_structure
from tierpool.fit.synthetic import draw_synthetic


def _rows_from_cells(cells: pd.DataFrame, rng) -> pd.DataFrame:
    """Literal rows whose (n, mean, S) are arbitrary: used to compare row and cell densities."""
    out = []
    for rec in cells.itertuples(index=False):
        out.append(pd.DataFrame({"model_id": rec.model_id, "region_id": rec.region_id, "y": rng.normal(0.3, 1.1, rec.n)}))
    return pd.concat(out, ignore_index=True)


def test_cell_loglik_equals_row_loglik_to_float_precision():
    rng = np.random.default_rng(3)
    cells = pd.DataFrame({"model_id": ["a", "a", "b"], "region_id": ["x", "y", "x"], "n": [5, 1, 9]})
    rows = _rows_from_cells(cells, rng)
    grp = rows.groupby(["model_id", "region_id"])["y"]
    agg = grp.agg(n="size", mean="mean").reset_index()
    agg["S"] = grp.apply(lambda y: float(((y - y.mean()) ** 2).sum())).to_numpy()
    for _ in range(20):
        mu = {k: rng.normal() for k in agg.itertuples()}
        sigma = {"a": rng.uniform(0.1, 3), "b": rng.uniform(0.1, 3)}
        loc = {(r.model_id, r.region_id): rng.normal(0, 2) for r in agg.itertuples()}
        row_ll = sum(
            stats.norm.logpdf(r.y, loc[(r.model_id, r.region_id)], sigma[r.model_id]).sum()
            for r in rows.itertuples()
        )
        cell_ll = 0.0
        for c in agg.itertuples():
            s = sigma[c.model_id]
            m = loc[(c.model_id, c.region_id)]
            cell_ll += -c.n * math.log(s) - c.S / (2 * s**2) - c.n * (c.mean - m) ** 2 / (2 * s**2)
        const = -0.5 * len(rows) * math.log(2 * math.pi)
        assert cell_ll + const == pytest.approx(row_ll, rel=1e-12, abs=1e-9)
        del mu


def _tree_cov(parents: np.ndarray, sds: np.ndarray) -> np.ndarray:
    """Prior covariance of x with x_j = x_parent(j) + sd_j ε_j (parents before children)."""
    n = len(parents)
    B = np.eye(n)
    for j in range(n):
        if parents[j] >= 0:
            B[j] = B[j] + B[parents[j]]
    return B @ np.diag(sds**2) @ B.T


def _brute_force(st, theta: np.ndarray) -> float:
    """Dense Gaussian marginal of the cell means (+ the within-cell terms), no Schur, no Cholesky tricks."""
    spec, cells = st.spec, st.cells
    K, M = st.n_kept, st.n_leaf
    parents = np.concatenate([st.kept_parent, st.leaf_parent])
    src = np.concatenate([st.kept_sd_src, st.leaf_sd_src])
    sds = theta[src]
    cov = _tree_cov(parents, sds)
    if spec.additive is not None and spec.additive.sum_to_zero:
        start = st.kept_offset[spec.additive.leaf.name]
        c = np.zeros(K + M)
        c[start:start + st.n_add_leaf] = 1.0
        sc = cov @ c
        cov = cov - np.outer(sc, sc) / (c @ sc)  # condition on Σ regions = 0
    Z = np.zeros((len(cells), K + M))
    Z[np.arange(len(cells)), K + st.cell_leaf] = 1.0
    if spec.additive is not None:
        Z[np.arange(len(cells)), st.kept_offset[spec.additive.leaf.name] + st.cell_add] = 1.0
    sig = theta[st.leaf_scale_src[st.cell_leaf]]
    n = cells["n"].to_numpy(float)
    S = cells["S"].to_numpy(float)
    marg = stats.multivariate_normal(np.zeros(len(cells)), Z @ cov @ Z.T + np.diag(sig**2 / n), allow_singular=True)
    within = -(n - 1) / 2 * np.log(2 * np.pi * sig**2) - 0.5 * np.log(n) - S / (2 * sig**2)
    return float(marg.logpdf(cells["mean"].to_numpy()) + within.sum())


@pytest.mark.parametrize("make_spec", [default_spec, lambda: default_spec(global_level=True), three_level_spec])
@pytest.mark.parametrize("sum_to_zero", [True, False])
def test_marginal_matches_dense_gaussian(make_spec, sum_to_zero):
    spec = make_spec()
    spec = FitSpec(main=spec.main, additive=Side(spec.additive.levels, sum_to_zero=sum_to_zero),
                   global_level=spec.global_level)
    sizes = {"family": 3, "architecture": 4, "model": 7, "region_class": 2, "region": 5}
    syn = draw_synthetic(11, rows=400, spec=spec, sizes=sizes)
    st = build_structure(validate_cells(syn.cells, spec), spec, syn.catalogue)
    rng = np.random.default_rng(5)
    for _ in range(4):
        theta = rng.uniform(0.2, 1.5, st.n_theta)
        assert marginal_loglik_np(theta, st) == pytest.approx(_brute_force(st, theta), rel=1e-9, abs=1e-7)


def test_marginal_matches_numerical_integration_of_literal_joint():
    """One model, two regions (sum to zero): integrate the row-level joint density over (μ_m, z)."""
    spec = FitSpec(
        main=Side((Level("model", "model_id"),)),
        additive=Side((Level("region", "region_id"),), sum_to_zero=True),
    )
    rng = np.random.default_rng(8)
    rows = pd.DataFrame({"model_id": "m", "region_id": ["x"] * 4 + ["y"] * 3, "y": rng.normal(0.5, 0.8, 7)})
    grp = rows.groupby(["model_id", "region_id"])["y"]
    cells = grp.agg(n="size", mean="mean").reset_index()
    cells["S"] = grp.apply(lambda y: float(((y - y.mean()) ** 2).sum())).to_numpy()
    st = build_structure(validate_cells(cells, spec), spec)
    s_model, s_x, s_y = 0.7, 0.4, 0.9  # θ = (σ_model, σ_region[x], σ_region[y]) (+ const)
    theta = np.array([s_model, s_x, s_y, 1.0])
    # conditioned prior on the line μ_x = −μ_y = z/√2, normalised numerically (independent of the
    # determinant identity used by the implementation)
    raw = lambda z: stats.norm.pdf(z / math.sqrt(2), 0, s_x) * stats.norm.pdf(-z / math.sqrt(2), 0, s_y)
    norm_z = integrate.quad(raw, -np.inf, np.inf)[0]
    y = rows["y"].to_numpy()
    sign = np.where(rows["region_id"] == "x", 1.0, -1.0) / math.sqrt(2)

    def joint(z, mu):
        like = np.exp(stats.norm.logpdf(y, mu + sign * z, s_model).sum())
        return like * stats.norm.pdf(mu, 0, s_model) * raw(z) / norm_z

    val, err = integrate.dblquad(joint, -6, 6, -6, 6, epsabs=1e-14, epsrel=1e-10)
    assert marginal_loglik_np(theta, st) == pytest.approx(math.log(val), abs=1e-6)


def test_conditional_draws_match_dense_posterior_moments():
    spec = default_spec()
    sizes = {"family": 2, "model": 5, "region_class": 2, "region": 4}
    syn = draw_synthetic(2, rows=300, spec=spec, sizes=sizes)
    st = build_structure(validate_cells(syn.cells, spec), spec, syn.catalogue)
    theta = np.random.default_rng(1).uniform(0.3, 1.2, st.n_theta)
    xk, xm = draw_locations(np.tile(theta, (40_000, 1)), st, np.random.default_rng(2))
    assert np.abs(xk[:, -st.n_add_leaf:].sum(1)).max() < 1e-10  # regions sum to zero exactly
    # dense reference: posterior of x given θ with the conditioned prior
    K, M = st.n_kept, st.n_leaf
    cov = _tree_cov(np.concatenate([st.kept_parent, st.leaf_parent]), theta[np.concatenate([st.kept_sd_src, st.leaf_sd_src])])
    c = np.zeros(K + M)
    c[K - st.n_add_leaf:K] = 1.0
    sc = cov @ c
    cov = cov - np.outer(sc, sc) / (c @ sc)
    Z = np.zeros((len(st.cells), K + M))
    Z[np.arange(len(st.cells)), K + st.cell_leaf] = 1.0
    Z[np.arange(len(st.cells)), K - st.n_add_leaf + st.cell_add] = 1.0
    noise = theta[st.leaf_scale_src[st.cell_leaf]] ** 2 / st.cells["n"].to_numpy()
    gain = cov @ Z.T @ np.linalg.inv(Z @ cov @ Z.T + np.diag(noise))
    post_mean = gain @ st.cells["mean"].to_numpy()
    post_sd = np.sqrt(np.clip(np.diag(cov - gain @ Z @ cov), 0, None))
    draws = np.hstack([xk, xm])
    mcse = post_sd / math.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(0) - post_mean) <= 5 * mcse + 1e-12)
    ok = post_sd > 1e-8
    assert np.allclose(draws.std(0)[ok], post_sd[ok], rtol=0.03)
