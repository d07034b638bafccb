"""Interim updates against a full refit on the same data (within Monte Carlo error)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tierpool.fit import FitSettings, default_spec, draw_synthetic, fit_hierarchical
from tierpool.fit.interim import interim_draws, interim_summary, weighted_quantiles

pytestmark = [pytest.mark.fit, pytest.mark.slow]

SIZES = {"family": 4, "model": 12, "region_class": 2, "region": 5}
SETTINGS = FitSettings(tune=1000, draws=2000, chains=2, seed=5, progress=False)


@pytest.fixture(scope="module")
def case():
    """A synthetic warehouse; one model's cells arrive after the fit (the 'new' cells)."""
    spec = default_spec()
    syn = draw_synthetic(41, rows=6000, spec=spec, sizes=SIZES, constrained=True)
    counts = syn.cells.groupby("model_id")["n"].sum()
    model = counts[(counts > 100) & (counts < 1500)].index[0]
    family = syn.cells.loc[syn.cells["model_id"] == model, "family_id"].iloc[0]
    new = syn.cells[syn.cells["model_id"] == model]
    old = syn.cells[syn.cells["model_id"] != model]
    catalogue = syn.catalogue
    published = fit_hierarchical(old, spec, SETTINGS, catalogue=catalogue)
    refit = fit_hierarchical(syn.cells, spec, SETTINGS, catalogue=catalogue)
    return model, family, new, published, refit


def _refit_bias(refit, model: str, region: str) -> np.ndarray:
    post = refit.idata.posterior
    mu = post["mu_model"].sel(model=model).values.ravel()
    return mu + post["mu_region"].sel(region=region).values.ravel()


def test_interim_update_agrees_with_a_full_refit(case):
    model, family, new, published, refit = case
    empty = new.iloc[:0]
    draws = interim_draws(published.idata.posterior, model, family, empty, new, seed=3)
    summary = interim_summary(draws).set_index("region_id")
    assert summary["n_new"].iloc[0] == int(new["n"].sum())
    assert draws.ess > 300  # enough draws survive the reweighting to summarise
    for region in new["region_id"].unique():
        exact = _refit_bias(refit, model, region)
        got = summary.loc[region]
        # MC error of both: the refit's draws (ESS ~ a few thousand) and the weighted ones
        se = exact.std() * math.sqrt(1 / 1000 + 1 / draws.ess)
        assert abs(got["bias_mean"] - exact.mean()) <= 4 * se, (region, got["bias_mean"], exact.mean(), se)
        assert got["bias_sd"] == pytest.approx(exact.std(), rel=0.15), region


def test_interval_narrows_as_measurements_arrive(case):
    model, family, new, published, _ = case
    region = new.sort_values("n")["region_id"].iloc[-1]
    cell = new[new["region_id"] == region].iloc[0]
    widths = []
    for n in (10, 30, 100):  # the same cell mean and dispersion, more rows
        part = pd.DataFrame({"region_id": [region], "n": [n], "mean": [cell["mean"]],
                             "S": [cell["S"] / cell["n"] * n]})
        s = interim_summary(interim_draws(published.idata.posterior, model, family, new.iloc[:0], part))
        row = s.set_index("region_id").loc[region]
        widths.append(row["bias_q95"] - row["bias_q05"])
    assert widths[0] > widths[1] > widths[2], widths


def test_weighted_quantiles_match_numpy_for_equal_weights():
    x = np.random.default_rng(1).normal(size=10_001)
    w = np.full(x.size, 1 / x.size)
    got = weighted_quantiles(x, w, (0.05, 0.5, 0.95))
    assert np.allclose(got, np.quantile(x, [0.05, 0.5, 0.95]), atol=2e-3)
