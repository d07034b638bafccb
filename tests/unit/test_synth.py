"""The synthetic warehouse generator: catalogue, truth, facts, bad rows, writers."""

from __future__ import annotations

import filecmp

import duckdb
import numpy as np
import pandas as pd
import pytest

from tierpool.calibration import synth
from tierpool.errors import ConfigError


@pytest.fixture(scope="module")
def data() -> synth.SynthData:
    return synth.generate(20_000, seed=7)


def _joined(d: synth.SynthData) -> pd.DataFrame:
    """Valid tier-3 rows with their tier-2 row and residual."""
    bad = d.expected_rejections[["request_id", "indicator"]].drop_duplicates()
    t2 = d.tier2_estimates.merge(bad, how="left", indicator="_b").query("_b == 'left_only'")
    t3 = d.tier3_measurements.merge(bad, how="left", indicator="_b").query("_b == 'left_only'")
    out = t3.drop(columns="_b").merge(t2.drop(columns="_b"), on=["request_id", "indicator"])
    out["residual"] = np.log(out["estimate"].astype(float)) - np.log(out["measurement"].astype(float))
    return out


def test_catalogue_has_the_required_names(data):
    models = data.models.set_index("model_id")
    assert len(data.families) >= 10 and len(models) >= 60
    assert {"mistral-7b", "mistral-medium-3", "mixtral-8x22b"} <= set(
        models.index[models.family_id == "mistral"])
    assert set(models.architecture) == {"dense", "moe"}
    assert (models.active_params_b <= models.total_params_b).all()
    assert (models.loc[models.architecture == "moe", "active_params_b"]
            < models.loc[models.architecture == "moe", "total_params_b"]).all()
    regions = data.regions.set_index("region_id")
    assert len(regions) >= 12 and regions.region_class_id.nunique() >= 4
    assert regions.loc["scaleway-fr-par-1", "region_class_id"] == "western-eu-grid"
    assert regions.loc["atnorth-sto-1", "region_class_id"] == "nordic-low-carbon"
    assert set(models.family_id) <= set(data.families.family_id)


def test_truth_is_identified_and_separate_per_indicator(data):
    regions = data.truth["truth_regions"]
    sums = regions.groupby("indicator")["deviation"].sum()
    assert set(sums.index) == {"energy_wh", "gco2e"}
    assert np.allclose(sums, 0.0, atol=1e-12)
    models = data.truth["truth_models"]
    offset = regions.groupby("indicator")["mu"].mean()
    assert np.allclose(models.level, models.mu + models.indicator.map(offset))
    e, g = (models[models.indicator == k].mu.to_numpy() for k in ("energy_wh", "gco2e"))
    assert not np.allclose(e, g)
    assert (models.sigma >= 0.05).all() and (models.sigma <= 1.0).all()


def test_deterministic_given_seed():
    a, b, c = synth.generate(3_000, seed=3), synth.generate(3_000, seed=3), synth.generate(3_000, seed=4)
    pd.testing.assert_frame_equal(a.tier2_estimates, b.tier2_estimates)
    pd.testing.assert_frame_equal(a.tier3_measurements, b.tier3_measurements)
    assert not a.tier2_estimates["estimate"].equals(c.tier2_estimates["estimate"])


def test_tier2_covers_every_request_with_an_interval(data):
    t2 = data.tier2_estimates
    valid = t2.iloc[:20_000]  # the bad rows come last
    assert valid.request_id.max() == 10_000 and not valid.duplicated(["request_id", "indicator"]).any()
    assert (valid.groupby("request_id").indicator.nunique() == 2).all()
    est = valid.estimate.astype(float)
    assert (est > 0).all()
    assert (valid.ci90_low.astype(float) < est).all() and (est < valid.ci90_high.astype(float)).all()
    quarters = valid.requested_at.dt.quarter
    assert set(quarters) == {1, 2, 3} and (valid.requested_at.dt.year == 2026).all()


def test_tier3_counts_are_very_uneven(data):
    joined = _joined(data)
    per_model = joined.groupby(["model_id", "indicator"]).size().unstack(fill_value=0)
    per_model = per_model.reindex(data.models.model_id, fill_value=0)
    assert (per_model.loc[["jamba-1.5-mini", "jamba-1.5-large"]] == 0).all().all()
    never = per_model.index[(per_model == 0).all(axis=1)]
    assert len(set(never) - {"jamba-1.5-mini", "jamba-1.5-large"}) >= 2
    assert ((per_model.energy_wh > 0) & (per_model.energy_wh < 5)).sum() >= 3
    assert (per_model.energy_wh >= 1_000).sum() >= 1
    measured_regions = set(joined.region_id)
    assert "gcp-southamerica-east1" not in measured_regions


def test_tier3_is_tier2_times_exp_minus_truth(data):
    joined = _joined(data)
    truth_m = data.truth["truth_models"].set_index(["indicator", "model_id"])
    truth_r = data.truth["truth_regions"].set_index(["indicator", "region_id"])
    big = joined[joined.model_id == "llama-3.1-8b"]
    for k, rows in big.groupby("indicator"):
        expected = (truth_m.loc[(k, "llama-3.1-8b"), "level"]
                    + truth_r.loc[list(zip(rows.indicator, rows.region_id)), "deviation"].to_numpy())
        z = (rows.residual.to_numpy() - expected) / truth_m.loc[(k, "llama-3.1-8b"), "sigma"]
        assert abs(z.mean()) < 4 / np.sqrt(len(z))
        assert abs(z.std() - 1) < 0.1


def test_heavy_tail_family_has_fat_residual_tails():
    d = synth.generate(40_000, seed=11, heavy_tail_families=("llama",))
    joined = _joined(d)
    truth_m = d.truth["truth_models"].set_index(["indicator", "model_id"])
    truth_r = d.truth["truth_regions"].set_index(["indicator", "region_id"])
    mean = truth_m.loc[list(zip(joined.indicator, joined.model_id)), "level"].to_numpy() + \
        truth_r.loc[list(zip(joined.indicator, joined.region_id)), "deviation"].to_numpy()
    joined["z"] = (joined.residual - mean) / truth_m.loc[
        list(zip(joined.indicator, joined.model_id)), "sigma"].to_numpy()
    family = joined.model_id.map(d.models.set_index("model_id").family_id)
    kurt = joined.groupby(family == "llama").z.apply(lambda z: ((z - z.mean()) ** 4).mean() / z.var() ** 2 - 3)
    assert kurt[True] > 1.5 and abs(kurt[False]) < 0.5


def test_unknown_heavy_tail_family_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown heavy-tail families"):
        synth.generate(100, heavy_tail_families=("gpt-9",))


def test_bad_rows_of_every_kind(data):
    reasons = data.expected_rejections.groupby("source").reason.agg(set)
    assert reasons["tier2_estimates"] == {
        "non_positive_value", "non_finite_value", "missing_value", "unknown_model",
        "unknown_region", "duplicate_key", "unknown_indicator", "out_of_range"}
    assert reasons["tier3_measurements"] == {
        "non_positive_value", "non_finite_value", "no_tier2_match", "duplicate_key", "tier2_rejected",
        "unknown_indicator", "out_of_range", "constant_series"}
    est = data.tier2_estimates.estimate
    assert est.isna().sum() >= 1  # a NULL estimate (missing value) ...
    assert np.isnan(est.dropna().astype(float)).sum() >= 1  # ... is not the NaN one


def test_write_project_is_buildable_sql_over_parquet(tmp_path):
    summary = synth.write_project(tmp_path / "wh", rows=4_000, seed=5)
    out = tmp_path / "wh"
    assert summary.tier2_rows == len(synth.generate(4_000, seed=5).tier2_estimates)
    for rel in ("profiles.yml", "tierpool_project.yml", "seeds/reference.yml",
                "sql/staging/tier2_checked.sql", "tests/data/staging_accounts_for_every_row.sql"):
        assert filecmp.cmp(synth.default_template_dir() / rel, out / rel, shallow=False), rel
    assert not (out / "seeds" / "tier2_estimates.csv").exists()
    assert not (out / "seeds" / "facts.yml").exists()  # the facts are sources here
    assert (out / "truth" / "truth_models.csv").is_file()
    assert "read_parquet('data/tier2/*.parquet')" in (out / synth.SOURCES_YML).read_text()
    con = duckdb.connect()
    n = con.sql(f"select count(*) from read_parquet('{out}/data/tier2/*.parquet')").fetchall()[0][0]
    assert n == summary.tier2_rows
    nan = con.sql(f"select count(*) from read_parquet('{out}/data/tier2/*.parquet') "
                  "where isnan(estimate)").fetchall()[0][0]
    assert nan == 1


def test_write_demo_seeds_round_trips_through_duckdb_csv(tmp_path):
    synth.write_demo_seeds(tmp_path, rows=2_000, seed=2)
    con = duckdb.connect()
    rows = con.sql(
        f"select count(*) filter (where estimate is null), count(*) filter (where isnan(estimate)) "
        f"from read_csv('{tmp_path}/seeds/tier2_estimates.csv', header=true, "
        "columns={'request_id':'BIGINT','indicator':'VARCHAR','model_id':'VARCHAR',"
        "'region_id':'VARCHAR','requested_at':'TIMESTAMP','estimate':'DOUBLE',"
        "'ci90_low':'DOUBLE','ci90_high':'DOUBLE'})").fetchall()[0]
    assert rows == (1, 1)
    assert (tmp_path / "truth" / "expected_rejections.csv").is_file()
