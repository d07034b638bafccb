"""The published bias is the JOINT posterior of μ_model + μ_region (issue 11, item 5), and a
never-seen family's prior follows the ``global_level`` option.

Small synthetic fits (2 chains × 1,000 draws) are published as the fit node publishes them
(``posterior_frames``), loaded into DuckDB with the catalogue and turned into ``priors_history`` by
the project's own SQL (tests/unit/_warehouse_sql.py). The references are computed here, directly
from the draws stored on disk and from the posterior summaries, not from the predictive code.
"""

from __future__ import annotations

import math

import _warehouse_sql as w
import arviz as az
import duckdb
import numpy as np
import pandas as pd
import pytest

from tierpool.calibration.publish import posterior_frames
from tierpool.fit import FitSettings, default_spec, draw_synthetic, fit_hierarchical

pytestmark = [pytest.mark.fit, pytest.mark.slow]

SIZES = {"family": 4, "model": 10, "region_class": 2, "region": 5}
SETTINGS = FitSettings(tune=1000, draws=1000, chains=2, seed=11, progress=False)
SHIFT = -1.5  # a common bias of every residual: only a global level learns it for a new family
FIT_ID, IND = "2026Q2", "energy_wh"


@pytest.fixture(scope="module")
def synthetic():
    """Cells from the fitted prior, shifted by SHIFT; the last family and the first model (a
    catalogue model added after the fit) are never seen by the fit."""
    syn = draw_synthetic(23, rows=4000, spec=default_spec(), sizes=SIZES)
    unseen = syn.truth["family"]["id"].iloc[-1]
    added = syn.truth["model"]["id"].iloc[0]
    cat = syn.catalogue
    out = (cat["family_id"] == unseen) | (cat["model_id"] == added)  # region rows have neither
    cells = syn.cells[(syn.cells["family_id"] != unseen) & (syn.cells["model_id"] != added)]
    cells = cells.assign(mean=lambda c: c["mean"] + SHIFT)
    models = cat[cat["model_id"].notna()][["model_id", "family_id"]].reset_index(drop=True)
    regions = cat[cat["region_id"].notna()][["region_id", "region_class_id"]].reset_index(drop=True)
    return cells, cat[~out], models, regions, unseen


def _published(synthetic, tmp_path_factory, global_level: bool):
    cells, catalogue, models, regions, unseen = synthetic
    result = fit_hierarchical(cells, default_spec(global_level=global_level), SETTINGS, catalogue=catalogue)
    # mixed (at 2 × 1,000 draws the max split r_hat is itself noisy around 1.01: test_fit_sampling)
    assert result.gate.divergences == 0 and result.gate.max_r_hat <= 1.02, result.gate
    path = tmp_path_factory.mktemp("fit") / f"{IND}.nc"
    result.save(path)
    con = duckdb.connect()
    w.load_frames(con, {"models": models, "regions": regions})
    w.create_fit_outputs(con)
    frames = posterior_frames(FIT_ID, {IND: result})
    frames["fit_runs"] = pd.DataFrame({"fit_id": [FIT_ID], "indicator": [IND], "status": ["published"],
                                       "finished_at": [pd.Timestamp("2026-07-02")]})
    frames["methodology_releases"] = pd.DataFrame({"version": ["1.4.3"], "fit_id": [FIT_ID],
                                                   "released_at": [pd.Timestamp("2026-07-02")]})
    for name, frame in frames.items():
        con.register("_rows", frame)
        con.execute(f"insert into {name} by name select * from _rows")
        con.unregister("_rows")
    w.build(con, only={"priors_history"})
    priors = con.sql("select * from priors_history").df()
    return result, az.from_netcdf(str(path)).posterior, priors, unseen


@pytest.fixture(scope="module")
def verbatim(synthetic, tmp_path_factory):
    return _published(synthetic, tmp_path_factory, global_level=False)


@pytest.fixture(scope="module")
def learned(synthetic, tmp_path_factory):
    return _published(synthetic, tmp_path_factory, global_level=True)


def _flat(post, var: str, **sel) -> np.ndarray:
    return post[var].sel(**sel).values.ravel()


@pytest.mark.parametrize("which", ["verbatim", "learned"])
def test_published_bias_is_the_joint_posterior_of_model_plus_region(which, request):
    _, post, priors, _ = request.getfixturevalue(which)
    cells = priors[(priors.source_level == "model") & (priors.region_level == "region")]
    assert len(cells) >= SIZES["region"]
    ratios = []
    for p in cells.itertuples():
        mu_m, mu_g = _flat(post, "mu_model", model=p.model_id), _flat(post, "mu_region", region=p.region_id)
        joint = mu_m + mu_g
        assert p.bias_mean == pytest.approx(joint.mean(), rel=1e-9, abs=1e-12)
        assert p.bias_sd == pytest.approx(joint.std(ddof=1), rel=1e-9)
        q05, q95 = np.quantile(joint, [0.05, 0.95])
        assert (p.bias_q05, p.bias_q95) == pytest.approx((q05, q95), rel=1e-9, abs=1e-12)
        ratios.append(p.bias_sd / math.sqrt(mu_m.var(ddof=1) + mu_g.var(ddof=1)))
    ratios = np.array(ratios)
    # the sides are correlated a posteriori: adding their variances is materially wrong somewhere
    # (observed 0.64-1.18 on the verbatim fit, most cells of a model measured in few regions < 1)
    assert ((ratios < 0.95) | (ratios > 1.05)).any(), ratios
    assert ratios.min() < 0.9, ratios


def test_new_model_bias_matches_the_family_posterior(verbatim):
    """A new model of a fitted family at a fitted region: μ_f + σ_f·z + μ_g; its moments from the
    stored draws (Monte Carlo tolerance)."""
    _, post, priors, _ = verbatim
    rows = priors[(priors.source_level == "family") & (priors.region_level == "region")]
    assert len(rows)
    for p in rows.itertuples():
        mu_f, s_f = _flat(post, "mu_family", family=p.family_id), _flat(post, "sigma_family", family=p.family_id)
        mu_g = _flat(post, "mu_region", region=p.region_id)
        mean = (mu_f + mu_g).mean()
        var = (mu_f + mu_g).var() + (s_f**2).mean()
        se = math.sqrt(var / len(mu_f))
        assert abs(p.bias_mean - mean) < 5 * se, (p.model_id, p.region_id, p.bias_mean, mean)
        assert p.bias_sd**2 == pytest.approx(var, rel=0.25)


@pytest.mark.parametrize("which", ["verbatim", "learned"])
def test_never_seen_family_follows_the_global_level_option(which, request):
    """A never-seen family at a fitted region: the new family's level + μ_g. Verbatim: the prior
    predictive (σ ~ HalfNormal(0.5), μ_f ~ N(0, σ), level ~ N(μ_f, σ): mean 0, variance 0.5);
    with the global level: μ_global + τ_global·z + σ·z' (σ from the prior): mean E[μ_global],
    variance Var[μ_global] + E[τ²] + E[σ²] with E[σ²] = 0.25. Checked against the posterior
    summaries the fit writes (regions; 'global' level mu, tau)."""
    result, post, priors, unseen = request.getfixturevalue(which)
    rows = priors[priors.family_id == unseen]
    assert set(rows.source_level) == {"global"} and len(rows)
    at_regions = rows[rows.region_level == "region"]
    assert set(at_regions.predictive_kind) == {"new_family_region"}
    regions = result.levels["region"].query("parameter == 'mu'").set_index("region_id")
    if which == "learned":
        glob = result.levels["global"].set_index("parameter")
        mu, tau = glob.loc["mu"], glob.loc["tau"]
        level_mean, level_var = mu["mean"], mu["sd"] ** 2 + tau["mean"] ** 2 + tau["sd"] ** 2 + 0.25
        assert level_mean < SHIFT / 2  # the common bias was learned
    else:
        assert "global" not in result.levels
        level_mean, level_var = 0.0, 0.5
    B = SETTINGS.draws * SETTINGS.chains
    for p in at_regions.itertuples():
        g = regions.loc[p.region_id]
        mean, var = level_mean + g["mean"], level_var + g["sd"] ** 2
        assert abs(p.bias_mean - mean) < 5 * math.sqrt(var / B), (p.region_id, p.bias_mean, mean)
        assert p.bias_sd**2 == pytest.approx(var, rel=0.3), (p.region_id, p.bias_sd**2, var)
    # the dispersion is the fit's new_family_sigma, whatever the option
    sigma = result.predictive.query("kind == 'new_family_sigma'")["mean"].iloc[0]
    assert np.allclose(rows["dispersion"], sigma)


def test_the_option_moves_a_never_seen_family_to_the_common_bias(verbatim, learned):
    def unseen_mean(fit):
        _, _, priors, unseen = fit
        return priors.loc[(priors.family_id == unseen) & (priors.region_level == "region"), "bias_mean"].mean()

    assert abs(unseen_mean(verbatim)) < 0.3  # the prior predictive is centred on 0
    assert unseen_mean(learned) < SHIFT / 2
