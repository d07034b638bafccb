"""Rows that are averages, through staging and the cell SQL (issue 12 item 5; docs/data-contract.md).

tier3_measurements may carry an optional column ``weight`` (how many requests a row averages):
absent or NULL means 1; a given weight that is not a positive finite number is rejected as
'invalid_weight'. residual_cells and residual_cells_by_quarter then hold n (rows), w (summed
weights), the weighted mean and the weighted S; lifecycle.cells_in_window merges quarters exactly.
Hand-made tables in in-memory DuckDB (tests/unit/_warehouse_sql.py), no sampling.
"""

from __future__ import annotations

import math
from pathlib import Path

import _warehouse_sql as w
import duckdb
import numpy as np
import pandas as pd
import pytest

from tierpool.calibration import synth_catalogue as cat
from tierpool.calibration.lifecycle import cells_in_window, data_fingerprint

REPO = Path(__file__).resolve().parents[2]
MODELS = ("llama-3.1-8b", "mistral-7b")
REGION = "scaleway-fr-par-1"
WHEN = pd.Timestamp("2026-05-04 10:00:00")
CELLS = {"tier2_checked", "tier3_checked", "stg_tier2", "stg_tier3", "rejected_rows", "residuals", "residual_cells"}


def _facts(weights: list | None, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = len(weights) if weights is not None else 12
    t2 = pd.DataFrame({"request_id": np.arange(1, n + 1, dtype="int64"), "indicator": "energy_wh",
                       "model_id": [MODELS[i % 2] for i in range(n)], "region_id": REGION,
                       "requested_at": [WHEN + pd.Timedelta(days=40 * (i % 3)) for i in range(n)],
                       "estimate": rng.uniform(0.5, 2.0, n)})
    t2["ci90_low"], t2["ci90_high"] = t2["estimate"] / 2, t2["estimate"] * 2
    t3 = pd.DataFrame({"request_id": t2["request_id"], "indicator": "energy_wh",
                       "measured_at": t2["requested_at"] + pd.Timedelta(minutes=1),
                       "measurement": rng.uniform(0.5, 2.0, n)})
    if weights is not None:  # NULL and NaN are set in DuckDB (its pandas scan reads NaN as NULL)
        t3["weight"] = np.array([1.0 if x is None or np.isnan(x) else x for x in weights], dtype=float)
    return t2, t3


def _warehouse(t2: pd.DataFrame, t3: pd.DataFrame, set_weight: dict[int, str] | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    w.load_frames(con, {"families": cat.families_frame(), "models": cat.models_frame(),
                        "region_classes": cat.region_classes_frame(), "regions": cat.regions_frame(),
                        "indicators": cat.indicators_frame(), "tier2_estimates": t2, "tier3_measurements": t3})
    for rid, value in (set_weight or {}).items():
        con.execute(f"update tier3_measurements set weight = {value} where request_id = {rid}")
    w.build(con, only=CELLS)
    return con


def _by_quarter(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    con.execute("create or replace table request_folds as select request_id, 'fit' as fold from residuals")
    sql = (REPO / "sql" / "residual_cells_by_quarter.sql").read_text()
    return con.sql(sql).df().sort_values(["model_id", "quarter_start"]).reset_index(drop=True)


def _expected(residuals: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    out = []
    for key, part in residuals.groupby(keys):
        y, wt = part["residual"].to_numpy(), part["weight"].to_numpy()
        mean = math.fsum(wt * y) / math.fsum(wt)
        out.append({**dict(zip(keys, key)), "n": len(y), "w": math.fsum(wt), "mean": mean,
                    "S": math.fsum(wt * (y - mean) ** 2)})
    return pd.DataFrame(out)


def test_without_a_weight_column_every_row_weighs_one_and_cells_are_as_before():
    t2, t3 = _facts(None)
    con = _warehouse(t2, t3)
    assert con.sql("select distinct weight from stg_tier3").fetchall() == [(1.0,)]
    cells = con.sql("select model_id, n, w, mean, S from residual_cells order by model_id").df()
    assert (cells["w"] == cells["n"]).all()
    res = con.sql("select model_id, residual from residuals").df()
    for rec in cells.itertuples():
        y = res.loc[res.model_id == rec.model_id, "residual"].to_numpy()
        assert rec.mean == pytest.approx(y.mean(), rel=1e-12)
        assert rec.S == pytest.approx(((y - y.mean()) ** 2).sum(), rel=1e-10)
    quarterly = _by_quarter(con)
    assert (quarterly["w"] == quarterly["n"]).all()
    # unweighted cells keep var_pop · n and avg(): the same numbers as the SQL before weights
    plain = con.sql("""select model_id, cast(date_trunc('quarter', measured_at) as date) as quarter_start,
                              avg(residual) as mean, var_pop(residual) * count(*) as S
                       from residuals group by all order by model_id, quarter_start""").df()
    np.testing.assert_allclose(quarterly["mean"], plain["mean"], rtol=1e-14)
    np.testing.assert_allclose(quarterly["S"], plain["S"], rtol=1e-12)


def test_weighted_rows_give_weighted_cells_and_bad_weights_are_rejected():
    weights = [1.0, 3000.0, 2.5, None, 12.0, 0.0, 7.0, -1.0, float("nan"), float("inf"), 40.0, 1.0, 64.0, 2.0]
    t2, t3 = _facts(weights, seed=1)
    con = _warehouse(t2, t3, set_weight={4: "null", 9: "'nan'::double"})
    rejected = dict(con.sql("select request_id, reason from rejected_rows").fetchall())
    assert rejected == {6: "invalid_weight", 8: "invalid_weight", 9: "invalid_weight", 10: "invalid_weight"}
    staged = dict(con.sql("select request_id, weight from stg_tier3").fetchall())
    assert staged[4] == 1.0 and staged[2] == 3000.0  # NULL counts as one request
    assert w.singular_test(con, "staging_accounts_for_every_row").empty
    assert w.singular_test(con, "residual_cells_account_for_residuals").empty  # n still counts rows
    residuals = con.sql("select model_id, measured_at, residual, weight from residuals").df()
    got = con.sql("select model_id, n, w, mean, S from residual_cells order by model_id").df()
    exp = _expected(residuals, ["model_id"]).sort_values("model_id").reset_index(drop=True)
    assert got["n"].tolist() == exp["n"].tolist()
    np.testing.assert_allclose(got[["w", "mean", "S"]], exp[["w", "mean", "S"]], rtol=1e-12)
    quarterly = _by_quarter(con)
    residuals["quarter_start"] = residuals["measured_at"].dt.to_period("Q").dt.start_time.dt.date
    exp_q = _expected(residuals, ["model_id", "quarter_start"]).sort_values(["model_id", "quarter_start"])
    assert quarterly["n"].tolist() == exp_q["n"].tolist()
    np.testing.assert_allclose(quarterly[["w", "mean", "S"]], exp_q[["w", "mean", "S"]], rtol=1e-12, atol=1e-15)
    # the fit's merge of the quarters equals the cells computed from all rows at once
    quarterly["indicator"], quarterly["family_id"], quarterly["region_id"], quarterly["region_class_id"] = \
        "energy_wh", "f", REGION, "c"
    merged = cells_in_window(quarterly, pd.Timestamp("2027-01-01").date()).sort_values("model_id")
    assert merged["n"].tolist() == exp["n"].tolist()
    np.testing.assert_allclose(merged[["w", "mean", "S"]], exp[["w", "mean", "S"]], rtol=1e-12)


def test_cells_in_window_and_fingerprint_are_unchanged_for_unweighted_cells():
    rng = np.random.default_rng(2)
    quarterly = pd.DataFrame({"indicator": "e", "model_id": ["a", "a", "b"], "family_id": "f", "region_id": "g",
                              "region_class_id": "c", "quarter_start": pd.to_datetime(["2026-01-01", "2026-04-01",
                                                                                       "2026-01-01"]),
                              "n": [3, 5, 2], "mean": rng.normal(size=3), "S": rng.uniform(0, 1, 3)})
    end = pd.Timestamp("2026-07-01").date()
    old = cells_in_window(quarterly, end)
    new = cells_in_window(quarterly.assign(w=quarterly["n"].astype(float)), end)
    assert old["w"].tolist() == old["n"].astype(float).tolist()
    pd.testing.assert_frame_equal(old, new)
    fp = data_fingerprint(new, {}, "code")
    assert data_fingerprint(new.drop(columns="w"), {}, "code") == fp
    assert data_fingerprint(new.assign(w=new["w"] * 2), {}, "code") != fp
