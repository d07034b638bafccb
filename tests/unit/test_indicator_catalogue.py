"""Staging against the indicator catalogue and the constant-series quarantine (issue 10,
items 5 and 6), on small hand-made tables run through the demo's staging and calibration
SQL in in-memory DuckDB (tests/unit/_warehouse_sql.py), without sampling.

Contract (docs/data-contract.md): a fact row whose indicator is not in the seed
``indicators`` is rejected as 'unknown_indicator', one whose value lies outside the
indicator's [min_value, max_value] as 'out_of_range' (bounds inclusive); the otherwise
valid tier-3 rows of a series (indicator x model x region) are quarantined as
'constant_series' when there are at least 3 of them and their measurements are all
identical. Every input row is staged or rejected, never both, never neither.
"""

from __future__ import annotations

import csv
from pathlib import Path

import _warehouse_sql as w
import duckdb
import numpy as np
import pandas as pd
import pytest

from tierpool.calibration import synth
from tierpool.calibration import synth_catalogue as cat

REPO = Path(__file__).resolve().parents[2]
MODEL, OTHER_MODEL, REGION = "llama-3.1-8b", "mistral-7b", "scaleway-fr-par-1"
WHEN = pd.Timestamp("2026-05-04 10:00:00")
STAGING = {"tier2_checked", "tier3_checked", "stg_tier2", "stg_tier3", "rejected_rows"}
CELLS = STAGING | {"residuals", "residual_cells"}


def _t2(rid: int, estimate: float, indicator: str = "energy_wh", model: str = MODEL,
        region: str = REGION) -> dict:
    return {"request_id": rid, "indicator": indicator, "model_id": model, "region_id": region,
            "requested_at": WHEN, "estimate": estimate, "ci90_low": estimate / 2,
            "ci90_high": estimate * 2}


def _t3(rid: int, measurement: float, indicator: str = "energy_wh") -> dict:
    return {"request_id": rid, "indicator": indicator,
            "measured_at": WHEN + pd.Timedelta(minutes=1), "measurement": measurement}


def _warehouse(t2: list[dict], t3: list[dict], only: set[str] = CELLS,
               indicators: pd.DataFrame | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    frames = {
        "families": cat.families_frame(), "models": cat.models_frame(),
        "region_classes": cat.region_classes_frame(), "regions": cat.regions_frame(),
        "indicators": cat.indicators_frame() if indicators is None else indicators,
        "tier2_estimates": pd.DataFrame(t2).astype({"request_id": "int64", "estimate": "float64"}),
        "tier3_measurements": pd.DataFrame(t3).astype({"request_id": "int64", "measurement": "float64"}),
    }
    w.load_frames(con, frames)
    w.build(con, only=only)
    return con


def _reasons(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, int, str], str]:
    rows = con.sql("select source, request_id, indicator, reason from rejected_rows").fetchall()
    return {(s, r, i): reason for s, r, i, reason in rows}


def _accounted(con: duckdb.DuckDBPyConnection) -> None:
    """Every input row staged or rejected: the singular test and an explicit count."""
    assert w.singular_test(con, "staging_accounts_for_every_row").empty
    for source, staged in (("tier2_estimates", "stg_tier2"), ("tier3_measurements", "stg_tier3")):
        n_in, n_staged, n_rejected = con.sql(
            f"select (select count(*) from {source}), (select count(*) from {staged}), "
            f"(select count(*) from rejected_rows where source = '{source}')").fetchall()[0]
        assert n_in == n_staged + n_rejected, source


# ------------------------------------------------------------------ the catalogue seed


def test_demo_seed_is_the_synth_catalogue():
    with (REPO / "seeds" / "indicators.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    frame = cat.indicators_frame()
    assert [r["indicator"] for r in rows] == list(frame.indicator) == list(cat.INDICATORS)
    for row, (_, want) in zip(rows, frame.iterrows()):
        assert row["unit"] == want.unit
        assert float(row["min_value"]) == want.min_value and float(row["max_value"]) == want.max_value
        assert 0 < want.min_value < want.max_value


def test_synth_facts_stay_comfortably_inside_the_plausible_ranges():
    """Every valid generated value, heavy tails included, is >= 100x inside each bound."""
    ranges = cat.indicators_frame().set_index("indicator")
    for rows, seed, heavy in ((20_000, 7, ()), (60_000, 3, tuple(f[0] for f in cat.FAMILIES))):
        data = synth.generate(rows, seed=seed, heavy_tail_families=heavy)
        bad = data.expected_rejections[["request_id", "indicator"]]
        for frame, col in ((data.tier2_estimates, "estimate"), (data.tier3_measurements, "measurement")):
            valid = frame.merge(bad, how="left", indicator="_b").query("_b == 'left_only'")
            for k, g in valid.groupby("indicator"):
                x = g[col].astype(float)
                assert x.min() > 100 * ranges.loc[k, "min_value"], (col, k, x.min())
                assert x.max() < ranges.loc[k, "max_value"] / 100, (col, k, x.max())


def test_synth_project_and_demo_get_the_indicators_seed(tmp_path):
    synth.write_project(tmp_path / "wh", rows=2_000, seed=5)
    written = pd.read_csv(tmp_path / "wh" / "seeds" / "indicators.csv")
    pd.testing.assert_frame_equal(written, cat.indicators_frame())
    assert "name: indicators" in (tmp_path / "wh" / "seeds" / "reference.yml").read_text()
    assert "indicators" in synth.generate(2_000, seed=5).frames()


# ------------------------------------------------------------------ unknown indicator, range


def test_unknown_indicator_is_rejected_with_its_reason_at_both_tiers():
    con = _warehouse([_t2(1, 0.5), _t2(2, 3.0, indicator="water_l")],
                     [_t3(1, 0.4), _t3(2, 2.5, indicator="water_l"), _t3(3, 1.0, indicator="water_l")])
    assert _reasons(con) == {
        ("tier2_estimates", 2, "water_l"): "unknown_indicator",
        ("tier3_measurements", 2, "water_l"): "unknown_indicator",
        ("tier3_measurements", 3, "water_l"): "unknown_indicator",  # before no_tier2_match
    }
    assert con.sql("select distinct indicator from stg_tier2").fetchall() == [("energy_wh",)]
    assert con.sql("select count(*) from residuals where indicator = 'water_l'").fetchall() == [(0,)]
    _accounted(con)


def test_out_of_range_values_are_rejected_and_the_bounds_are_inclusive():
    lo, hi = (cat.indicators_frame().set_index("indicator").loc["energy_wh", ["min_value", "max_value"]])
    t2 = [_t2(1, 1e300), _t2(2, 1e-300), _t2(3, hi), _t2(4, lo), _t2(5, np.nextafter(hi, np.inf)),
          _t2(6, 0.2), _t2(7, 0.3), _t2(8, 0.4)]
    t3 = [_t3(1, 0.5),  # its tier-2 row is out of range
          _t3(3, 0.1), _t3(4, 0.1 + 1e-9), _t3(6, 1e300), _t3(7, np.nextafter(lo, 0.0)), _t3(8, lo)]
    con = _warehouse(t2, t3)
    assert _reasons(con) == {
        ("tier2_estimates", 1, "energy_wh"): "out_of_range",
        ("tier2_estimates", 2, "energy_wh"): "out_of_range",
        ("tier2_estimates", 5, "energy_wh"): "out_of_range",
        ("tier3_measurements", 1, "energy_wh"): "tier2_rejected",
        ("tier3_measurements", 6, "energy_wh"): "out_of_range",
        ("tier3_measurements", 7, "energy_wh"): "out_of_range",
    }
    assert sorted(r for (r,) in con.sql("select request_id from stg_tier2").fetchall()) == [3, 4, 6, 7, 8]
    assert sorted(r for (r,) in con.sql("select request_id from stg_tier3").fetchall()) == [3, 4, 8]
    # the boundary values reach the residuals, 1e300 does not
    residuals = con.sql("select max(abs(residual)) from residuals").fetchall()[0][0]
    assert np.isfinite(residuals) and residuals < 60
    _accounted(con)


def test_range_applies_per_indicator():
    ranges = pd.DataFrame({"indicator": ["energy_wh", "gco2e"], "unit": ["Wh", "gCO2e"],
                           "min_value": [1e-3, None], "max_value": [10.0, None],
                           "description": ["", ""]})
    t2 = [_t2(1, 20.0), _t2(1, 20.0, indicator="gco2e"), _t2(2, 5e-4, indicator="gco2e")]
    t3 = [_t3(1, 1e200, indicator="gco2e"), _t3(2, 1e-4, indicator="gco2e")]
    con = _warehouse(t2, t3, only=STAGING, indicators=ranges)
    # NULL bounds do not bound; energy_wh has 10 Wh as its maximum here
    assert _reasons(con) == {("tier2_estimates", 1, "energy_wh"): "out_of_range"}
    _accounted(con)


def test_a_duplicated_catalogue_row_multiplies_no_fact_row():
    ranges = pd.concat([cat.indicators_frame()] * 2, ignore_index=True)
    ranges.loc[2, "max_value"] = 1.0  # the second energy_wh row is narrower: it wins
    con = _warehouse([_t2(1, 0.5), _t2(2, 2.0)], [_t3(1, 0.4), _t3(2, 0.3)], only=STAGING,
                     indicators=ranges)
    assert con.sql("select count(*) from tier2_checked").fetchall() == [(2,)]
    assert _reasons(con) == {("tier2_estimates", 2, "energy_wh"): "out_of_range",
                             ("tier3_measurements", 2, "energy_wh"): "tier2_rejected"}
    _accounted(con)


# ------------------------------------------------------------------ constant series


def _series(first_id: int, values: list[float], model: str = MODEL, region: str = REGION,
            estimate: float = 0.5) -> tuple[list[dict], list[dict]]:
    ids = range(first_id, first_id + len(values))
    return ([_t2(i, estimate, model=model, region=region) for i in ids],
            [_t3(i, v) for i, v in zip(ids, values)])


def test_ten_identical_rows_are_quarantined_and_never_reach_the_cells():
    stuck_t2, stuck_t3 = _series(1, [0.25] * 10)  # the case: S = 0
    ok_t2, ok_t3 = _series(100, [0.2, 0.3, 0.25, 0.4], model=OTHER_MODEL)
    con = _warehouse(stuck_t2 + ok_t2, stuck_t3 + ok_t3)
    assert _reasons(con) == {("tier3_measurements", i, "energy_wh"): "constant_series" for i in range(1, 11)}
    assert con.sql("select count(*) from stg_tier2").fetchall() == [(14,)]  # tier 2 is fine
    assert con.sql("select distinct model_id from residuals").fetchall() == [(OTHER_MODEL,)]
    cells = con.sql("select model_id, n from residual_cells").fetchall()
    assert cells == [(OTHER_MODEL, 4)]
    assert w.singular_test(con, "residual_cells_account_for_residuals").empty
    _accounted(con)
    warned = w.singular_test(con, "constant_series_quarantined")
    assert warned[["indicator", "model_id", "region_id", "n", "measurement"]].values.tolist() == [
        ["energy_wh", MODEL, REGION, 10, 0.25]]
    sql = (REPO / "tests" / "data" / "constant_series_quarantined.sql").read_text()
    assert sql.startswith("-- severity: warn\n")


def test_constant_measurements_are_quarantined_whatever_tier_2_says():
    """A stuck meter under varying estimates is still a telemetry fault (S > 0 here)."""
    t2 = [_t2(i, 0.1 * i) for i in range(1, 4)]
    con = _warehouse(t2, [_t3(i, 0.25) for i in range(1, 4)])
    assert set(_reasons(con).values()) == {"constant_series"} and len(_reasons(con)) == 3
    _accounted(con)


def test_what_is_not_a_constant_series():
    cases = [
        _series(1, [0.25, 0.25]),  # two identical rows: below the threshold of 3
        _series(10, [0.25, 0.25, 0.25, 0.26], model=OTHER_MODEL),  # one differs
        _series(20, [0.25, 0.25, 0.25], region="aws-us-east-1", estimate=0.3),
    ]
    t2 = [r for c in cases for r in c[0]]
    t3 = [r for c in cases for r in c[1]]
    # the same value as the first series, but in another region: a series of its own, of
    # 3 identical rows, so it alone is quarantined
    con = _warehouse(t2, t3)
    assert _reasons(con) == {("tier3_measurements", i, "energy_wh"): "constant_series" for i in (20, 21, 22)}
    assert con.sql("select count(*) from residuals").fetchall() == [(6,)]
    _accounted(con)


def test_rows_rejected_for_another_reason_do_not_make_or_break_a_series():
    values = [0.25, 0.25, 0.25]
    t2, t3 = _series(1, values)
    t3 += [_t3(1, 0.9)]  # a duplicate of request 1: both copies are duplicate_key
    t3 += [_t3(4, -1.0)]  # request 4 has a valid tier-2 row below
    t2 += [_t2(4, 0.5)]
    con = _warehouse(t2, t3)
    got = _reasons(con)
    # request 1's two copies are duplicates; requests 2 and 3 remain: 2 identical rows,
    # below the threshold, so they are staged; request 4 is non-positive
    assert got == {("tier3_measurements", 1, "energy_wh"): "duplicate_key",
                   ("tier3_measurements", 4, "energy_wh"): "non_positive_value"}
    assert con.sql("select count(*) from rejected_rows").fetchall() == [(3,)]
    assert con.sql("select count(*) from stg_tier3").fetchall() == [(2,)]
    _accounted(con)


def test_series_are_per_indicator():
    t2 = [_t2(i, 0.5) for i in range(1, 4)] + [_t2(i, 0.1, indicator="gco2e") for i in range(1, 4)]
    t3 = [_t3(i, 0.25) for i in range(1, 4)] + [_t3(i, 0.01 * i, indicator="gco2e") for i in range(1, 4)]
    con = _warehouse(t2, t3)
    assert _reasons(con) == {("tier3_measurements", i, "energy_wh"): "constant_series" for i in (1, 2, 3)}
    assert con.sql("select distinct indicator from residuals").fetchall() == [("gco2e",)]
    _accounted(con)


# ------------------------------------------------------------------ the generated warehouse


@pytest.fixture(scope="module")
def generated() -> tuple[duckdb.DuckDBPyConnection, synth.SynthData]:
    data = synth.generate(20_000, seed=7)
    con = duckdb.connect()
    w.load_frames(con, data.frames())
    w.build(con, only=CELLS)
    return con, data


def test_generated_bad_rows_include_the_catalogue_and_quarantine_cases(generated):
    con, data = generated
    expected = data.expected_rejections
    for source, reason in (("tier2_estimates", "unknown_indicator"), ("tier2_estimates", "out_of_range"),
                           ("tier3_measurements", "unknown_indicator"),
                           ("tier3_measurements", "out_of_range"),
                           ("tier3_measurements", "constant_series")):
        assert ((expected.source == source) & (expected.reason == reason)).any(), (source, reason)
    assert (expected.reason == "constant_series").sum() >= 3
    got = con.sql("select source, indicator, request_id, reason from rejected_rows").df()
    key = ["source", "indicator", "request_id", "reason"]
    pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                  expected.sort_values(key).reset_index(drop=True), check_dtype=False)
    quarantined = expected.loc[expected.reason == "constant_series", "request_id"].tolist()
    assert con.sql(f"select count(*) from residuals where request_id in ({', '.join(map(str, quarantined))})"
                   ).fetchall() == [(0,)]
    assert con.sql("select count(*) from residual_cells where S = 0 and n >= 3").fetchall() == [(0,)]
    assert w.singular_test(con, "staging_accounts_for_every_row").empty
    assert len(w.singular_test(con, "constant_series_quarantined")) == 1
