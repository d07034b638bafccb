"""Leave-groups-out validation: every held-out row is scored once, against the new-member prior."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tierpool.fit import FitSettings, default_spec, draw_synthetic
from tierpool.fit.compare import cells_from_rows
from tierpool.fit.holdout import compare_holdout, fold_of

pytestmark = [pytest.mark.fit, pytest.mark.slow]

SIZES = {"family": 8, "model": 24, "region_class": 2, "region": 4}
SETTINGS = FitSettings(tune=500, draws=500, chains=2, seed=4, progress=False, target_accept=0.95)


def _rows(shift: float) -> pd.DataFrame:
    """Residual rows drawn from the default model's truth, every family shifted by ``shift``."""
    spec = default_spec()
    syn = draw_synthetic(17, rows=3000, spec=spec, sizes=SIZES, constrained=True)
    rng = np.random.default_rng(5)
    models = syn.truth["model"].set_index("id")
    regions = syn.truth["region"].set_index("id")
    parts = []
    for cell in syn.cells.itertuples():
        mu = models.loc[cell.model_id, "mu"] + regions.loc[cell.region_id, "mu"] + shift
        parts.append(pd.DataFrame({c: getattr(cell, c) for c in spec.id_columns()} | {
            "residual": rng.normal(mu, models.loc[cell.model_id, "sigma"], int(cell.n))}))
    return pd.concat(parts, ignore_index=True)


def test_a_large_common_bias_is_learned_only_with_a_global_level():
    rows = _rows(shift=-3.0)
    fit_cells = cells_from_rows(rows, default_spec().id_columns())
    specs = {"verbatim": default_spec(), "global_level": default_spec(global_level=True)}
    table = compare_holdout(specs, fit_cells, rows, SETTINGS, modes=("families", "models"), folds=4)
    by = table.set_index(["mode", "hierarchy"])
    # every row of every held-out group is scored exactly once
    assert (by["n_rows"] == len(rows)).all()
    # a new family: the verbatim prior N(0, σ) knows nothing of the -3 all families share
    fam = by.loc["families"]
    margin = fam.loc["global_level", "elpd"] - fam.loc["verbatim", "elpd"]
    assert margin == pytest.approx(-fam.loc["verbatim", "elpd_diff"]) and fam.loc["global_level", "elpd_diff"] == 0
    assert margin > 2 * fam.loc["verbatim", "elpd_diff_se"] > 0, table  # paired over the same held-out cells
    assert fam.loc["global_level", "coverage_90"] > fam.loc["verbatim", "coverage_90"]


def test_folds_are_deterministic_and_cover_every_group():
    ids = pd.Series([f"model_{i:03d}" for i in range(200)])
    first, again = fold_of(ids, 5), fold_of(ids, 5)
    assert first.equals(again) and set(first) == set(range(5))
    assert first.value_counts().min() >= 25  # roughly even
