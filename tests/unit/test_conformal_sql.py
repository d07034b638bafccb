"""The conformal calibration SQL (sql/conformal/) run directly in in-memory DuckDB.

Two kinds of input: generated warehouses (tierpool.calibration.synth) whose ``priors`` are built
by hand from the known truth (so the fit is not needed), and small hand-made tables
where the exact answer is computed here with numpy/scipy.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import _warehouse_sql as w
import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tierpool.calibration import synth

REPO = Path(__file__).resolve().parents[2]
CONFORMAL = REPO / "sql" / "conformal"
Z95 = 1.6448536269514722
GAUSSIAN_TAIL = 2 * stats.norm.sf(3.0)


def conformal_models() -> dict[str, str]:
    return {p.stem: p.read_text() for p in sorted(CONFORMAL.glob("*.sql"))}


def load_config(con: duckdb.DuckDBPyConnection, **overrides: float) -> None:
    """The calibration_config seed as a table, with values overridden by key."""
    con.execute(
        "create or replace table calibration_config as select * from read_csv(?, header = true, "
        "columns = {'key': 'VARCHAR', 'value': 'DOUBLE', 'description': 'VARCHAR'})",
        [str(REPO / "seeds" / "calibration_config.csv")])
    for key, value in overrides.items():
        assert con.execute("update calibration_config set value = ? where key = ?",
                           [value, key]).fetchall()[0][0] == 1, key


def build_conformal(con: duckdb.DuckDBPyConnection, only: set[str] | None = None) -> None:
    """Create the conformal models (or those in ``only``) as tables, in dependency order."""
    models = conformal_models()
    for name in w.build_order(models):
        if only is None or name in only:
            con.execute(f"create or replace table {name} as {models[name]}")


def truth_priors(con: duckdb.DuckDBPyConnection, data: synth.SynthData, window_end: str) -> None:
    """``priors`` and ``latest_fit`` from the generator's truth: pred = N(level + deviation,
    sigma_model), which is exactly the residuals' distribution for Gaussian families."""
    con.register("tm", data.truth["truth_models"])
    con.register("tr", data.truth["truth_regions"])
    con.execute(f"""
        create or replace table priors as
        select tm.indicator, tm.model_id, tm.family_id, tr.region_id, tr.region_class_id,
            tm.level + tr.deviation as bias_mean, 0.01 as bias_sd, tm.sigma as dispersion,
            tm.level + tr.deviation as pred_mean, tm.sigma as pred_sd,
            tm.level + tr.deviation - {Z95} * tm.sigma as pred_q05,
            tm.level + tr.deviation + {Z95} * tm.sigma as pred_q95,
            'model' as source_level, 'region' as region_level, '2026Q3' as fit_id,
            '1.4.3' as methodology_version, 'model_region' as predictive_kind
        from tm join tr using (indicator)""")
    con.execute(f"""
        create or replace table latest_fit as
        select distinct indicator, '2026Q3' as fit_id, '1.4.3' as methodology_version,
            timestamp '{window_end}' as window_end, timestamp '2026-10-02' as finished_at
        from tm""")


def synth_warehouse(rows: int, seed: int, window_end: str = "2026-10-01",
                    heavy: tuple[str, ...] = ()) -> tuple[duckdb.DuckDBPyConnection, synth.SynthData]:
    data = synth.generate(rows, seed=seed, heavy_tail_families=heavy)
    con = duckdb.connect()
    w.load_frames(con, data.frames())
    w.create_fit_outputs(con)
    w.build(con, only={"tier2_checked", "tier3_checked", "stg_tier2", "stg_tier3", "residuals"})
    load_config(con)
    truth_priors(con, data, window_end)
    build_conformal(con)
    return con, data


@pytest.fixture(scope="module")
def warehouse() -> tuple[duckdb.DuckDBPyConnection, synth.SynthData]:
    return synth_warehouse(150_000, seed=11)


def conformal_k(n: int, alpha_percent: int = 10) -> int:
    """ceil((n + 1)(1 - alpha)) in exact integer arithmetic."""
    return -(-(n + 1) * (100 - alpha_percent) // 100)


# ---------------------------------------------------------------- folds


def test_folds_are_md5_of_the_request_id_and_close_to_the_configured_fractions(warehouse):
    con, _ = warehouse
    folds = con.sql("select request_id, fold_u, fold from request_folds").df()
    expected_u = [int(hashlib.md5(str(r).encode()).hexdigest()[:15], 16) / 2**60
                  for r in folds.request_id]
    assert np.array_equal(folds.fold_u.to_numpy(), np.array(expected_u))
    expected = np.where(folds.fold_u < 0.6, "fit", np.where(folds.fold_u < 0.8, "calibration", "test"))
    assert (folds.fold.to_numpy() == expected).all()
    n = len(folds)
    assert n == con.sql("select count(distinct request_id) from stg_tier3").fetchall()[0][0]
    for fold, fraction in (("fit", 0.6), ("calibration", 0.2), ("test", 0.2)):
        share = (folds.fold == fold).mean()
        assert abs(share - fraction) < 4 * np.sqrt(fraction * (1 - fraction) / n), (fold, share)


def test_folds_are_deterministic_and_follow_the_config(warehouse):
    con, _ = warehouse
    first = con.sql("select * from request_folds order by request_id").df()
    build_conformal(con, only={"request_folds"})
    assert first.equals(con.sql("select * from request_folds order by request_id").df())
    other = duckdb.connect()
    con.sql("select * from stg_tier3").df().pipe(lambda df: other.register("t3", df))
    other.execute("create table stg_tier3 as select * from t3")
    load_config(other, fold_fit_fraction=0.3, fold_calibration_fraction=0.5)
    build_conformal(other, only={"request_folds"})
    shares = dict(other.sql("select fold, avg(1.0) * count(*) / (select count(*) from request_folds) "
                            "from request_folds group by fold").fetchall())
    assert abs(shares["fit"] - 0.3) < 0.02 and abs(shares["calibration"] - 0.5) < 0.02
    # same request, same uniform: a request keeps its position on the unit interval
    moved = other.sql("select count(*) from request_folds").fetchall()[0][0]
    assert moved == len(first)


# ---------------------------------------------------------------- conformal multipliers


def hand_made(con: duckdb.DuckDBPyConnection, cells: list[dict], seed: int = 0) -> pd.DataFrame:
    """residuals, request_folds, priors and latest_fit from a list of cells.

    Each cell: indicator, model_id, family_id, region_id, region_class_id, n and fold;
    residuals ~ N(pred_mean, (1.3 pred_sd)^2) with random pred_mean/pred_sd per cell.
    Returns the residual rows with their score.
    """
    rng = np.random.default_rng(seed)
    rows, priors, next_id = [], [], 1
    for cell in cells:
        mean, sd = rng.normal(0, 0.5), rng.uniform(0.1, 0.8)
        priors.append({**{k: cell[k] for k in ("indicator", "model_id", "family_id", "region_id",
                                                "region_class_id")},
                       "pred_mean": mean, "pred_sd": sd, "pred_q05": mean - Z95 * sd,
                       "pred_q95": mean + Z95 * sd, "bias_mean": mean, "bias_sd": 0.01, "fit_id": "F",
                       "methodology_version": "1.4.3", "source_level": "model", "region_level": "region"})
        residual = rng.normal(mean, 1.3 * sd, cell["n"])
        for r in residual:
            rows.append({**{k: cell[k] for k in ("indicator", "model_id", "family_id", "region_id",
                                                  "region_class_id")},
                         "request_id": next_id, "residual": r, "fold": cell.get("fold", "calibration"),
                         "measured_at": pd.Timestamp(cell.get("measured_at", "2026-05-01")),
                         "fit_quarter": "2026Q2", "score": abs(r - mean) / sd})
            next_id += 1
    frame = pd.DataFrame(rows)
    con.register("_rows", frame)
    con.register("_priors", pd.DataFrame(priors))
    con.execute("create or replace table residuals as select request_id, indicator, model_id, family_id, "
                "region_id, region_class_id, measured_at, fit_quarter, residual from _rows")
    con.execute("create or replace table request_folds as select request_id, 0.5 as fold_u, fold from _rows")
    con.execute("create or replace table priors as select * from _priors")
    con.execute("create or replace table latest_fit as select distinct indicator, 'F' as fit_id, "
                "timestamp '2026-10-01' as window_end from _priors")
    return frame


def cell(model: str, n: int, family: str = "fa", region: str = "ra", klass: str = "ca",
         indicator: str = "energy_wh", **extra) -> dict:
    return {"indicator": indicator, "model_id": model, "family_id": family, "region_id": region,
            "region_class_id": klass, "n": n, **extra}


def test_multiplier_is_the_exact_split_conformal_order_statistic():
    con = duckdb.connect()
    load_config(con, n_min=1)
    sizes = [1, 5, 8, 9, 10, 19, 29, 30, 57, 200, 1001]
    frame = hand_made(con, [cell(f"m{n}", n, family=f"f{n}") for n in sizes], seed=3)
    build_conformal(con, only={"conformal_scores", "conformal_multipliers"})
    got = con.sql("select model_id, n, k, multiplier from conformal_multipliers "
                  "where level = 'cell' and mode = 'random'").df().set_index("model_id")
    for n in sizes:
        scores = np.sort(frame.loc[frame.model_id == f"m{n}", "score"].to_numpy())
        k = conformal_k(n)
        row = got.loc[f"m{n}"]
        assert (row.n, row.k) == (n, k)
        if k > n:  # the bound is infinite for tiny n: 1/(n+1) > alpha
            assert pd.isna(row.multiplier)
        else:
            assert row.multiplier == scores[k - 1]
            # the defining property: at least (1 - alpha)(n + 1) of the n + 1 points are <= q
            assert (scores <= row.multiplier).sum() >= 0.9 * (n + 1) - 1
            # and it is not numpy's interpolating quantile (which under-covers)
            assert row.multiplier >= np.quantile(scores, 0.9)
    # k for n = 9 and n = 29: (n + 1) * 0.9 is an integer up to floating-point error
    assert got.loc["m9"].k == 9 and got.loc["m29"].k == 27 and got.loc["m19"].k == 18


def test_random_data_multipliers_match_numpy_at_every_level():
    con = duckdb.connect()
    load_config(con, alpha=0.2, n_min=1)
    rng = np.random.default_rng(5)
    cells = [cell(f"m{i}", int(rng.integers(2, 80)), family=f"f{i % 3}", region=f"r{i % 4}",
                  klass=f"c{i % 2}", indicator=("energy_wh", "gco2e")[i % 2]) for i in range(24)]
    frame = hand_made(con, cells, seed=9)
    build_conformal(con, only={"conformal_scores", "conformal_multipliers"})
    got = con.sql("select * from conformal_multipliers where mode = 'random'").df()
    keys = {"cell": ["indicator", "model_id", "region_id"],
            "family_class": ["indicator", "family_id", "region_class_id"], "indicator": ["indicator"]}
    for level, key in keys.items():
        part = got[got.level == level]
        groups = frame.groupby(key)
        assert len(part) == groups.ngroups
        for values, group in groups:
            values = values if isinstance(values, tuple) else (values,)
            row = part[np.logical_and.reduce([part[k] == v for k, v in zip(key, values)])].iloc[0]
            n, k = len(group), conformal_k(len(group), 20)
            assert row.n == n and row.k == k
            if k > n:
                assert pd.isna(row.multiplier)
            else:
                assert row.multiplier == np.sort(group.score.to_numpy())[k - 1]


def test_small_cells_fall_back_to_family_class_then_indicator():
    con = duckdb.connect()
    load_config(con)  # n_min 30
    cells = [
        cell("big", 40, family="fa", klass="ca", region="r1"),      # own cell
        cell("small1", 10, family="fa", klass="ca", region="r2"),   # fa x ca has 40+10+25 = 75
        cell("small2", 25, family="fa", klass="ca", region="r3"),
        cell("lonely", 12, family="fb", klass="ca", region="r4"),   # fb x ca has 12 -> indicator
        cell("nodata", 0, family="fa", klass="ca", region="r5"),    # no calibration data at all
        cell("other", 3, family="fz", klass="cz", region="r6", indicator="gco2e"),  # k > n -> none
        cell("test_only", 50, family="fa", klass="ca", region="r7", fold="test"),
    ]
    frame = hand_made(con, cells, seed=1)
    build_conformal(con, only={"conformal_scores", "conformal_multipliers", "conformal_assignment"})
    got = con.sql("select model_id, conformal_level, conformal_n, multiplier from conformal_assignment "
                  "where mode = 'random'").df().set_index("model_id")
    mult = con.sql("select level, model_id, family_id, indicator, multiplier from conformal_multipliers "
                   "where mode = 'random'").df()
    calibration = frame[frame.fold == "calibration"]

    def kth(scores: pd.Series) -> float:
        return np.sort(scores.to_numpy())[conformal_k(len(scores)) - 1]

    assert got.loc["big"].conformal_level == "cell"
    assert got.loc["big"].multiplier == kth(calibration[calibration.model_id == "big"].score)
    fa_ca = kth(calibration[(calibration.family_id == "fa") & (calibration.region_class_id == "ca")].score)
    energy = kth(calibration[calibration.indicator == "energy_wh"].score)
    for model in ("small1", "small2", "nodata", "test_only"):
        assert (got.loc[model].conformal_level, got.loc[model].conformal_n) == ("family_class", 75)
        assert got.loc[model].multiplier == fa_ca
    assert (got.loc["lonely"].conformal_level, got.loc["lonely"].conformal_n) == ("indicator", 87)
    assert got.loc["lonely"].multiplier == energy
    assert got.loc["other"].conformal_level == "none" and pd.isna(got.loc["other"].multiplier)
    assert mult[(mult.level == "cell") & (mult.model_id == "small1")].multiplier.notna().all()
    # the fallback is what tier 2 gets: NULL calibrated bounds only where level is none
    con.execute("create or replace table stg_tier2 as select request_id, indicator, model_id, region_id, "
                "timestamp '2026-05-01' as requested_at, 2.0 as estimate, 1.0 as ci90_low, 3.0 as ci90_high "
                "from residuals")
    con.register("_p", con.sql("select distinct model_id, family_id from priors").df())
    con.execute("create or replace table models as select * from _p")
    con.register("_r", con.sql("select distinct region_id, region_class_id from priors").df())
    con.execute("create or replace table regions as select * from _r")
    build_conformal(con, only={"tier2_calibrated"})
    t2 = con.sql("select model_id, conformal_level, conformal_low from tier2_calibrated").df()
    assert t2[t2.model_id == "other"].conformal_low.isna().all()
    assert t2[t2.model_id != "other"].conformal_low.notna().all()


# ---------------------------------------------------------------- tier2_calibrated


def test_tier2_intervals_flip_from_residual_to_value_scale(warehouse):
    con, _ = warehouse
    df = con.sql("""
        select t.*, p.pred_mean, p.pred_sd, p.pred_q05, p.pred_q95
        from tier2_calibrated t join priors p using (indicator, model_id, region_id)""").df()
    assert len(df) == con.sql("select count(*) from stg_tier2").fetchall()[0][0]
    e = df.estimate.to_numpy()
    assert np.allclose(df.point_calibrated, e * np.exp(-df.bias_mean), rtol=1e-12)
    # the 5% point of the TRUE value comes from the 95% point of the residual
    assert np.allclose(df.prior_low, e * np.exp(-df.pred_q95), rtol=1e-12)
    assert np.allclose(df.prior_high, e * np.exp(-df.pred_q05), rtol=1e-12)
    assert (df.prior_low < df.point_calibrated).all() and (df.point_calibrated < df.prior_high).all()
    half = df.conformal_multiplier * df.pred_sd
    assert np.allclose(df.conformal_low, e * np.exp(-(df.pred_mean + half)), rtol=1e-12)
    assert np.allclose(df.conformal_high, e * np.exp(-(df.pred_mean - half)), rtol=1e-12)
    assert (df.conformal_low < df.conformal_high).all()
    # tier 2's own Monte Carlo interval is passed through untouched
    raw = con.sql("select request_id, indicator, ci90_low, ci90_high from stg_tier2").df()
    merged = df.merge(raw, on=["request_id", "indicator"], suffixes=("", "_raw"))
    assert (merged.ci90_low == merged.ci90_low_raw).all() and (merged.ci90_high == merged.ci90_high_raw).all()


def test_value_interval_covers_the_measurement_exactly_when_the_score_is_within(warehouse):
    con, _ = warehouse
    df = con.sql("""
        select t.conformal_low, t.conformal_high, t3.measurement, s.score, t.conformal_multiplier
        from tier2_calibrated t
        join stg_tier3 t3 using (request_id, indicator)
        join conformal_scores s using (request_id, indicator)""").df()
    inside = (df.measurement >= df.conformal_low) & (df.measurement <= df.conformal_high)
    by_score = df.score <= df.conformal_multiplier
    margin = (df.score - df.conformal_multiplier).abs() > 1e-9  # rounding at the boundary
    assert len(df) > 10_000 and (inside[margin] == by_score[margin]).all()


# ---------------------------------------------------------------- coverage


def test_calibrated_coverage_on_the_test_fold_is_nominal(warehouse):
    con, _ = warehouse
    overall = con.sql("select * from coverage_report where mode = 'random' and grouping = 'overall'").df()
    assert len(overall) == 1
    row = overall.iloc[0]
    n = row.n
    assert n > 10_000 and row.n_without_interval == 0
    assert abs(row.empirical_coverage - 0.9) < 3.5 * np.sqrt(0.09 / n), row.empirical_coverage
    assert row.status == "pass"
    # the widths are those of the assigned intervals
    width = con.sql("""select avg(2 * a.multiplier * s.pred_sd) from conformal_scores s
        join conformal_assignment a using (indicator, model_id, region_id)
        where a.mode = 'random' and s.fold = 'test' and s.period = 'in_window'""").fetchall()[0][0]
    assert row.mean_width_log == pytest.approx(width, rel=1e-12)
    cells = con.sql("select status, count(*) as c from coverage_report where mode = 'random' "
                    "and grouping = 'cell' group by status").df().set_index("status").c
    # right intervals: failures at p < 0.001 are rare, reviews about 5% or fewer
    assert cells.get("fail", 0) <= 2 and cells.get("review", 0) <= 0.1 * cells.sum()
    release = con.sql("select * from coverage_release").df()
    assert len(release) == 1
    rel = release.iloc[0]
    assert rel.empirical_coverage == row.empirical_coverage and rel.status == "pass"
    assert rel.methodology_version == "1.4.3" and rel.fold_mode == "random"
    assert rel.calibrated_from < rel.calibrated_to and rel.out_of_time_n == 0


def holdout_table(con: duckdb.DuckDBPyConnection, rows: list[tuple] = ()) -> None:
    """holdout_scores: (mode, indicator, n_rows, n_effective, n_covered, mean_width_log, elpd, elpd_se)."""
    frame = pd.DataFrame(list(rows), columns=["mode", "indicator", "n_rows", "n_effective", "n_covered",
                                              "mean_width_log", "elpd", "elpd_se"])
    frame = frame.astype({"mode": str, "indicator": str, "n_rows": "int64", "n_effective": float,
                          "n_covered": "int64", "mean_width_log": float, "elpd": float, "elpd_se": float})
    con.register("_h", frame)
    con.execute("create or replace table holdout_scores as select * from _h")


def binomial_fixture(counts: list[tuple[int, int]], holdout: list[tuple] = ()) -> duckdb.DuckDBPyConnection:
    """conformal_scores/assignment where cell i has n test residuals, x of them covered."""
    con = duckdb.connect()
    load_config(con)
    holdout_table(con, holdout)
    rows = []
    for i, (n, x) in enumerate(counts):
        rows += [{"request_id": len(rows) + j, "indicator": "energy_wh", "model_id": f"m{i}",
                  "family_id": f"f{i}", "region_id": "r", "region_class_id": "c", "fold": "test",
                  "period": "in_window", "residual": 0.0, "pred_mean": 0.0, "pred_sd": 1.0,
                  "pred_q05": -1.0, "pred_q95": 1.0, "score": 0.5 if j < x else 2.0} for j in range(n)]
    con.register("_s", pd.DataFrame(rows))
    con.execute("create table conformal_scores as select * from _s")
    con.execute("""create table conformal_assignment as
        select distinct m.mode, s.indicator, s.model_id, s.family_id, s.region_id, s.region_class_id,
            'cell' as conformal_level, 100 as conformal_n, 1.0 as multiplier, 0.0 as pred_mean, 1.0 as pred_sd
        from _s s cross join (values ('random'), ('out_of_time')) as m(mode)""")
    build_conformal(con, only={"coverage_report"})
    return con


def test_binomial_p_values_match_scipy_exactly():
    counts = [(1, 1), (1, 0), (5, 2), (12, 9), (30, 27), (40, 40), (100, 80), (100, 95),
              (400, 372), (1000, 900), (3000, 2650), (2500, 2290), (200, 160), (600, 580)]
    con = binomial_fixture(counts)
    got = con.sql("select model_id, n, n_covered, p_value, status from coverage_report "
                  "where grouping = 'cell'").df().set_index("model_id")
    for i, (n, x) in enumerate(counts):
        row = got.loc[f"m{i}"]
        expected = stats.binomtest(x, n, 0.9).pvalue
        assert (row.n, row.n_covered) == (n, x)
        assert row.p_value == pytest.approx(expected, rel=1e-9, abs=1e-300), (n, x)
        close = abs(x / n - 0.9) <= TOLERANCE  # practical significance first
        status = "pass" if close else "fail" if expected < 0.001 else "review" if expected < 0.05 else "pass"
        assert row.status == status, (n, x, expected)
    assert {"pass", "review", "fail"} <= set(got.status)
    # the overall row pools every cell
    total = con.sql("select n, n_covered, p_value from coverage_report where grouping = 'overall'").df().iloc[0]
    n, x = sum(c[0] for c in counts), sum(c[1] for c in counts)
    assert (total.n, total.n_covered) == (n, x)
    assert total.p_value == pytest.approx(stats.binomtest(x, n, 0.9).pvalue, rel=1e-8, abs=1e-300)
    # the warn-level data test names the failing groups
    failing = w.singular_test(con, "coverage_status_fail")
    expected_fail = {f"m{i}" for i, (n, x) in enumerate(counts)
                     if stats.binomtest(x, n, 0.9).pvalue < 0.001 and abs(x / n - 0.9) > TOLERANCE}
    assert expected_fail and set(failing[failing.grouping == "cell"].model_id) == expected_fail


TOLERANCE = 0.02  # coverage_tolerance in seeds/calibration_config.csv


def test_coverage_status_weighs_practical_against_statistical_significance():
    """Both ends: a tiny miss at a huge n passes; a miss beyond the tolerance still needs the p-value."""
    counts = [(34_000, 30_804),  # 0.906: p ~ 2e-4, but 0.006 from nominal -> pass
              (34_000, 29_920),  # 0.880: p ~ 1e-30 and 0.02 beyond -> fail
              (20, 16),  # 0.80: a large miss, but p = 0.13 at n = 20 -> pass
              (300, 255)]  # 0.85: p ~ 0.004 and beyond the tolerance -> review
    con = binomial_fixture(counts)
    got = con.sql("select model_id, p_value, status from coverage_report where grouping = 'cell' "
                  "order by model_id").df().set_index("model_id")
    assert got.loc["m0"].p_value < 0.001 and got.loc["m0"].status == "pass"
    assert got.loc["m1"].status == "fail"
    assert got.loc["m2"].p_value > 0.05 and got.loc["m2"].status == "pass"
    assert 0.001 < got.loc["m3"].p_value < 0.05 and got.loc["m3"].status == "review"
    tolerance = con.sql("select value from calibration_config where key = 'coverage_tolerance'").fetchall()
    assert tolerance == [(TOLERANCE,)]


def test_coverage_data_test_is_warn_severity():
    assert (REPO / "tests/data/coverage_status_fail.sql").read_text().startswith("-- severity: warn")
    assert (REPO / "tests/data/residual_normality_heavy_tails.sql").read_text().startswith("-- severity: warn")


# ---------------------------------------------------------------- out of time


def test_out_of_time_mode_calibrates_and_tests_on_the_quarter_after_the_fit():
    con, _ = synth_warehouse(60_000, seed=5, window_end="2026-07-01")
    periods = dict(con.sql("select period, count(*) from conformal_scores group by period").fetchall())
    assert periods["in_window"] > 0 and periods["next_quarter"] > 0 and "later" not in periods
    assert con.sql("select min(measured_at) >= timestamp '2026-07-01' from conformal_scores "
                   "where period = 'next_quarter'").fetchall()[0][0]
    window = con.sql("select mode, min(calibrated_from), max(calibrated_to) from conformal_multipliers "
                     "where level = 'indicator' group by mode").df().set_index("mode")
    assert window.loc["out_of_time"].iloc[0] >= pd.Timestamp("2026-07-01")
    assert window.loc["random"].iloc[1] < pd.Timestamp("2026-07-01")
    oot = con.sql("select * from coverage_report where mode = 'out_of_time' and grouping = 'overall'").df()
    expected_n = con.sql("select count(*) from conformal_scores where fold = 'test' "
                         "and period = 'next_quarter'").fetchall()[0][0]
    assert oot.n.iloc[0] + oot.n_without_interval.iloc[0] == expected_n
    assert abs(oot.empirical_coverage.iloc[0] - 0.9) < 3.5 * np.sqrt(0.09 / oot.n.iloc[0])
    release = con.sql("select out_of_time_n, out_of_time_coverage from coverage_release").df().iloc[0]
    assert release.out_of_time_n == oot.n.iloc[0]


# ---------------------------------------------------------------- normality


def test_normality_statistics_match_scipy():
    con = duckdb.connect()
    load_config(con)
    rng = np.random.default_rng(2)
    rows = []
    for family, models in (("fa", 3), ("fb", 2)):
        for m in range(models):
            sigma = rng.uniform(0.2, 1.0)
            for region, n in (("r1", int(rng.integers(1, 300))), ("r2", int(rng.integers(2, 40))), ("r3", 1)):
                shift = rng.normal()
                eps = rng.standard_t(4, n) if family == "fb" else rng.standard_normal(n)
                rows += [{"indicator": "energy_wh", "model_id": f"{family}{m}", "family_id": family,
                          "region_id": region, "residual": shift + sigma * e} for e in eps]
    frame = pd.DataFrame(rows)
    con.register("_r", frame)
    con.execute("create table residuals as select * from _r")
    build_conformal(con, only={"residual_normality"})
    got = con.sql("select * from residual_normality").df().set_index("family_id")
    # the same standardisation in pandas: cell mean, model pooled sd, sqrt(1 - 1/n)
    cells = frame.groupby(["model_id", "region_id"]).residual
    frame["n_cell"] = cells.transform("size")
    frame["dev"] = frame.residual - cells.transform("mean")
    pooled = frame.groupby("model_id").apply(
        lambda g: np.sqrt((g.dev ** 2).sum() / (len(g) - g.region_id.nunique())), include_groups=False)
    frame["z"] = frame.dev / (frame.model_id.map(pooled) * np.sqrt(1 - 1 / frame.n_cell))
    for family, group in frame[frame.n_cell >= 2].groupby("family_id"):
        row = got.loc[family]
        z = group.z.to_numpy()
        assert row.n == len(z)
        assert row.skewness == pytest.approx(stats.skew(z), rel=1e-9, abs=1e-12)
        assert row.excess_kurtosis == pytest.approx(stats.kurtosis(z), rel=1e-9, abs=1e-12)
        x = int((np.abs(z) > 3).sum())
        assert row.tail_count == x
        assert row.tail_p_value == pytest.approx(stats.binom.sf(x - 1, len(z), GAUSSIAN_TAIL), rel=1e-8, abs=1e-14)
    assert got.loc["fa"].excess_kurtosis < 1 < got.loc["fb"].excess_kurtosis


def test_normality_watch_names_the_heavy_tailed_families():
    con, _ = synth_warehouse(100_000, seed=11, heavy=("mistral",))
    flagged = w.singular_test(con, "residual_normality_heavy_tails")
    assert set(flagged.family_id) == {"mistral"} and set(flagged.indicator) == {"energy_wh", "gco2e"}
    assert flagged.heavy_tail_reason.notna().all()
    clean = con.sql("select * from residual_normality where family_id <> 'mistral' and n >= 1000").df()
    assert len(clean) >= 4 and (clean.excess_kurtosis.abs() < 0.5).all()


def test_config_seed_passes_its_own_data_test():
    con = duckdb.connect()
    load_config(con)
    assert w.singular_test(con, "calibration_config_valid").empty
    load_config(con, fold_fit_fraction=0.7, fold_calibration_fraction=0.4)
    assert len(w.singular_test(con, "calibration_config_valid")) == 1


def test_holdout_modes_are_tested_at_the_effective_number_of_groups():
    """A leave-models-out coverage of 0.80 over 3,000 rows is a clear miss if the rows were
    independent, but not when they come from ~6 effective models (rows share a model's bias)."""
    holdout = [("leave_models_out", "energy_wh", 3000, 6.4, 2400, 1.9, -2100.0, 400.0),
               ("leave_models_out", "gco2e", 3000, 60.0, 2400, 2.1, -4000.0, 800.0),
               ("leave_regions_out", "energy_wh", 3000, 12.0, 2712, 2.5, -1900.0, 300.0)]
    con = binomial_fixture([(100, 90)], holdout)
    got = con.sql("select mode, grouping, indicator, n, n_effective, n_covered, empirical_coverage, nominal, "
                  "elpd, elpd_se, p_value, status from coverage_report where mode like 'leave_%'").df()
    rows = got[got.grouping == "indicator"].set_index(["mode", "indicator"])
    for mode, indicator, n, n_eff, covered, _, elpd, se in holdout:
        row = rows.loc[(mode, indicator)]
        k = round(round(n_eff) * covered / n)
        assert (row.n, row.n_effective, row.n_covered, row.nominal) == (n, round(n_eff), covered, 0.9)
        assert row.p_value == pytest.approx(stats.binomtest(k, round(n_eff), 0.9).pvalue, rel=1e-9)
        assert (row.elpd, row.elpd_se) == (elpd, se)
    assert rows.loc[("leave_models_out", "energy_wh")].status == "pass"  # 5 of 6: p = 0.47
    assert rows.loc[("leave_models_out", "gco2e")].status == "review"  # 48 of 60: p = 0.02
    overall = got[got.grouping == "overall"].set_index("mode")
    assert overall.loc["leave_models_out"].n == 6000 and overall.loc["leave_models_out"].n_effective == 66
    assert overall.loc["leave_models_out"].elpd == -6100.0
    assert overall.loc["leave_models_out"].elpd_se == pytest.approx(math.hypot(400.0, 800.0))
    # the conformal modes are untouched: n_effective is n, no elpd
    random = con.sql("select n, n_effective, elpd from coverage_report where mode = 'random' "
                     "and grouping = 'overall'").fetchall()
    assert random == [(100, 100, None)]


def test_holdout_rows_are_all_rows_or_a_uniform_sample_of_whole_requests() -> None:
    """holdout_rows: every residual row with its fold while they number at most
    validation_max_rows; past it, whole requests kept at rate max_rows / rows, independently of
    the fold (binomial tolerances at 5 sd)."""
    con, _ = synth_warehouse(20_000, seed=5)
    residuals = con.execute("select count(*) from residuals").fetchall()[0][0]
    load_config(con, validation_max_rows=residuals)
    build_conformal(con, only={"request_folds", "holdout_rows"})
    full = con.execute("select indicator, model_id, measured_at, residual, fold from holdout_rows").df()
    expected = con.execute("select r.indicator, r.model_id, r.measured_at, r.residual, f.fold from residuals r "
                           "join request_folds f using (request_id)").df()
    key = ["indicator", "model_id", "measured_at", "residual"]
    pd.testing.assert_frame_equal(full.sort_values(key).reset_index(drop=True),
                                  expected.sort_values(key).reset_index(drop=True))

    rate = 0.2
    load_config(con, validation_max_rows=round(residuals * rate))
    build_conformal(con, only={"holdout_rows"})
    per_request = con.execute("""
        select r.request_id, count(*) as n, f.fold,
            bool_or(h.residual is not null) as kept, bool_and(h.residual is not null) as whole
        from residuals r join request_folds f using (request_id)
        left join holdout_rows h on h.residual = r.residual and h.indicator = r.indicator
            and h.measured_at = r.measured_at and h.model_id = r.model_id
        group by r.request_id, f.fold""").df()
    assert (per_request["kept"] == per_request["whole"]).all()  # requests are kept whole
    n = per_request["n"].to_numpy(float)
    kept_rows = n[per_request["kept"].to_numpy()].sum()
    assert abs(kept_rows - rate * n.sum()) < 5 * math.sqrt(rate * (1 - rate) * (n**2).sum())
    for fold, group in per_request.groupby("fold"):  # the same rate in every fold
        m = len(group)
        assert abs(group["kept"].mean() - rate) < 5 * math.sqrt(rate * (1 - rate) / m), fold
