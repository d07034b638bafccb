"""The measurement-resolution floor (docs/fit.md, "Constant series and the resolution floor").

With ``FitSpec.resolution = δ`` every observed residual is the true one plus Normal(0, δ²/12), so
the cells' likelihood uses ``√(σ² + δ²/12)``. Checked against independent references: the dense
Gaussian density of the literal rows (no sufficient statistics, no Schur complement), the PyTensor
model (value and gradient of the numba kernel), and the exact posterior of σ by quadrature for a
constant series (S = 0), whose posterior is improper without the floor.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from tierpool.errors import FitError
from tierpool.fit import fast_density
from tierpool.fit.build import build_model
from tierpool.fit.cells_check import validate_cells
from tierpool.fit.gaussian import marginal_loglik_np
from tierpool.fit.spec import FitSpec, Level, Side, default_spec
from tierpool.fit.structure import build_structure

DELTA = 0.05  # large, so that the floor's effect is far above the tolerances


def _tree_cov(parents: np.ndarray, sds: np.ndarray) -> np.ndarray:
    """Prior covariance of x with x_j = x_parent(j) + sd_j ε_j (parents before children)."""
    B = np.eye(len(parents))
    for j, p in enumerate(parents):
        if p >= 0:
            B[j] = B[j] + B[p]
    return B @ np.diag(sds**2) @ B.T


def _rows() -> pd.DataFrame:
    """Literal residual rows: model 'flat' repeats one value 10 times (S = 0) in one region."""
    rng = np.random.default_rng(12)
    out = [pd.DataFrame({"family_id": "f1", "model_id": "flat", "region_id": "r1", "region_class_id": "c1",
                         "y": np.full(10, 0.42)})]
    for model, fam in (("a", "f1"), ("b", "f2"), ("c", "f2")):
        for region, cls in (("r1", "c1"), ("r2", "c1"), ("r3", "c2")):
            k = int(rng.integers(1, 5))
            out.append(pd.DataFrame({"family_id": fam, "model_id": model, "region_id": region,
                                     "region_class_id": cls, "y": rng.normal(0.2, 0.6, k)}))
    return pd.concat(out, ignore_index=True)


def _cells(rows: pd.DataFrame) -> pd.DataFrame:
    keys = ["family_id", "model_id", "region_class_id", "region_id"]
    grp = rows.groupby(keys)["y"]
    cells = grp.agg(n="size", mean="mean").reset_index()
    cells["S"] = grp.apply(lambda y: float(((y - y.mean()) ** 2).sum())).to_numpy()
    return cells


def _structure(delta: float):
    spec = replace(default_spec(), resolution=delta)
    rows = _rows()
    return build_structure(validate_cells(_cells(rows), spec), spec), rows


def _row_density(st, rows: pd.DataFrame, theta: np.ndarray, delta: float) -> float:
    """Dense MVN density of every literal row: Z Σ_prior Zᵀ + diag(σ_model² + δ²/12)."""
    K, M = st.n_kept, st.n_leaf
    parents = np.concatenate([st.kept_parent, st.leaf_parent])
    cov = _tree_cov(parents, theta[np.concatenate([st.kept_sd_src, st.leaf_sd_src])])
    start = st.kept_offset["region"]
    c = np.zeros(K + M)
    c[start:start + st.n_add_leaf] = 1.0
    sc = cov @ c
    cov = cov - np.outer(sc, sc) / (c @ sc)  # regions conditioned on summing to zero
    leaf = {m: i for i, m in enumerate(st.ids["model"])}
    reg = {g: i for i, g in enumerate(st.ids["region"])}
    Z = np.zeros((len(rows), K + M))
    li = rows["model_id"].map(leaf).to_numpy()
    Z[np.arange(len(rows)), K + li] = 1.0
    Z[np.arange(len(rows)), start + rows["region_id"].map(reg).to_numpy()] = 1.0
    noise = theta[st.leaf_scale_src[li]] ** 2 + delta**2 / 12
    full = Z @ cov @ Z.T + np.diag(noise)
    return float(stats.multivariate_normal(np.zeros(len(rows)), full).logpdf(rows["y"].to_numpy()))


@pytest.mark.parametrize("delta", [0.0, DELTA])
def test_cell_marginal_with_floor_equals_dense_row_density(delta):
    if delta == 0.0:
        with pytest.raises(FitError, match=r"constant residuals \(S = 0\): flat \(10 rows in 1 cell"):
            _structure(delta)
        return
    st, rows = _structure(delta)
    rng = np.random.default_rng(4)
    for _ in range(4):
        theta = rng.uniform(0.05, 1.2, st.n_theta)
        theta[-1] = 1.0
        theta[st.leaf_scale_src[list(st.ids["model"]).index("flat")]] = rng.choice([1e-6, 1e-3, 0.3])
        expected = _row_density(st, rows, theta, delta)
        assert marginal_loglik_np(theta, st) == pytest.approx(expected, rel=1e-9, abs=1e-7)


def test_kernel_with_floor_matches_pytensor_value_and_gradient():
    st, _ = _structure(DELTA)
    arrays = fast_density.density_arrays(st)
    assert arrays.tau2 == pytest.approx(DELTA**2 / 12)
    model = build_model(st)
    reference = model.logp_dlogp_function(ravel_inputs=True)
    reference.set_extra_values({})
    n = len(arrays.prior_kind)
    rng = np.random.default_rng(9)
    offsets = []
    for tiny in (False, False, False, True):
        u = np.log(rng.uniform(0.05, 2.0, n))
        if tiny:
            u[:] = np.log(1e-6)  # every scale far below the floor
        grad = np.empty(n)
        value = fast_density.logp_grad(u, *arrays.args(), grad)
        ref_value, ref_grad = reference(u)
        offsets.append(value - ref_value)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-8, atol=1e-8 * np.abs(ref_grad).max())
    assert np.ptp(offsets) < 1e-7
    assert (arrays.u_lo == fast_density.U_MIN).all()  # the floor bounds the weights: no pinning limit


def _one_model_spec(delta: float) -> FitSpec:
    return FitSpec(main=Side((Level("model", "model_id"),)), resolution=delta)


def _exact_sigma_posterior(n: int, mean: float, S: float, delta: float) -> tuple[float, float, float]:
    """E[σ], sd[σ], E[log σ] of σ ~ HalfNormal(0.5), μ ~ N(0, σ), y_i ~ N(μ, σ² + δ²/12), by quadrature."""
    tau2 = delta**2 / 12

    def log_post(sig: float) -> float:
        s2 = sig * sig + tau2
        marg = stats.norm.logpdf(mean, 0.0, math.sqrt(sig * sig + s2 / n))
        within = -(n - 1) / 2 * math.log(s2) - S / (2 * s2)
        return stats.halfnorm.logpdf(sig, scale=0.5) + marg + within

    grid_peak = max(np.geomspace(1e-8, 3, 4000), key=log_post)
    peak = log_post(grid_peak)
    dens = lambda s: math.exp(log_post(s) - peak)  # noqa: E731
    pts = [grid_peak, math.sqrt(tau2)]
    z = integrate.quad(dens, 0, 5, points=pts, limit=400, epsabs=0, epsrel=1e-11)[0]
    m1 = integrate.quad(lambda s: s * dens(s), 0, 5, points=pts, limit=400, epsabs=0, epsrel=1e-11)[0] / z
    m2 = integrate.quad(lambda s: s * s * dens(s), 0, 5, points=pts, limit=400, epsabs=0, epsrel=1e-11)[0] / z
    ml = integrate.quad(lambda s: math.log(s) * dens(s), 1e-14, 5, points=pts, limit=400, epsabs=0, epsrel=1e-11)[0] / z
    return m1, math.sqrt(m2 - m1 * m1), ml


@pytest.mark.fit
def test_constant_series_posterior_matches_quadrature():
    """Ten equal residuals (S = 0) at 0: without the floor the posterior of σ is ∝ σ^-9 near 0
    (improper); with it, NUTS reproduces the exact posterior of σ, which sits at the floor's scale."""
    import arviz as az

    from tierpool.fit import FitSettings, fit_hierarchical

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    cells = pd.DataFrame({"model_id": ["flat"], "n": [10], "mean": [0.0], "S": [0.0]})
    with pytest.raises(FitError, match="flat"):
        validate_cells(cells, _one_model_spec(0.0))
    delta = 1e-3
    result = fit_hierarchical(cells, _one_model_spec(delta), FitSettings(tune=1000, draws=4000, chains=2, progress=False))
    assert result.gate.divergences == 0 and result.gate.max_r_hat < 1.01
    sig = result.idata.posterior["sigma_model"].values[..., 0]
    e_sig, sd_sig, e_log = _exact_sigma_posterior(10, 0.0, 0.0, delta)
    ess = az.ess(result.idata, var_names=["sigma_model"])["sigma_model"].values.min()
    ess_log = float(az.ess(np.log(sig)))
    mcse = sd_sig / math.sqrt(ess)
    assert abs(sig.mean() - e_sig) < 4 * mcse, (sig.mean(), e_sig, mcse)
    log_sd = float(np.log(sig).std())
    assert abs(np.log(sig).mean() - e_log) < 4 * log_sd / math.sqrt(ess_log), (np.log(sig).mean(), e_log)
    # the floor sets the scale: σ sits at the resolution sd δ/√12 (≈ 2.9e-4), not at 0 and not at ~0.1
    assert 0.2 * delta / math.sqrt(12) < e_sig < 5 * delta / math.sqrt(12)
