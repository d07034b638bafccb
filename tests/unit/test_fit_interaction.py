"""The model × region interaction γ_mr ~ Normal(0, σ_cell) (issue 11 item 6), against references
that never use the Schur-reduced system: the dense multivariate normal density of the literal rows
(with γ shared by a cell's rows), the PyTensor model (the numba kernel's value and gradient), the
dense Gaussian posterior of (x, γ) given θ, and the exact posterior by 2-D quadrature over
(σ, σ_cell) of the dense row density (NUTS within 4 Monte Carlo standard errors).
"""

from __future__ import annotations

import math
import os
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_fit_weighted_rows import KEYS, _tree_cov, _weighted_rows

from tierpool.errors import FitError
from tierpool.fit import fast_density, spec_from_config
from tierpool.fit.build import build_model
from tierpool.fit.cells_check import validate_cells
from tierpool.fit.compare import cells_from_rows
from tierpool.fit.gaussian import draw_locations, marginal_loglik_np
from tierpool.fit.interaction import CellData, gamma_moments
from tierpool.fit.spec import default_spec
from tierpool.fit.structure import build_structure


def _structure(rows: pd.DataFrame, spec=None):
    spec = spec or default_spec(global_level=True, cell_interaction=True)
    return build_structure(validate_cells(cells_from_rows(rows, KEYS), spec), spec)


def _prior_cov(st, theta: np.ndarray) -> np.ndarray:
    """Prior covariance of (kept, leaf) locations, regions conditioned on summing to zero."""
    K, M = st.n_kept, st.n_leaf
    cov = _tree_cov(np.concatenate([st.kept_parent, st.leaf_parent]),
                    theta[np.concatenate([st.kept_sd_src, st.leaf_sd_src])])
    start = st.kept_offset["region"]
    c = np.zeros(K + M)
    c[start:start + st.n_add_leaf] = 1.0
    sc = cov @ c
    return cov - np.outer(sc, sc) / (c @ sc)


def _design(st, rows: pd.DataFrame):
    """Z (rows × locations) and each row's cell index and leaf index."""
    K, M = st.n_kept, st.n_leaf
    start = st.kept_offset["region"]
    li = rows["model_id"].map({m: i for i, m in enumerate(st.ids["model"])}).to_numpy()
    gi = rows["region_id"].map({g: i for i, g in enumerate(st.ids["region"])}).to_numpy()
    Z = np.zeros((len(rows), K + M))
    Z[np.arange(len(rows)), K + li] = 1.0
    Z[np.arange(len(rows)), start + gi] = 1.0
    return Z, li, gi


def _row_cov(st, rows: pd.DataFrame, theta: np.ndarray) -> np.ndarray:
    """Cov of the literal rows: Z Σ Zᵀ + σ_cell²·[same cell] + diag(σ_m²/w_i)."""
    Z, li, gi = _design(st, rows)
    same = (li[:, None] == li[None, :]) & (gi[:, None] == gi[None, :])
    w = rows["weight"].to_numpy() if "weight" in rows.columns else np.ones(len(rows))
    noise = theta[st.leaf_scale_src[li]] ** 2 / w
    return Z @ _prior_cov(st, theta) @ Z.T + theta[st.cell_sd_src] ** 2 * same + np.diag(noise)


def test_marginal_equals_dense_density_of_the_literal_rows():
    rows = _weighted_rows()  # weighted rows too: γ and the weights together
    st = _structure(rows)
    assert st.cell_sd_src >= 0
    rng = np.random.default_rng(1)
    const = 0.5 * np.log(rows["weight"]).sum()
    for _ in range(6):
        theta = rng.uniform(0.05, 1.5, st.n_theta)
        theta[-1] = 1.0
        dense = stats.multivariate_normal(np.zeros(len(rows)), _row_cov(st, rows, theta)).logpdf(rows["residual"])
        assert marginal_loglik_np(theta, st) + const == pytest.approx(dense, rel=1e-10, abs=1e-10)


def test_a_vanishing_interaction_is_the_additive_model():
    rows = _weighted_rows(5)
    with_cell = _structure(rows)
    additive = _structure(rows, default_spec(global_level=True))
    theta = np.random.default_rng(2).uniform(0.1, 1.2, with_cell.n_theta)
    theta[-1] = 1.0
    theta[with_cell.cell_sd_src] = 1e-9
    keep = np.delete(np.arange(with_cell.n_theta), with_cell.cell_sd_src)
    assert marginal_loglik_np(theta, with_cell) == pytest.approx(marginal_loglik_np(theta[keep], additive), abs=1e-9)


@pytest.mark.parametrize("global_level", [True, False])
def test_kernel_matches_pytensor_value_and_gradient(global_level):
    st = _structure(_weighted_rows(), default_spec(global_level=global_level, cell_interaction=True))
    arrays = fast_density.density_arrays(st)
    reference = build_model(st).logp_dlogp_function(ravel_inputs=True)
    reference.set_extra_values({})
    n = len(arrays.prior_kind)
    rng = np.random.default_rng(3)
    offsets = []
    for scale in (1.0, 1.0, 1.0, 1.0, 1e-3, 30.0):  # σ_cell small and large too
        u = np.log(rng.uniform(0.05, 2.0, n))
        u[st.cell_sd_src] += math.log(scale)
        grad = np.empty(n)
        kernel, args = arrays.kernel()
        assert kernel is not fast_density.logp_grad  # the interaction's own kernel
        value = kernel(u, *args, grad)
        ref_value, ref_grad = reference(u)
        offsets.append(value - ref_value)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-10 * np.abs(ref_grad).max())
    # a constant offset only (PyMC's float32 rounding of the HalfNormal normaliser, as without γ)
    assert np.ptp(offsets) < 1e-7 and abs(offsets[0]) < 1e-6


def test_location_and_gamma_draws_match_the_dense_posterior():
    """Given θ: the draws of every location (MC, 5 MCSE) and γ's moments composed with them
    (exact: γ's conditional mean is linear in the locations) against the dense joint posterior."""
    rows = _weighted_rows(9)
    st = _structure(rows, default_spec(cell_interaction=True))
    theta = np.random.default_rng(4).uniform(0.3, 1.0, st.n_theta)
    theta[-1] = 1.0
    xk, xm = draw_locations(np.tile(theta, (40_000, 1)), st, np.random.default_rng(5))
    Z, li, gi = _design(st, rows)
    cells = sorted(set(zip(li, gi)))
    C = np.array([[1.0 if (a, b) == cell else 0.0 for cell in cells] for a, b in zip(li, gi)])  # rows × cells
    tau = theta[st.cell_sd_src]
    prior = np.zeros((Z.shape[1] + len(cells),) * 2)  # joint prior of (x, γ)
    prior[:Z.shape[1], :Z.shape[1]] = _prior_cov(st, theta)
    prior[Z.shape[1]:, Z.shape[1]:] = tau**2 * np.eye(len(cells))
    D = np.hstack([Z, C])
    noise = np.diag(theta[st.leaf_scale_src[li]] ** 2 / rows["weight"].to_numpy())
    gain = prior @ D.T @ np.linalg.inv(D @ prior @ D.T + noise)
    post_mean = gain @ rows["residual"].to_numpy()
    post_cov = prior - gain @ D @ prior
    nx = Z.shape[1]
    draws = np.hstack([xk, xm])
    sd = np.sqrt(np.clip(np.diag(post_cov)[:nx], 0, None))
    assert np.all(np.abs(draws.mean(0) - post_mean[:nx]) <= 5 * sd / math.sqrt(len(draws)) + 1e-12)
    ok = sd > 1e-8
    assert np.allclose(draws.std(0)[ok], sd[ok], rtol=0.03)
    # γ | x: mean linear in x, so E[γ] = m(E[x]) and Var γ = E[var] + Var(m(x)), from the dense x posterior
    K = st.n_kept
    start = st.kept_offset["region"]
    data = CellData(st)
    m_idx, g_idx = np.array([c[0] for c in cells]), np.array([c[1] for c in cells])
    A = np.zeros((len(cells), nx))  # μ_m + μ_g of each cell as a linear map of x
    A[np.arange(len(cells)), K + m_idx] = 1.0
    A[np.arange(len(cells)), start + g_idx] = 1.0
    sd_m = np.tile(theta[st.leaf_scale_src[m_idx]], (1, 1))
    mean0, var = gamma_moments(data, m_idx, g_idx, (A @ post_mean[:nx])[None, :], sd_m, np.array([tau]))
    slope = -(data.W[m_idx, g_idx] / sd_m[0] ** 2) * var[0]  # ∂ mean / ∂(μ_m + μ_g)
    g_var = var[0] + slope**2 * np.diag(A @ post_cov[:nx, :nx] @ A.T)
    np.testing.assert_allclose(mean0[0], post_mean[nx:], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g_var, np.diag(post_cov)[nx:], rtol=1e-9, atol=1e-14)


def test_configuration_and_refusals():
    spec = spec_from_config({"levels": [{"name": "family", "column": "family_id"}, {"name": "model", "column": "model_id"}],
                             "additive": {"sum_to_zero": True, "levels": [{"name": "region", "column": "region_id"}]},
                             "interaction": {"prior": "halfcauchy(0.3)"}})
    assert str(spec.cell_interaction) == "halfcauchy(0.3)"
    with pytest.raises(FitError, match="interaction.prior"):
        spec_from_config({"levels": [{"name": "model", "column": "model_id"}], "interaction": {"prior": "normal(0, 1)"}})
    with pytest.raises(FitError, match="needs an additive side"):
        spec_from_config({"levels": [{"name": "model", "column": "model_id"}], "interaction": {}})
    with pytest.raises(FitError, match="did you mean 'interaction'"):
        spec_from_config({"levels": [{"name": "model", "column": "model_id"}], "interactions": {}})
    with pytest.raises(FitError, match="cannot be combined"):
        validate_cells(cells_from_rows(_weighted_rows(), KEYS),
                       replace(default_spec(cell_interaction=True), student_t_families=("f1",)))


# -- the posterior, against 2-D quadrature ----------------------------------------------------------

CROSSED = {
    "levels": [{"name": "model", "column": "model_id", "location": "normal(0, 1)"}],
    "additive": {"sum_to_zero": True, "levels": [{"name": "region", "column": "region_id", "location": "normal(0, 0.5)"}]},
    "residual_sd": {"pooling": "shared", "prior": "halfnormal(1)"},
    "interaction": {"prior": "halfnormal(0.5)"},
}


def _crossed_rows() -> pd.DataFrame:
    """3 models × 3 regions, 7 cells measured (m2 never ran on r3, m3 never on r1), σ = 0.3, σ_cell = 0.4."""
    rng = np.random.default_rng(21)
    mu_m = {"m1": 0.5, "m2": -0.2, "m3": 0.1}
    mu_g = {"r1": 0.3, "r2": -0.1, "r3": -0.2}
    out = []
    for m in mu_m:
        for g in mu_g:
            if (m, g) in (("m2", "r3"), ("m3", "r1")):
                continue
            k = int(rng.integers(3, 7))
            y = mu_m[m] + mu_g[g] + rng.normal(0, 0.4) + rng.normal(0, 0.3, k)
            out.append(pd.DataFrame({"model_id": m, "region_id": g, "residual": y}))
    return pd.concat(out, ignore_index=True)


def _quadrature(st, rows: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Posterior moments on a 2-D grid over (log σ, log σ_cell) of prior × dense row density;
    γ of cell (m1, r1) and the bias μ_m2 + μ_r3 + γ of the never-measured pair by dense Gaussian
    conditioning at each grid point."""
    y = rows["residual"].to_numpy()
    Z, li, gi = _design(st, rows)
    i_s = st.leaf_scale_src[0]
    u = np.linspace(math.log(0.05), math.log(1.5), 90)
    v = np.linspace(math.log(0.01), math.log(3.0), 110)
    K = st.n_kept
    start = st.kept_offset["region"]
    models, regions = list(st.ids["model"]), list(st.ids["region"])
    a_unmeasured = np.zeros(Z.shape[1])
    a_unmeasured[K + models.index("m2")] = a_unmeasured[start + regions.index("r3")] = 1.0
    in_cell = ((li == models.index("m1")) & (gi == regions.index("r1"))).astype(float)
    logp, g_mean, g_var, b_mean, b_var = (np.zeros((len(u), len(v))) for _ in range(5))
    for i, ui in enumerate(u):
        for j, vj in enumerate(v):
            theta = np.ones(st.n_theta)
            theta[st.n_theta - len(st.theta_const):] = st.theta_const  # the fixed location sds (1, 0.5)
            theta[i_s], theta[st.cell_sd_src] = math.exp(ui), math.exp(vj)
            cov = _row_cov(st, rows, theta)
            inv = np.linalg.inv(cov)
            logp[i, j] = (stats.multivariate_normal(np.zeros(len(y)), cov).logpdf(y) + ui + vj
                          + stats.halfnorm.logpdf(math.exp(ui), scale=1.0) + stats.halfnorm.logpdf(math.exp(vj), scale=0.5))
            cg = theta[st.cell_sd_src] ** 2 * in_cell  # Cov(γ_m1r1, y)
            g_mean[i, j], g_var[i, j] = cg @ inv @ y, theta[st.cell_sd_src] ** 2 - cg @ inv @ cg
            cb = a_unmeasured @ _prior_cov(st, theta) @ Z.T  # Cov(μ_m2 + μ_r3, y); its γ is independent of y
            b_mean[i, j] = cb @ inv @ y
            b_var[i, j] = a_unmeasured @ _prior_cov(st, theta) @ a_unmeasured - cb @ inv @ cb + theta[st.cell_sd_src] ** 2
    p = np.exp(logp - logp.max())
    p /= p.sum()
    sig, tau = np.exp(u)[:, None] + 0 * p, np.exp(v)[None, :] + 0 * p

    def moments(mean, var=0.0):
        m = (p * mean).sum()
        return m, math.sqrt((p * (var + mean**2)).sum() - m * m)

    return {"sigma": moments(sig), "tau": moments(tau), "gamma": moments(g_mean, g_var),
            "bias_unmeasured": moments(b_mean, b_var)}


@pytest.mark.fit
def test_crossed_design_posterior_matches_quadrature():
    import arviz as az
    from test_fit_sampling import _mcse_sd

    from tierpool.fit import FitSettings, fit_hierarchical

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    rows = _crossed_rows()
    spec = spec_from_config(CROSSED)
    cells = cells_from_rows(rows, ["model_id", "region_id"])
    result = fit_hierarchical(cells, spec, FitSettings(tune=1000, draws=3000, chains=2, progress=False))
    assert result.gate.divergences == 0 and result.gate.max_r_hat < 1.01
    st = result.structure
    exact = _quadrature(st, rows)
    post = result.idata.posterior
    shape = (post.sizes["chain"], post.sizes["draw"])
    sig = post["sigma_residual"].values.reshape(shape)
    tau = post["sigma_cell"].values.reshape(shape)
    # γ of the measured cell (m1, r1), drawn from its conditional given each draw
    models, regions = list(st.ids["model"]), list(st.ids["region"])
    mu = post["mu_model"].sel(model="m1").values + post["mu_region"].sel(region="r1").values
    g_mean, g_var = gamma_moments(CellData(st), np.array([models.index("m1")]), np.array([regions.index("r1")]),
                                  mu.reshape(-1, 1), sig.reshape(-1, 1), tau.reshape(-1))
    gamma = (g_mean + np.sqrt(g_var) * np.random.default_rng(0).standard_normal(g_mean.shape)).reshape(sig.shape)
    for name, x in (("sigma", sig), ("tau", tau), ("gamma", gamma)):
        m, s = exact[name]
        mcse_mean = float(np.ravel(az.mcse(x, method="mean"))[0])
        assert abs(x.mean() - m) <= 4 * mcse_mean, (name, x.mean(), m, mcse_mean)
        assert abs(x.std(ddof=1) - s) <= 4 * _mcse_sd(x), (name, x.std(ddof=1), s, _mcse_sd(x))
    # the never-measured pair (m2, r3): the published bias row carries σ_cell² on top of the sides
    row = result.predictive.query("kind == 'bias_model_region' and model_id == 'm2' and region_id == 'r3'").iloc[0]
    loc = post["mu_model"].sel(model="m2").values + post["mu_region"].sel(region="r3").values
    ess = float(np.ravel(az.ess(loc))[0])
    m, s = exact["bias_unmeasured"]
    assert abs(row["mean"] - m) <= 4 * s / math.sqrt(ess), (row["mean"], m)
    assert abs(row["sd"] - s) <= 4 * s / math.sqrt(2 * ess), (row["sd"], s)
    assert row["sd"] > float(loc.std())  # wider than the additive sides alone


def test_interim_update_integrates_gamma_per_region():
    """The interim update's integrated likelihood with σ_cell (``interim._log_z``, one merged cell
    per region) against quadrature in μ of the literal rows, each region's rows sharing one γ
    (a dense normal per region), up to the constant ½ Σ ln w_i."""
    from scipy import integrate

    from tierpool.fit.interim import _cells, _log_z, _merge_regions

    rows = _weighted_rows(4)
    rows = rows[rows["model_id"] == "a"]
    index = pd.Index(sorted(rows["region_id"].unique()))
    split = rows.assign(part=np.arange(len(rows)) % 2)  # old and new cells of the same regions, merged
    parts = [cells_from_rows(split[split.part == k], ["region_id"]) for k in (0, 1)]
    data = _merge_regions({k: np.concatenate([_cells(p, index)[k] for p in parts]) for k in ("n", "w", "mean", "S", "g")})
    mu_f, var_f, tau = 0.1, 0.3**2, 0.25
    mu_g = np.linspace(-0.2, 0.3, len(index))
    for s2 in (0.04, 0.25):
        got = _log_z(data, np.array([mu_f]), np.array([var_f]), np.array([[s2]]), mu_g[None, :], np.array([tau**2]))[0][0, 0]

        def integrand(mu: float) -> float:
            total = stats.norm.logpdf(mu, mu_f, math.sqrt(var_f)) - 15.0
            for g, part in rows.groupby("region_id"):
                k = index.get_loc(g)
                cov = np.diag(s2 / part["weight"].to_numpy()) + tau**2
                total += stats.multivariate_normal(np.full(len(part), mu + mu_g[k]), cov).logpdf(part["residual"])
            return math.exp(total)

        val = integrate.quad(integrand, -3, 3, points=[0.3], epsabs=0, epsrel=1e-12, limit=200)[0]
        expected = math.log(val) + 15.0 - 0.5 * np.log(rows["weight"]).sum()
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.fit
def test_interim_update_with_interaction_agrees_with_a_full_refit():
    """A model measured only after the fit: its interim bias per region (measured: γ from its
    conditional; never measured: γ ~ N(0, σ_cell²)) against a refit on all cells, within the Monte
    Carlo error of both (the refit's γ drawn from its conditional given each draw)."""
    from tierpool.fit import FitSettings, draw_synthetic, fit_hierarchical
    from tierpool.fit.interim import interim_draws, interim_summary

    spec = default_spec(cell_interaction=True)
    syn = draw_synthetic(41, rows=6000, spec=spec, sizes={"family": 4, "model": 12, "region_class": 2, "region": 5})
    counts = syn.cells.groupby("model_id")["n"].sum()
    model = counts[(counts > 100) & (counts < 1500)].index[0]
    family = syn.cells.loc[syn.cells["model_id"] == model, "family_id"].iloc[0]
    mine = syn.cells["model_id"] == model
    cells = syn.cells[~(mine & (syn.cells["region_id"] == syn.cells.loc[mine, "region_id"].iloc[0]))]  # one pair unmeasured
    new = cells[cells["model_id"] == model]
    settings = FitSettings(tune=1000, draws=2000, chains=2, seed=5, progress=False)
    published = fit_hierarchical(cells[cells["model_id"] != model], spec, settings, catalogue=syn.catalogue)
    refit = fit_hierarchical(cells, spec, settings, catalogue=syn.catalogue)
    draws = interim_draws(published.idata.posterior, model, family, new.iloc[:0], new, seed=3)
    summary = interim_summary(draws).set_index("region_id")
    assert draws.ess > 300
    post, st = refit.idata.posterior, refit.structure
    m = list(st.ids["model"]).index(model)
    regions = list(st.ids["region"])
    tau = post["sigma_cell"].values.reshape(-1)
    sd_m = post["sigma_model"].sel(model=model).values.reshape(-1, 1)
    unmeasured = sorted(set(regions) - set(new["region_id"]))
    assert unmeasured, "the model should have a region it never ran in"
    for region in [*new["region_id"].unique(), unmeasured[0]]:
        loc = (post["mu_model"].sel(model=model).values + post["mu_region"].sel(region=region).values).reshape(-1, 1)
        g_mean, g_var = gamma_moments(CellData(st), np.array([m]), np.array([regions.index(region)]), loc, sd_m, tau)
        exact = (loc + g_mean + np.sqrt(g_var) * np.random.default_rng(1).standard_normal(loc.shape))[:, 0]
        got = summary.loc[region]
        se = exact.std() * math.sqrt(1 / 1000 + 1 / draws.ess)
        assert abs(got["bias_mean"] - exact.mean()) <= 4 * se, (region, got["bias_mean"], exact.mean(), se)
        assert got["bias_sd"] == pytest.approx(exact.std(), rel=0.15), (region, got["bias_sd"], exact.std())


def test_warehouse_setting():
    from tierpool.calibration.settings import read_settings
    from tierpool.errors import ConfigError

    off = read_settings({"fit": {}}, {})
    on = read_settings({"fit": {"cell_interaction": True}}, {})
    assert off.spec().cell_interaction is None and "cell_interaction" not in off.fingerprint_settings()
    assert str(on.spec().cell_interaction) == "halfnormal(0.5)" and on.fingerprint_settings()["cell_interaction"]
    assert on.spec().global_level is not None  # the interaction comes on top of the default global level
    with pytest.raises(ConfigError, match="true or false"):
        read_settings({"fit": {"cell_interaction": "yes"}}, {})
    hierarchy = {"levels": [{"name": "family", "column": "family_id"}, {"name": "model", "column": "model_id"}],
                 "additive": {"sum_to_zero": True, "levels": [{"name": "region_class", "column": "region_class_id"},
                                                              {"name": "region", "column": "region_id"}]},
                 "interaction": {"prior": "exponential(4)"}}
    assert str(read_settings({"fit": {"hierarchy": hierarchy}}, {}).spec().cell_interaction) == "exponential(4)"


@pytest.mark.fit
def test_leave_cells_out_scores_every_pair_as_never_measured():
    """``holdout`` mode ``cells``: every (model, region) pair is held out once, its rows scored
    against the predictive of a pair never measured; with σ_cell = 0.5 in the truth the interaction's
    intervals cover (within 3 binomial sd of 0.9 over the pairs), the additive model's are far too narrow."""
    from tierpool.fit import FitSettings
    from tierpool.fit.holdout import compare_holdout

    rng = np.random.default_rng(3)
    models = {f"m{i}": f"f{i % 2}" for i in range(6)}
    regions = {f"r{j}": f"c{j % 2}" for j in range(4)}
    mu_m = {m: rng.normal(0, 0.5) for m in models}
    mu_g = {g: rng.normal(0, 0.3) for g in regions}
    rows = pd.concat([pd.DataFrame({"family_id": f, "model_id": m, "region_id": g, "region_class_id": c,
                                    "residual": mu_m[m] + mu_g[g] + rng.normal(0, 0.5) + rng.normal(0, 0.1, 8)})
                      for m, f in models.items() for g, c in regions.items()], ignore_index=True)
    specs = {"global_level": default_spec(global_level=True), "interaction": default_spec(global_level=True, cell_interaction=True)}
    scores = compare_holdout(specs, cells_from_rows(rows, KEYS), rows, FitSettings(tune=500, draws=500, chains=2, progress=False),
                             ("cells",), folds=3).set_index("hierarchy")
    assert (scores["n_groups"] == 24).all() and (scores["n_rows"] == len(rows)).all()
    diff = scores.loc["global_level", "elpd_diff"]
    assert -diff > 2 * scores.loc["global_level", "elpd_diff_se"]  # the interaction is best, clearly
    # coverage against its binomial sd over the 24 pairs (a pair's rows share its γ): 3 sd bands
    band = 3 * math.sqrt(0.9 * 0.1 / 24)
    assert scores.loc["interaction", "coverage_90"] > 0.9 - band > scores.loc["global_level", "coverage_90"]
