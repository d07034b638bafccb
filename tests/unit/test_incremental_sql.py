"""core/incremental.py: the SQL an incremental build runs, checked by running it on DuckDB;
the DuckDB adapter's high-water mark and relation digests; the Spark translation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from tierpool.adapters import EMPTY_DIGEST
from tierpool.adapters.duckdb_sql import high_water_mark, relation_digests
from tierpool.core import incremental as inc

SINCE = "CAST('2026-01-02 00:00:00' AS TIMESTAMP)"


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("""
        create table events as select * from (values
            (1, 'fr', timestamp '2026-01-01 10:00', 1.0::double),
            (2, 'se', timestamp '2026-01-02 00:00', 2.0),
            (3, 'fr', timestamp '2026-01-03 09:00', 3.0)) as t(id, region, ts, amount);
        create table rates as select * from (values ('fr', 2.0::double), ('se', 0.5)) as t(region, factor);
    """)
    return con


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return sorted(con.execute(sql).fetchall(), key=repr)


@pytest.mark.parametrize("sql", [
    "select e.id, e.amount * r.factor as x from events as e join rates as r on r.region = e.region",
    "select events.id, events.amount * r.factor as x from events join rates r on r.region = events.region",
    "select id, amount * factor as x from events join rates using (region)",
    "with j as (select e.id, e.amount, e.region from events e) "
    "select j.id, j.amount * r.factor as x from j join rates r on r.region = j.region",
    "select id, x from (select e.id, e.amount * r.factor as x from events e, rates r "
    "where r.region = e.region) as q where x > 0",
    "select e.id, e.amount as x from events e where e.region = 'fr' "
    "union all select e.id, -e.amount from events e where e.region = 'se'",
])
def test_filter_reads_keeps_only_event_rows_at_or_after_the_mark(con, sql: str) -> None:
    filtered = inc.filter_reads(sql, ["events"], inc.predicate("ts", SINCE))
    assert "rates WHERE" not in filtered  # lookups are read whole
    expected = rows(con, f"select * from ({sql}) where id in (select id from events where ts >= {SINCE})")
    assert rows(con, filtered) == expected and len(expected) >= 1


def test_filter_reads_leaves_a_cte_of_the_same_name_and_other_schemas_alone(con) -> None:
    sql = "with events as (select 9 as id) select id from events"
    assert inc.filter_reads(sql, ["events"], "at > 1") == "WITH events AS (SELECT 9 AS id) SELECT id FROM events"
    qualified = inc.filter_reads("select id from main.events", ["events"], inc.predicate("ts", SINCE))
    assert "WHERE" not in qualified


def test_filter_reads_filters_every_read_and_keeps_the_alias_scope(con) -> None:
    sql = ("select a.id, b.id as other from events a join events b on b.region = a.region "
           "where a.id <> b.id")
    filtered = inc.filter_reads(sql, ["EVENTS"], inc.predicate("ts", SINCE))
    assert filtered.count('"ts" >= CAST') == 2
    assert rows(con, filtered) == []  # ids 2 (se) and 3 (fr) share no region
    assert rows(con, sql) == [(1, 3), (3, 1)]


def test_the_filter_is_pushed_to_the_scan_through_a_view(con) -> None:
    con.execute("create view stg as select * from events where amount is not null")
    sql = inc.filter_reads("select s.id, r.factor from stg s join rates r on r.region = s.region",
                           ["stg"], inc.predicate("ts", SINCE))
    import json

    plan = json.loads(con.execute(f"explain (format json) {sql}").fetchall()[0][1])

    def scans(nodes):
        for n in nodes:
            if n["name"] == "SEQ_SCAN":
                yield n["extra_info"]
            yield from scans(n.get("children", []))

    events_scan = next(s for s in scans(plan) if s["Table"].endswith(".events"))
    assert "ts >= '2026-01-02 00:00:00'::TIMESTAMP" in str(events_scan["Filters"])


def merge(con: duckdb.DuckDBPyConnection, model: str, key: tuple[str, ...] = ("id",)) -> int:
    """One incremental build of ``target`` from ``model`` as materialize does it."""
    from tierpool.adapters.duckdb_sql import append_rows

    since = high_water_mark(con, "target", "ts")
    filtered = inc.filter_reads(model, ["events"], inc.predicate("ts", since))
    return append_rows(con, "target", inc.new_rows_sql(filtered, "target", "ts", since, key), key, "table")


MODEL = "select e.id, e.ts, e.amount * r.factor as x from events e join rates r on r.region = e.region"


def test_new_rows_merge_to_what_a_full_rebuild_gives(con) -> None:
    con.execute(f"create table target as {MODEL}")
    assert merge(con, MODEL) == 0  # nothing new: the rows at the mark are already there
    con.execute("""insert into events values
        (4, 'se', timestamp '2026-01-04 00:00', 4.0),   -- new
        (5, 'fr', timestamp '2026-01-03 09:00', 5.0),   -- late, at the mark exactly
        (6, 'fr', timestamp '2026-01-01 00:00', 6.0)    -- late, before the mark: not read
    """)
    con.execute("update events set amount = 30 where id = 3")  # changed, at the mark
    assert merge(con, MODEL) == 3
    full = rows(con, MODEL)
    assert rows(con, "select * from target") == [r for r in full if r[0] != 6]
    assert merge(con, MODEL) == 0


def test_duplicate_rows_of_a_new_key_are_merged_as_a_full_rebuild_has_them(con) -> None:
    con.execute(f"create table target as {MODEL}")
    con.execute("insert into events values (7, 'se', timestamp '2026-01-05', 1.0), "
                "(7, 'se', timestamp '2026-01-05', 1.0)")
    assert merge(con, MODEL) == 2
    assert rows(con, "select * from target") == rows(con, MODEL)
    assert merge(con, MODEL) == 0


def test_a_composite_key_with_nulls_replaces_its_row(con) -> None:
    model = "select e.id, e.region, e.ts, e.amount from events e"
    con.execute(f"create table target as {model}")
    con.execute("insert into events values (null, 'fr', timestamp '2026-01-06', 1.0)")
    assert merge(con, model, ("id", "region")) == 1
    con.execute("update events set amount = 2 where id is null")
    assert merge(con, model, ("id", "region")) == 1
    assert rows(con, "select * from target") == rows(con, model)


@pytest.mark.parametrize(("type_name", "value"), [
    ("TIMESTAMP", dt.datetime(2026, 9, 30, 23, 49, 59, 123456)),
    ("TIMESTAMP", dt.datetime(2026, 9, 30, 23, 49, 59)),
    ("DATE", dt.date(2026, 2, 28)),
    ("BIGINT", 9_007_199_254_740_993),
    ("DOUBLE", 0.1 + 0.2),
    ("VARCHAR", "it's 2026"),
    ("DECIMAL(12,3)", "123456789.125"),
    ("TIMESTAMP WITH TIME ZONE", "2026-03-29 01:30:00.5+00"),
])
def test_high_water_mark_reads_back_equal(type_name: str, value: object) -> None:
    con = duckdb.connect()
    con.execute(f"create table t (v {type_name})")
    con.execute("insert into t values (?), (null)", [value])
    literal = high_water_mark(con, "t", "v")
    assert literal is not None and literal.startswith("CAST(")
    assert con.execute(f"select count(*) from t where v = {literal}").fetchall() == [(1,)]
    assert con.execute(f"select count(*) from t where v > {literal}").fetchall() == [(0,)]


def test_high_water_mark_of_an_empty_column_is_none() -> None:
    con = duckdb.connect()
    con.execute("create table t as select null::timestamp as v")
    assert high_water_mark(con, "t", "v") is None


def test_relation_digests_ignore_order_and_see_every_value() -> None:
    con = duckdb.connect()
    con.execute("create table a as select * from (values (1, 'x', 0.5), (2, null, 1.5)) t(k, s, v)")
    con.execute("create table b as select * from a order by k desc")
    con.execute("create table c as select k, s, case when k = 2 then 1.5000000000000002 else v end as v from a")
    con.execute("create table d as select * from a union all select * from a where k = 1")
    got = relation_digests(con, ["a", "b", "c", "d"])
    assert got["a"] == got["b"]
    assert len({got["a"], got["c"], got["d"]}) == 3
    assert relation_digests(con, []) == {}


def test_event_parents_and_why_full() -> None:
    schemas = {"stg": {"id": "BIGINT", "requested_at": "TIMESTAMP"}, "priors": {"id": "BIGINT"}}
    assert inc.event_parents(["priors", "stg"], schemas, "REQUESTED_AT") == ["stg"]
    basis = inc.Basis({"m": "1", "stg": "2"}, {"priors": "a", "config": "b"})
    assert inc.why_full(basis, basis) is None
    assert inc.why_full(None, basis) == "no record of its last successful build"
    assert inc.why_full(basis, inc.Basis(basis.code, {"priors": "z", "config": "y"})) == "config, priors changed"
    assert inc.why_full(basis, inc.Basis(basis.code, {"priors": "a"})) == "config changed"
    assert inc.why_full(basis, inc.Basis({"m": "1", "stg": "3"}, basis.lookups)) == "SQL of stg changed"
    assert inc.Basis.from_dict(basis.as_dict()) == basis
    assert inc.Basis.from_dict({"code": 1}) is None


def test_the_incremental_sql_translates_to_spark() -> None:
    from tierpool.adapters import spark_dialect

    demo = (Path(__file__).parents[2] / "sql" / "conformal" / "tier2_calibrated.sql").read_text()
    since = "CAST('2026-09-30 23:49:59.123456' AS TIMESTAMP)"
    filtered = inc.filter_reads(demo, ["stg_tier2"], inc.predicate("requested_at", since))
    spark = spark_dialect.translate(
        inc.new_rows_sql(filtered, "tier2_calibrated", "requested_at", since, ("request_id", "indicator")),
        "tier2_calibrated")
    # DuckDB's TIMESTAMP has no time zone: Spark's TIMESTAMP_NTZ (the session runs in UTC)
    assert spark.count("`requested_at` >= CAST('2026-09-30 23:49:59.123456' AS TIMESTAMP") == 2
    assert "EXCEPT ALL" in spark and "IS NOT DISTINCT FROM" in spark


# -- the adapter methods, on DuckDB and on Spark -----------------------------------------------

@pytest.fixture(params=["duckdb", "spark"])
def adapter(request, make_target, tmp_path):
    from tierpool.adapters import adapter_for

    adapter = adapter_for(make_target(request.param), tmp_path)
    adapter.open()
    yield adapter
    adapter.close()


def test_adapter_high_water_mark_digests_and_schema(adapter) -> None:
    adapter.build_table("t", "select * from (values (1, timestamp '2026-09-30 23:49:59.123456', "
                             "date '2026-09-30', cast(0.1 as double) + 0.2, 'it''s', 12.345), "
                             "(2, null, null, null, null, null)) as v(k, ts, d, x, s, n)")
    for column in ("k", "ts", "d", "x", "s", "n"):
        mark = adapter.high_water_mark("t", column)
        assert mark is not None and mark.startswith("CAST(")
        assert adapter.count(f"select * from t where {column} >= {mark}") == 1, (column, mark)
    adapter.build_table("e", "select * from t where k < 0")
    assert adapter.high_water_mark("e", "ts") is None

    schema = adapter.query_schema("select k, s, k * 2 as k2 from t")
    assert list(schema) == ["k", "s", "k2"]
    assert schema == adapter.query_schema("select k, s, k + k as k2 from t where k > 9")

    adapter.build_table("u", "select * from t order by k desc")
    adapter.build_table("w", "select k, ts, d, x, case when k = 1 then 's' else s end as s, n from t")
    digests = adapter.relation_digests(["t", "u", "w", "e"])
    assert digests["t"] == digests["u"] != digests["w"]
    # an empty output is fingerprinted without a query (node_build): every engine must agree
    assert digests["e"] == EMPTY_DIGEST != digests["t"]


def test_adapter_merge_adds_or_replaces_rows_and_a_failed_audit_keeps_them(adapter) -> None:
    def got():
        return sorted(adapter.fetch("select k, s from m").rows)

    def files() -> set[str]:  # Spark: the table's Parquet files (DuckDB: nothing to check)
        return set(adapter.session().table("m").inputFiles()) if adapter.type == "spark" else set()

    adapter.build_table("m", "select * from (values (1, 'a'), (2, 'b')) as v(k, s)")
    before = files()
    assert adapter.merge("m", "select * from (values (3, 'c')) as v(k, s)", ["k"]) == 1
    assert got() == [(1, "a"), (2, "b"), (3, "c")]
    assert before <= files()  # new keys only: added as new files, the old ones kept
    assert adapter.merge("m", "select * from (values (2, 'B'), (4, 'd')) as v(k, s)", ["k"]) == 2
    assert got() == [(1, "a"), (2, "B"), (3, "c"), (4, "d")]
    assert not before & files()  # a key replaced: the table was rewritten

    with pytest.raises(RuntimeError), adapter.audited() as visible:
        assert adapter.merge("m", "select * from (values (5, 'e')) as v(k, s)", ["k"]) == 1
        assert adapter.count(f"select * from {visible.get('m', 'm')}") == 5  # the audit sees it
        raise RuntimeError("an error test failed")
    assert got() == [(1, "a"), (2, "B"), (3, "c"), (4, "d")]
    assert set(adapter.relation_kinds()) <= {"m", "t", "u", "w", "e"}  # no stage left behind

    with adapter.audited():
        adapter.merge("m", "select * from (values (5, 'e')) as v(k, s)", ["k"])
    assert got()[-1] == (5, "e") and len(got()) == 5
    assert adapter.merge("m", "select * from m where k < 0", ["k"]) == 0
    assert len(got()) == 5
