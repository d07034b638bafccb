"""Rows that are averages (issue 12 item 5): a row of weight w_i is a residual of variance σ²/w_i.

A cell then carries n (rows), W = Σ w_i, the weighted mean and S = Σ w_i (y_i − mean)²; its
log-likelihood is ``−n ln σ − [S + W (mean − μ)²]/(2σ²)`` (+ ½ Σ ln w_i): the precision uses W,
the normaliser n. Checked against references that never form these statistics: the dense
multivariate normal density of the literal rows, the PyTensor model (the numba kernel's value and
gradient), the raw rows the averages were made of, and the exact posterior by quadrature.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats
from test_fit_sampling import _mcse_sd

from tierpool.errors import FitError
from tierpool.fit import fast_density
from tierpool.fit.build import build_model
from tierpool.fit.cells_check import validate_cells
from tierpool.fit.compare import cell_log_density, cells_from_rows
from tierpool.fit.gaussian import draw_locations, marginal_loglik_np
from tierpool.fit.spec import FitSpec, Level, Side, default_spec
from tierpool.fit.structure import build_structure

KEYS = ["family_id", "model_id", "region_class_id", "region_id"]


def _weighted_rows(seed: int = 3) -> pd.DataFrame:
    """Average rows of 3 families, 5 models, 4 regions, each averaging 1-40 requests."""
    rng = np.random.default_rng(seed)
    models = {"a": "f1", "b": "f1", "c": "f2", "d": "f3", "e": "f3"}
    regions = {"r1": "c1", "r2": "c1", "r3": "c2", "r4": "c2"}
    out = []
    for model, fam in models.items():
        for region, cls in regions.items():
            if rng.random() < 0.3:
                continue
            k = int(rng.integers(1, 5))
            w = rng.integers(1, 41, k).astype(float) * rng.choice([1.0, 0.5], k)  # fractional too
            out.append(pd.DataFrame({"family_id": fam, "model_id": model, "region_id": region,
                                     "region_class_id": cls, "residual": rng.normal(0.3, 0.5 / np.sqrt(w)),
                                     "weight": w}))
    return pd.concat(out, ignore_index=True)


def _tree_cov(parents: np.ndarray, sds: np.ndarray) -> np.ndarray:
    B = np.eye(len(parents))
    for j, p in enumerate(parents):
        if p >= 0:
            B[j] = B[j] + B[p]
    return B @ np.diag(sds**2) @ B.T


def _dense_row_density(st, rows: pd.DataFrame, theta: np.ndarray) -> float:
    """log N(rows | 0, Z Σ_prior Zᵀ + diag(σ_model²/w_i)): the literal average rows, no cells."""
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
    li = rows["model_id"].map(leaf).to_numpy()
    Z = np.zeros((len(rows), K + M))
    Z[np.arange(len(rows)), K + li] = 1.0
    Z[np.arange(len(rows)), start + rows["region_id"].map(reg).to_numpy()] = 1.0
    noise = theta[st.leaf_scale_src[li]] ** 2 / rows["weight"].to_numpy()
    full = Z @ cov @ Z.T + np.diag(noise)
    return float(stats.multivariate_normal(np.zeros(len(rows)), full).logpdf(rows["residual"].to_numpy()))


def _structure(rows: pd.DataFrame, spec: FitSpec | None = None):
    spec = spec or default_spec()
    cells = cells_from_rows(rows, KEYS)
    return build_structure(validate_cells(cells, spec), spec), cells


def test_cells_from_weighted_rows_are_the_weighted_statistics():
    rows = _weighted_rows()
    cells = cells_from_rows(rows, KEYS)
    for rec in cells.itertuples(index=False):
        part = rows[(rows.model_id == rec.model_id) & (rows.region_id == rec.region_id)]
        y, w = part.residual.to_numpy(), part.weight.to_numpy()
        mean = math.fsum(w * y) / math.fsum(w)
        assert (rec.n, rec.w) == (len(y), pytest.approx(w.sum(), rel=1e-15))
        assert rec.mean == pytest.approx(mean, rel=1e-13, abs=1e-15)
        assert rec.S == pytest.approx(math.fsum(w * (y - mean) ** 2), rel=1e-11, abs=1e-15)
        assert rec.log_w == pytest.approx(np.log(w).sum(), rel=1e-13, abs=1e-13)


def test_weighted_cell_density_equals_the_row_level_sum():
    """The cell formula at fixed (μ, σ) against Σ log N(y_i | μ, σ²/w_i), row by row."""
    rng = np.random.default_rng(2)
    rows = _weighted_rows(7)
    cells = cells_from_rows(rows, KEYS)
    for _ in range(10):
        mu, sigma = rng.normal(0, 1, len(cells)), rng.uniform(0.05, 2.0, len(cells))
        by_cell = cell_log_density(cells.n, cells["mean"], cells.S, mu, sigma, cells.w, cells.log_w).sum()
        at = dict(zip(zip(cells.model_id, cells.region_id), range(len(cells))))
        idx = np.array([at[k] for k in zip(rows.model_id, rows.region_id)])
        by_row = stats.norm.logpdf(rows.residual, mu[idx], sigma[idx] / np.sqrt(rows.weight)).sum()
        assert by_cell == pytest.approx(by_row, rel=1e-12, abs=1e-10)


def test_weighted_marginal_equals_dense_density_of_the_literal_rows():
    rows = _weighted_rows()
    st, _ = _structure(rows)
    const = 0.5 * np.log(rows["weight"]).sum()  # ½ Σ ln w_i: the cells leave this θ-free constant out
    rng = np.random.default_rng(4)
    for _ in range(6):
        theta = rng.uniform(0.05, 1.5, st.n_theta)
        theta[-1] = 1.0
        expected = _dense_row_density(st, rows, theta)
        assert marginal_loglik_np(theta, st) + const == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_kernel_matches_pytensor_on_weighted_cells():
    st, _ = _structure(_weighted_rows())
    arrays = fast_density.density_arrays(st)
    assert not np.allclose(arrays.n_sum, arrays.w_tot)  # the two really differ here
    reference = build_model(st).logp_dlogp_function(ravel_inputs=True)
    reference.set_extra_values({})
    n = len(arrays.prior_kind)
    rng = np.random.default_rng(9)
    offsets = []
    for _ in range(6):
        u = np.log(rng.uniform(0.05, 2.0, n))
        grad = np.empty(n)
        value = fast_density.logp_grad(u, *arrays.args(), grad)
        ref_value, ref_grad = reference(u)
        offsets.append(value - ref_value)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-8, atol=1e-8 * np.abs(ref_grad).max())
    assert np.ptp(offsets) < 1e-7 and abs(offsets[0]) < 1e-6


def test_weights_of_one_change_nothing():
    """A w column equal to n gives bit-identical arrays, densities and draws (unweighted data)."""
    rng = np.random.default_rng(1)
    rows = _weighted_rows().assign(weight=1.0)
    cells = cells_from_rows(rows.drop(columns="weight"), KEYS)
    assert "w" not in cells.columns
    spec = default_spec()
    plain = build_structure(validate_cells(cells, spec), spec)
    with_w = build_structure(validate_cells(cells.assign(w=cells["n"].astype(float)), spec), spec)
    a, b = fast_density.density_arrays(plain), fast_density.density_arrays(with_w)
    for name, value in vars(a).items():
        assert np.array_equal(value, getattr(b, name)), name
    theta = rng.uniform(0.1, 1.5, (5, plain.n_theta))
    assert np.array_equal(marginal_loglik_np(theta, plain), marginal_loglik_np(theta, with_w))
    x1 = draw_locations(theta, plain, np.random.default_rng(3))
    x2 = draw_locations(theta, with_w, np.random.default_rng(3))
    assert all(np.array_equal(p, q) for p, q in zip(x1, x2))


def test_averages_keep_the_raw_rows_location_posterior_and_lose_only_within_average_terms():
    """Averages of exactly normal raw rows: given θ the location posterior is the raw rows' one
    (same draws from the same random stream), and the marginal likelihoods differ only by the
    within-average terms, a function of σ alone: −Σ(w_i−1) ln σ − S_within/(2σ²) − ½Σ(w_i−1) ln 2π
    (log p(raw) = log p(averages) + those terms − ½ Σ ln w_i, and the cells leave out + ½ Σ ln w_i)."""
    rng = np.random.default_rng(5)
    raw = []
    avg = []
    for model, fam in (("a", "f1"), ("b", "f1"), ("c", "f2")):
        for region, cls in (("r1", "c1"), ("r2", "c1"), ("r3", "c2")):
            for _ in range(int(rng.integers(1, 4))):
                w = int(rng.integers(1, 9))
                y = rng.normal(0.2, 0.6, w)
                ids = {"family_id": fam, "model_id": model, "region_id": region, "region_class_id": cls}
                raw.append(pd.DataFrame({**ids, "residual": y}))
                avg.append({**ids, "residual": y.mean(), "weight": float(w), "S_within": ((y - y.mean()) ** 2).sum()})
    raw, avg = pd.concat(raw, ignore_index=True), pd.DataFrame(avg)
    st_raw, _ = _structure(raw)
    st_avg, _ = _structure(avg.drop(columns="S_within"))
    theta = rng.uniform(0.1, 1.5, (6, st_raw.n_theta))
    theta[:, -1] = 1.0
    leaf = {m: i for i, m in enumerate(st_avg.ids["model"])}
    sig = theta[:, st_avg.leaf_scale_src[avg["model_id"].map(leaf).to_numpy()]]  # (B, rows) σ of each average
    w = avg["weight"].to_numpy()
    within = (-(w - 1) * np.log(sig) - avg["S_within"].to_numpy() / (2 * sig**2)).sum(1) \
        - 0.5 * (w - 1).sum() * math.log(2 * math.pi)
    np.testing.assert_allclose(marginal_loglik_np(theta, st_raw), marginal_loglik_np(theta, st_avg) + within,
                               rtol=1e-11, atol=1e-10)
    for x_raw, x_avg in zip(draw_locations(theta, st_raw, np.random.default_rng(8)),
                            draw_locations(theta, st_avg, np.random.default_rng(8))):
        np.testing.assert_allclose(x_raw, x_avg, rtol=1e-10, atol=1e-12)


def test_weights_must_be_positive_and_student_t_refuses_them():
    spec = default_spec()
    cells = cells_from_rows(_weighted_rows(), KEYS)
    with pytest.raises(FitError, match="'w'.*must be positive"):
        validate_cells(cells.assign(w=0.0), spec)
    with pytest.raises(FitError, match="'w' is not numeric|'w' has 1 NaN"):
        validate_cells(cells.assign(w=[np.nan] + [1.0] * (len(cells) - 1)), spec)
    from tierpool.fit import student_t

    rows = _weighted_rows()
    t_spec = FitSpec(main=spec.main, additive=spec.additive, student_t_families=("f1",))
    st = build_structure(validate_cells(cells, t_spec), t_spec)
    with pytest.raises(FitError, match=r"weight != 1.*single-request rows"):
        student_t.prepare(st, rows)
    student_t.prepare(build_structure(validate_cells(cells, t_spec), t_spec), rows.assign(weight=1.0))


# -- the posterior, against quadrature --------------------------------------------------------------


def _exact_posterior(y: np.ndarray, w: np.ndarray) -> dict[str, tuple[float, float]]:
    """σ ~ HalfNormal(0.5), μ ~ N(0, σ), y_i ~ N(μ, σ²/w_i): means and sds of σ and μ by
    quadrature over σ of the row-level likelihood (μ integrated in closed form per row set)."""

    def log_post(sig: float) -> float:
        # ∫ N(μ | 0, σ²) Π_i N(y_i | μ, σ²/w_i) dμ = Π_i N(y_i | 0, σ²/w_i) · e^{b²/2P} / √(σ² P),
        # b = Σ w_i y_i / σ², P = 1/σ² + Σ w_i / σ² (completing the square in μ, row by row)
        b, prec = (w * y).sum() / sig**2, (1 + w.sum()) / sig**2
        rows = stats.norm.logpdf(y, 0.0, sig / np.sqrt(w)).sum()
        return stats.halfnorm.logpdf(sig, scale=0.5) + rows + b * b / (2 * prec) - 0.5 * math.log(prec * sig**2)

    grid = np.geomspace(1e-3, 5, 3000)
    peak = max(grid, key=log_post)
    top = log_post(peak)
    dens = lambda s: math.exp(log_post(s) - top)  # noqa: E731

    def moment(f):
        return integrate.quad(lambda s: f(s) * dens(s), 1e-6, 5, points=[peak], limit=400, epsrel=1e-11)[0]

    z = moment(lambda s: 1.0)
    e_sig, e_sig2 = moment(lambda s: s) / z, moment(lambda s: s * s) / z

    def mu_moments(s: float) -> tuple[float, float]:  # conditional mean and variance of μ given σ
        prec = (1 + w.sum()) / s**2
        return (w * y).sum() / s**2 / prec, 1 / prec

    e_mu = moment(lambda s: mu_moments(s)[0]) / z
    e_mu2 = moment(lambda s: mu_moments(s)[1] + mu_moments(s)[0] ** 2) / z
    return {"sigma": (e_sig, math.sqrt(e_sig2 - e_sig**2)), "mu": (e_mu, math.sqrt(e_mu2 - e_mu**2))}


@pytest.mark.fit
def test_weighted_fit_matches_quadrature():
    """NUTS on one model's weighted cells reproduces the exact posterior (4 Monte Carlo sds)."""
    import arviz as az

    from tierpool.fit import FitSettings, fit_hierarchical

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    rng = np.random.default_rng(11)
    w = np.array([1.0, 3.0, 12.0, 40.0, 2.5, 7.0])
    y = 0.4 + 0.3 * rng.standard_normal(len(w)) / np.sqrt(w)
    rows = pd.DataFrame({"model_id": "m", "residual": y, "weight": w})
    cells = cells_from_rows(rows, ["model_id"])
    spec = FitSpec(main=Side((Level("model", "model_id"),)))
    result = fit_hierarchical(cells, spec, FitSettings(tune=1000, draws=3000, chains=2, progress=False))
    assert result.gate.divergences == 0 and result.gate.max_r_hat < 1.01
    exact = _exact_posterior(y, w)
    post = result.idata.posterior
    for name, var in (("sigma", "sigma_model"), ("mu", "mu_model")):
        x = post[var].values[..., 0]
        mcse_mean = float(np.ravel(az.mcse(x, method="mean"))[0])
        mcse_sd = _mcse_sd(x)
        m, s = exact[name]
        assert abs(x.mean() - m) <= 4 * mcse_mean, (name, x.mean(), m, mcse_mean)
        assert abs(x.std(ddof=1) - s) <= 4 * mcse_sd, (name, x.std(ddof=1), s, mcse_sd)


def test_interim_update_uses_the_weighted_precision():
    """The interim update's integrated likelihood of a model's cells (``interim._log_z``) equals
    log ∫ Π_i N(y_i | μ + μ_g, s²/w_i) N(μ | μ_f, σ_f²) dμ over the literal rows (numerical
    quadrature in μ), up to the constant ½ Σ ln w_i the cells leave out."""
    from tierpool.fit.interim import _cells, _log_z

    rows = _weighted_rows(4)
    rows = rows[rows["model_id"] == "a"]
    cells = cells_from_rows(rows, ["region_id"])
    index = pd.Index(sorted(rows["region_id"].unique()))
    data = _cells(cells, index)
    mu_f, var_f = np.array([0.1]), np.array([0.3**2])
    mu_g = np.array([np.linspace(-0.2, 0.3, len(index))])
    s2 = np.array([[0.04, 0.25]])
    got = _log_z(data, mu_f, var_f, s2, mu_g)[0][0]
    g = index.get_indexer(rows["region_id"])
    for k, s2_k in enumerate(s2[0]):
        def integrand(mu: float) -> float:
            rows_ll = stats.norm.logpdf(rows["residual"], mu + mu_g[0, g], np.sqrt(s2_k / rows["weight"])).sum()
            return math.exp(rows_ll + stats.norm.logpdf(mu, mu_f[0], math.sqrt(var_f[0])) - 20.0)

        val = integrate.quad(integrand, -3, 3, points=[0.3], epsabs=0, epsrel=1e-12, limit=200)[0]
        expected = math.log(val) + 20.0 - 0.5 * np.log(rows["weight"]).sum()
        assert got[k] == pytest.approx(expected, rel=1e-9, abs=1e-9)
