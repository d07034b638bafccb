"""The demo warehouse's SQL run directly in DuckDB over generated data.

The engine is exercised elsewhere; here each SQL model is created as a table in
dependency order (tests/unit/_warehouse_sql.py) so staging, residuals, cells and
the prior fallbacks are checked on their own.
"""

from __future__ import annotations

import math

import _warehouse_sql as w
import duckdb
import numpy as np
import pandas as pd
import pytest

from tierpool.calibration import synth

Z90 = 1.6448536269514722


@pytest.fixture(scope="module")
def demo() -> tuple[duckdb.DuckDBPyConnection, synth.SynthData]:
    data = synth.generate(20_000, seed=7)
    con = duckdb.connect()
    w.load_frames(con, data.frames())
    w.create_fit_outputs(con)
    w.build(con)
    return con, data


def test_each_bad_row_lands_in_rejected_rows_with_its_reason(demo):
    con, data = demo
    got = con.sql("select source, indicator, request_id, reason from rejected_rows").df()
    key = ["source", "indicator", "request_id", "reason"]
    got = got.sort_values(key).reset_index(drop=True)
    expected = data.expected_rejections.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert set(got.reason) == {
        "non_positive_value", "non_finite_value", "missing_value", "unknown_model",
        "unknown_region", "duplicate_key", "no_tier2_match", "tier2_rejected",
        "unknown_indicator", "out_of_range", "constant_series"}


def test_every_input_row_is_staged_or_rejected(demo):
    con, data = demo
    assert w.singular_test(con, "staging_accounts_for_every_row").empty
    staged = con.sql("select count(*) from stg_tier2").fetchall()[0][0]
    rejected = con.sql("select count(*) from rejected_rows where source = 'tier2_estimates'").fetchall()[0][0]
    assert staged + rejected == len(data.tier2_estimates)
    # the test can fail: lose one staged row and it reports the source
    lossy = duckdb.connect()
    w.load_frames(lossy, data.frames())
    w.build(lossy, only={"tier2_checked", "tier3_checked", "stg_tier2", "stg_tier3", "rejected_rows"})
    lossy.execute("delete from stg_tier2 where request_id = 1")
    failing = w.singular_test(lossy, "staging_accounts_for_every_row")
    assert list(failing.source) == ["tier2_estimates"]


def test_residuals_are_log_ratios_of_valid_pairs(demo):
    con, _ = demo
    df = con.sql("""
        select r.residual, t2.estimate, t3.measurement, r.family_id, m.family_id as fam
        from residuals r join stg_tier2 t2 using (request_id, indicator)
        join stg_tier3 t3 using (request_id, indicator) join models m on m.model_id = r.model_id
    """).df()
    assert len(df) == con.sql("select count(*) from stg_tier3").fetchall()[0][0]
    assert np.allclose(df.residual, np.log(df.estimate) - np.log(df.measurement), rtol=0, atol=1e-12)
    assert (df.family_id == df.fam).all() and np.isfinite(df.residual).all()
    assert w.singular_test(con, "residual_cells_account_for_residuals").empty


def test_residual_cells_sum_of_squares_is_stable_at_large_offsets():
    rng = np.random.default_rng(0)
    rows = []
    for cell, (offset, spread, n) in enumerate([(1e6, 1e-3, 5000), (-3e7, 1e-2, 700), (0.5, 0.3, 1)]):
        x = offset + spread * rng.standard_normal(n)
        rows.append(pd.DataFrame({"indicator": "energy_wh", "model_id": f"m{cell}", "family_id": "f",
                                  "region_id": "g", "region_class_id": "c", "residual": x,
                                  "measured_at": pd.Timestamp("2026-02-01"), "weight": 1.0}))
    residuals = pd.concat(rows, ignore_index=True)
    con = duckdb.connect()
    w.load_frames(con, {"residuals": residuals})
    w.build(con, only={"residual_cells"})
    got = con.sql("select model_id, n, mean, S from residual_cells order by model_id").df()
    for cell, frame in residuals.groupby("model_id"):
        x = frame.residual.to_numpy()
        mean = math.fsum(x) / len(x)
        exact = math.fsum((x - mean) ** 2)
        row = got.set_index("model_id").loc[cell]
        assert row.n == len(x)
        assert row.S == pytest.approx(exact, rel=1e-6, abs=1e-12)
        if len(x) > 1:  # the naive formula would be far off here: the test discriminates
            naive = math.fsum(x * x) - len(x) * mean * mean
            assert abs(naive - exact) > 1e-3 * exact


def _posterior(con, table: str, rows: list[dict]) -> None:
    con.register("_rows", pd.DataFrame(rows))
    con.execute(f"insert into {table} by name select * from _rows")
    con.unregister("_rows")


def _fit(con, fit_id: str, status: str, finished: str, version: str | None, shift: float) -> None:
    k = "energy_wh"
    _posterior(con, "fit_runs", [{"fit_id": fit_id, "indicator": k, "status": status,
                                  "finished_at": pd.Timestamp(finished)}])
    if version:
        _posterior(con, "methodology_releases", [{"version": version, "fit_id": fit_id,
                                                  "released_at": pd.Timestamp(finished)}])
    base = {"fit_id": fit_id, "indicator": k}
    _posterior(con, "posterior_families", [
        {**base, "family_id": "llama", "parameter": "mu", "mean": 0.3 + shift, "sd": 0.1},
        {**base, "family_id": "llama", "parameter": "sigma", "mean": 0.2, "sd": 0.05},
    ])
    _posterior(con, "posterior_models", [
        {**base, "model_id": "llama-3.1-8b", "family_id": "llama", "parameter": "level",
         "mean": 0.35 + shift, "sd": 0.02},
        {**base, "model_id": "llama-3.1-8b", "family_id": "llama", "parameter": "sigma",
         "mean": 0.25, "sd": 0.01},
    ])
    _posterior(con, "posterior_region_classes", [
        {**base, "region_class_id": "western-eu-grid", "parameter": "mu", "mean": 0.05, "sd": 0.02},
        {**base, "region_class_id": "western-eu-grid", "parameter": "sigma", "mean": 0.1, "sd": 0.02},
    ])
    _posterior(con, "posterior_regions", [
        {**base, "region_id": "scaleway-fr-par-1", "region_class_id": "western-eu-grid",
         "parameter": "mu", "mean": 0.04, "sd": 0.01},
    ])
    _posterior(con, "posterior_predictive", [
        {**base, "kind": "model_region", "model_id": "llama-3.1-8b", "family_id": "llama",
         "region_id": "scaleway-fr-par-1", "mean": 0.39, "sd": 0.26, "q05": -0.04, "q95": 0.82},
        {**base, "kind": "new_model_region", "family_id": "llama", "region_id": "scaleway-fr-par-1",
         "mean": 0.34, "sd": 0.33, "q05": -0.2, "q95": 0.88},
    ])


@pytest.fixture(scope="module")
def fitted(demo) -> duckdb.DuckDBPyConnection:
    _, data = demo
    con = duckdb.connect()
    w.load_frames(con, {k: v for k, v in data.frames().items() if k in ("models", "regions")})
    w.create_fit_outputs(con)
    # priors flags pairs never measured before the fit's window end (none here: all extrapolated)
    con.execute("create table residual_cells (indicator varchar, model_id varchar, region_id varchar, "
                "first_at timestamp)")
    _fit(con, "2026Q1", "published", "2026-04-02", "1.4.3", shift=-0.1)
    _fit(con, "2026Q2", "published", "2026-07-02", "1.4.4", shift=0.0)
    _fit(con, "2026Q3", "rejected", "2026-10-02", None, shift=0.5)
    w.build(con, only={"latest_fit", "priors_history", "priors"})
    return con


def _prior(con, model: str, region: str) -> pd.Series:
    df = con.sql(f"select * from priors where model_id = '{model}' and region_id = '{region}'").df()
    assert len(df) == 1
    return df.iloc[0]


def test_priors_use_latest_published_fit_and_cover_catalogue(fitted, demo):
    _, data = demo
    latest = fitted.sql("select indicator, fit_id, methodology_version from latest_fit").fetchall()
    assert latest == [("energy_wh", "2026Q2", "1.4.4")]
    n = fitted.sql("select count(*) from priors").fetchall()[0][0]
    assert n == len(data.models) * len(data.regions)
    assert w.singular_test(fitted, "priors_cover_catalogue").empty
    assert w.singular_test(fitted, "priors_unique").empty
    history = fitted.sql("select fit_id, count(*) from priors_history group by 1 order by 1").fetchall()
    assert history == [("2026Q1", n), ("2026Q2", n)]  # the rejected fit never shows


def test_prior_fitted_model_at_fitted_region(fitted):
    p = _prior(fitted, "llama-3.1-8b", "scaleway-fr-par-1")
    assert (p.source_level, p.region_level, p.predictive_kind) == ("model", "region", "model_region")
    assert p.bias_mean == pytest.approx(0.35 + 0.04)
    assert p.bias_sd == pytest.approx(math.hypot(0.02, 0.01))
    assert p.dispersion == pytest.approx(0.25)
    assert (p.pred_mean, p.pred_sd, p.pred_q05, p.pred_q95) == pytest.approx((0.39, 0.26, -0.04, 0.82))
    assert (p.fit_id, p.methodology_version) == ("2026Q2", "1.4.4")
    old = fitted.sql("select bias_mean from priors_history where fit_id = '2026Q1' and "
                     "model_id = 'llama-3.1-8b' and region_id = 'scaleway-fr-par-1'").fetchall()
    assert old[0][0] == pytest.approx(0.25 + 0.04)


def test_prior_new_model_falls_back_to_family(fitted):
    p = _prior(fitted, "llama-3.1-70b", "scaleway-fr-par-1")
    assert (p.source_level, p.region_level, p.predictive_kind) == ("family", "region", "new_model_region")
    assert p.bias_mean == pytest.approx(0.3 + 0.04)
    assert p.bias_sd == pytest.approx(math.sqrt(0.1**2 + 0.2**2 + 0.05**2 + 0.01**2))
    assert p.dispersion == pytest.approx(0.2)
    assert p.pred_mean == pytest.approx(0.34)


def test_prior_new_region_falls_back_to_class_with_normal_approximation(fitted):
    p = _prior(fitted, "llama-3.1-8b", "scaleway-fr-par-2")
    assert (p.source_level, p.region_level, p.predictive_kind) == ("model", "class", "normal_approx")
    assert p.bias_mean == pytest.approx(0.35 + 0.05)
    var = 0.02**2 + 0.02**2 + 0.1**2 + 0.02**2
    assert p.bias_sd == pytest.approx(math.sqrt(var))
    pred_sd = math.sqrt(var + 0.25**2 + 0.01**2)
    assert p.pred_sd == pytest.approx(pred_sd)
    assert (p.pred_q05, p.pred_q95) == pytest.approx((0.4 - Z90 * pred_sd, 0.4 + Z90 * pred_sd))


def test_prior_unseen_family_and_class_fall_back_to_the_prior(fitted):
    p = _prior(fitted, "gemma-2-9b", "atnorth-sto-1")
    assert (p.source_level, p.region_level, p.predictive_kind) == ("global", "global", "normal_approx")
    assert p.bias_mean == pytest.approx(0.0)
    assert p.bias_sd == pytest.approx(1.0)
    assert p.dispersion == pytest.approx(0.5 * math.sqrt(2 / math.pi))


def test_bias_is_the_fits_joint_draws_when_it_has_them(fitted):
    """issue 11 item 5: a bias_<kind> row (joint draws of mu_model + mu_region) wins over the summed
    sides; the fallback quantiles are normal."""
    fallback = _prior(fitted, "llama-3.1-8b", "scaleway-fr-par-1")
    sd = math.hypot(0.02, 0.01)
    assert (fallback.bias_q05, fallback.bias_q95) == pytest.approx((0.39 - Z90 * sd, 0.39 + Z90 * sd))
    base = {"fit_id": "2026Q2", "indicator": "energy_wh", "family_id": "llama", "region_id": "scaleway-fr-par-1"}
    _posterior(fitted, "posterior_predictive", [
        {**base, "kind": "bias_model_region", "model_id": "llama-3.1-8b", "mean": 0.391, "sd": 0.015,
         "q05": 0.37, "q95": 0.42},
        {**base, "kind": "bias_new_model_region", "mean": 0.338, "sd": 0.21, "q05": 0.0, "q95": 0.7},
    ])
    try:
        w.build(fitted, only={"priors_history", "priors"})
        p = _prior(fitted, "llama-3.1-8b", "scaleway-fr-par-1")
        assert (p.bias_mean, p.bias_sd, p.bias_q05, p.bias_q95) == pytest.approx((0.391, 0.015, 0.37, 0.42))
        assert (p.pred_mean, p.pred_sd, p.predictive_kind) == (fallback.pred_mean, fallback.pred_sd, "model_region")
        new = _prior(fitted, "llama-3.1-70b", "scaleway-fr-par-1")
        assert (new.bias_mean, new.bias_sd, new.bias_q05, new.bias_q95) == pytest.approx((0.338, 0.21, 0.0, 0.7))
        # the older fit has no such rows: still the summed sides
        old = fitted.sql("select bias_sd from priors_history where fit_id = '2026Q1' and "
                         "model_id = 'llama-3.1-8b' and region_id = 'scaleway-fr-par-1'").fetchall()
        assert old[0][0] == pytest.approx(sd)
    finally:
        fitted.execute("delete from posterior_predictive where kind like 'bias_%'")
        w.build(fitted, only={"priors_history", "priors"})


def test_fit_gate_fails_only_the_build_that_made_the_rejected_fit(fitted):
    # issue 10 item 7; the full matrix is in test_gate_semantics.py
    _posterior(fitted, "fit_decision", [{"indicator": "energy_wh", "fit_id": "2026Q3", "action": "fitted",
                                         "status": "rejected", "decided_at": pd.Timestamp("2026-10-02")}])
    w.build(fitted, only={"fit_gate_status"})
    assert list(w.singular_test(fitted, "fit_gate").fit_id) == ["2026Q3"]
    fitted.execute("update fit_decision set action = 'reused'")
    w.build(fitted, only={"fit_gate_status"})
    assert w.singular_test(fitted, "fit_gate").empty
    assert list(w.singular_test(fitted, "fit_gate_rejected_fits").rejected_fit_id) == ["2026Q3"]
    fitted.execute("delete from fit_decision")


def test_yml_declares_every_sql_model_column_with_its_type(demo, fitted):
    declared = w.yml_models()
    for name in w.sql_models():
        con = fitted if name in ("latest_fit", "priors_history", "priors") else demo[0]
        actual = {r[0]: r[1] for r in con.sql(f"describe {name}").fetchall()}
        spec = {c["name"]: c["data_type"] for c in declared[name]["columns"]}
        assert set(actual) == set(spec), name
        for col, typ in spec.items():
            assert actual[col] == typ or (typ == "TIMESTAMP" and actual[col].startswith("TIMESTAMP")), \
                (name, col, actual[col], typ)
