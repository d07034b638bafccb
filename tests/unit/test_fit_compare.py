"""Hierarchy comparison (issue 5, item 6): exact cell log density, and real fits that tell a
three-level truth from a two-level one on held-out data.

Sampling is tiny (2 chains × 400 draws after 400 tuning steps, ~60 models): the point is the
direction and size of the elpd difference, not publishable posteriors.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from tierpool.errors import FitError
from tierpool.fit import FitSettings, default_spec, three_level_spec
from tierpool.fit.compare import (
    COLUMNS,
    cell_log_density,
    cells_from_rows,
    compare_hierarchies,
)

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

SETTINGS = FitSettings(tune=400, draws=400, chains=2, progress=False, seed=11)
SPECS = {"two_level": default_spec(), "three_level": three_level_spec()}
KEYS = ["family_id", "architecture_id", "model_id", "region_class_id", "region_id"]


def test_cell_log_density_equals_sum_over_rows() -> None:
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"model_id": rng.choice(["a", "b", "c"], 200), "region_id": rng.choice(["x", "y"], 200),
                         "residual": rng.normal(0.3, 0.7, 200)})
    cells = cells_from_rows(rows, ["model_id", "region_id"])
    assert cells["n"].sum() == 200 and len(cells) == 6
    mu = rng.normal(0, 0.5, (5, 1))  # five "draws"
    sigma = rng.uniform(0.2, 2.0, (5, 1))
    for _, cell in cells.iterrows():
        r = rows.loc[(rows["model_id"] == cell["model_id"]) & (rows["region_id"] == cell["region_id"]), "residual"]
        exact = norm.logpdf(r.to_numpy()[None, :], mu, sigma).sum(axis=1)
        got = cell_log_density(cell["n"], cell["mean"], cell["S"], mu[:, 0], sigma[:, 0])
        np.testing.assert_allclose(got, exact, rtol=1e-10, atol=1e-9)
    # a cell of one row has S = 0 and is the plain normal log density
    assert cell_log_density(1, 0.4, 0.0, 0.1, 0.5) == pytest.approx(norm.logpdf(0.4, 0.1, 0.5))


def synthetic_rows(seed: int, arch_effect: float, fit_rows: tuple[int, int] = (1, 4)) -> pd.DataFrame:
    """Rows of residuals; each family has a dense and a MoE architecture offset by ±arch_effect/2.

    Models vary little around their architecture (sd 0.05) and residual sd is 0.25, so with a
    large ``arch_effect`` the architecture predicts a model's bias; many models have 1-3 fit rows
    and a third appear only in the test fold, where the hierarchy's prior is all there is.
    Every call has the same group sizes, so the compiled models are shared across tests.
    """
    rng = np.random.default_rng(seed)
    records = []
    regions = [(f"g{j}", f"c{j % 2}") for j in range(4)]
    g_mu = {g: rng.normal(0, 0.1) for g, _ in regions}
    for f in range(5):
        fam_mu = rng.normal(0, 0.3)
        for a, sign in (("dense", -0.5), ("moe", 0.5)):
            arch_mu = fam_mu + sign * arch_effect
            for m in range(6):
                model = f"f{f}-{a}-{m}"
                mu_m = arch_mu + rng.normal(0, 0.05)
                n_fit = 0 if m >= 4 else int(rng.integers(*fit_rows))
                n_test = int(rng.integers(4, 9))
                for fold, n in (("fit", n_fit), ("test", n_test)):
                    for _ in range(n):
                        g, c = regions[int(rng.integers(0, 4))]
                        records.append((f"f{f}", f"f{f}/{a}", model, c, g, fold,
                                        mu_m + g_mu[g] + rng.normal(0, 0.25)))
    return pd.DataFrame(records, columns=[*KEYS, "fold", "residual"])


def _compare(rows: pd.DataFrame) -> pd.DataFrame:
    fit = cells_from_rows(rows[rows["fold"] == "fit"], KEYS)
    test_rows = rows[rows["fold"] == "test"]
    return compare_hierarchies(fit, cells_from_rows(test_rows, KEYS), SPECS, SETTINGS, test_rows=test_rows)


def test_three_level_wins_when_the_truth_has_an_architecture_level() -> None:
    table = _compare(synthetic_rows(1, arch_effect=1.5))
    assert list(table.columns) == COLUMNS
    assert table["hierarchy"].iloc[0] == "three_level", table.to_string()
    two = table.set_index("hierarchy").loc["two_level"]
    # a clear margin: more than 4 paired standard errors, and tens of nats
    assert -two["elpd_diff"] > max(4 * two["elpd_diff_se"], 20), table.to_string()
    assert (table["n_test_cells_unseen"] > 0).all()  # the test-only models were scored, not dropped
    assert (table["n_test_rows"] == (synthetic_rows(1, 1.5)["fold"] == "test").sum()).all()
    three = table.set_index("hierarchy").loc["three_level"]
    assert 0.8 <= three["coverage_90"] <= 0.98 and three["coverage_method"] == "rows"
    assert three["mean_width"] < two["mean_width"]  # architecture info narrows the new-model intervals


def test_no_architecture_level_gives_a_difference_within_noise() -> None:
    table = _compare(synthetic_rows(2, arch_effect=0.0)).set_index("hierarchy")
    loser = table.loc[table["elpd_diff"].idxmin()]
    assert abs(loser["elpd_diff"]) <= 2 * loser["elpd_diff_se"] + 1.0, table.to_string()
    assert (table["coverage_90"].between(0.8, 0.98)).all()
    assert np.isfinite(table[["loo_elpd", "loo_se", "p_loo", "max_pareto_k"]].to_numpy(float)).all()


def test_large_cells_raise_pareto_k_and_are_reported() -> None:
    # Hundreds of fit rows per model: leaving such a cell out moves its model's posterior a lot.
    rows = synthetic_rows(4, arch_effect=0.0, fit_rows=(300, 400))
    fit = cells_from_rows(rows[rows["fold"] == "fit"], KEYS)
    assert fit["n"].max() > 100
    test = cells_from_rows(rows[rows["fold"] == "test"], KEYS)
    table = compare_hierarchies(fit, test, {"two_level": default_spec()}, SETTINGS)  # no rows given
    row = table.iloc[0]
    assert row["n_pareto_k_high"] > 0 and "Pareto k > 0.7" in row["loo_warning"], table.to_string()
    assert row["coverage_method"] == "cell_normal_approx" and 0.75 <= row["coverage_90"] <= 1.0


def test_missing_architecture_column_is_a_clear_error() -> None:
    rows = synthetic_rows(3, 0.0).drop(columns=["architecture_id"])
    keys = [k for k in KEYS if k != "architecture_id"]
    fit = cells_from_rows(rows[rows["fold"] == "fit"], keys)
    test = cells_from_rows(rows[rows["fold"] == "test"], keys)
    with pytest.raises(FitError, match="architecture_id"):
        compare_hierarchies(fit, test, {"three_level": three_level_spec()}, SETTINGS)
