"""The adapter contract, on DuckDB and on Spark (local[2]): the same behaviour on both.

Each test gets an empty warehouse of each engine (Spark: its own database in this worker's
shared session) and checks what the runner relies on: failed writes keep the old relation,
appends are idempotent by unique_key, seeds are typed and all-or-nothing, Python-model
outputs are checked, cast and swapped together, read-only queries refuse writes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from tierpool.adapters import FrameOutput, adapter_for
from tierpool.core.nodes import Column, Seed
from tierpool.errors import ModelError, SqlError

ENGINES = ["duckdb", "spark"]


@pytest.fixture(params=ENGINES)
def adapter(request, make_target, tmp_path):
    (tmp_path / "seeds").mkdir(exist_ok=True)
    adapter = adapter_for(make_target(request.param), tmp_path)
    adapter.open()
    yield adapter
    adapter.close()


def _rows(adapter, sql):
    return sorted(adapter.fetch(sql).rows)


def test_view_and_table_replace_each_other(adapter):
    adapter.create_view("a", "select 1 as x")
    assert adapter.relation_kind("a") == "view"
    assert adapter.build_table("a", "select 1 as x union all select 2 as x") == 2
    assert adapter.relation_kind("a") == "table"
    adapter.create_view("a", "select 3 as x")
    assert adapter.relation_kind("a") == "view"
    assert _rows(adapter, "select x from a") == [(3,)]


@pytest.mark.parametrize("kind", ["view", "table"])
def test_failed_write_keeps_previous_relation(adapter, kind):
    adapter.build_table("a", "select 1 as x")
    bad = "select no_such_column from a"
    with pytest.raises(Exception):
        if kind == "view":
            adapter.create_view("a", bad)
        else:
            adapter.build_table("a", bad)
    assert adapter.relation_kind("a") == "table"
    assert _rows(adapter, "select x from a") == [(1,)]
    assert set(adapter.relation_kinds()) == {"a"}  # no staging relation left behind


def test_append_with_unique_key_is_idempotent_and_accumulates(adapter):
    sql = "select * from (values (1, 'a'), (2, 'b')) as t(k, v)"
    for _ in range(2):
        assert adapter.append("h", sql, ("k",)) == 2
    assert adapter.count("select * from h") == 2
    adapter.append("h", "select * from (values (2, 'B'), (3, 'c')) as t(k, v)", ("k",))
    assert _rows(adapter, "select k, v from h") == [(1, "a"), (2, "B"), (3, "c")]


def test_append_with_a_new_column_keeps_the_history(adapter):
    """A new version of a model appends one more column: the old rows get NULL (dbt's
    on_schema_change: append_new_columns), nothing fails, nothing is lost."""
    adapter.append("h", "select 1 as k, 'a' as v", ("k",))
    adapter.append("h", "select 2 as k, 'b' as v, 7 as attempt", ("k",))
    assert _rows(adapter, "select k, v, attempt from h") == [(1, "a", None), (2, "b", 7)]
    frame = pd.DataFrame({"k": [3], "v": ["c"], "attempt": [1], "extra": [0.5]})
    adapter.write_frames([FrameOutput("h", frame, (), "append", ("k",))])
    assert _rows(adapter, "select k, attempt, extra from h") == [(1, None, None), (2, 7, None), (3, 1, 0.5)]


def test_seed_is_typed_and_all_or_nothing(adapter, tmp_path: Path):
    csv = tmp_path / "seeds" / "models.csv"
    seed = Seed(name="models", path=Path("seeds/models.csv"), columns=(Column("total_params_b", "DOUBLE"),))
    csv.write_text("model_id,total_params_b\na,1\nb,2.5\n")
    assert adapter.load_seed(seed) == 2
    assert _rows(adapter, "select model_id, total_params_b from models") == [("a", 1.0), ("b", 2.5)]
    lines = ["model_id,total_params_b"] + [f"m{i},{i}" for i in range(12)] + ["bad,abc", "z,3"]
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ModelError) as info:
        adapter.load_seed(seed)
    assert str(info.value) == "seeds/models.csv:14: column total_params_b: could not convert 'abc' to DOUBLE"
    assert _rows(adapter, "select model_id from models") == [("a",), ("b",)]


def test_seed_row_with_too_many_fields_is_never_dropped(adapter, tmp_path: Path):
    (tmp_path / "seeds" / "m.csv").write_text("model_id,total_params_b\na,1\nb,2,3\n")
    seed = Seed(name="m", path=Path("seeds/m.csv"))
    with pytest.raises(ModelError, match=r"seeds/m.csv:3: .*too many columns"):
        adapter.load_seed(seed)
    assert adapter.relation_kind("m") is None


def test_write_frames_checks_casts_and_swaps_together(adapter):
    cols = (Column("id", "VARCHAR"), Column("x", "DOUBLE"))
    written = adapter.write_frames([
        FrameOutput("o", pd.DataFrame({"id": ["a"], "x": [1]}), cols),
        FrameOutput("p", pa.table({"id": ["x", "y"], "x": [1.5, 2.5]}), cols, "append", ("id",)),
    ])
    assert written == {"o": 1, "p": 2}
    assert adapter.fetch("select x from o").rows == [(1.0,)]
    with pytest.raises(ModelError, match="output 'o': missing column\\(s\\) x; unexpected column\\(s\\) y"):
        adapter.write_frames([FrameOutput("o", pd.DataFrame({"id": ["a"], "y": [1]}), cols)])
    # the second output cannot be cast: neither output changes
    with pytest.raises(ModelError, match="column 'x' value 'abc' cannot be cast to declared type DOUBLE"):
        adapter.write_frames([
            FrameOutput("o", pd.DataFrame({"id": ["b"], "x": [9.0]}), cols),
            FrameOutput("p", pd.DataFrame({"id": ["z"], "x": ["abc"]}), cols, "append", ("id",)),
        ])
    assert adapter.fetch("select id, x from o").rows == [("a", 1.0)]
    assert _rows(adapter, "select id from p") == [("x",), ("y",)]
    assert set(adapter.relation_kinds()) == {"o", "p"}


def test_empty_append_output_adds_nothing_but_creates_table(adapter):
    cols = (Column("fit_id", "VARCHAR"), Column("v", "DOUBLE"))
    assert adapter.write_frames([FrameOutput("fits", pd.DataFrame(), cols, "append", ("fit_id",))]) == {"fits": 0}
    assert adapter.count("select * from fits") == 0
    assert [c.lower() for c in adapter.fetch("select * from fits").columns] == ["fit_id", "v"]


def test_read_frame_round_trips_types(adapter):
    adapter.build_table(
        "t", "select 'a' as s, cast(2 as bigint) as n, 1.5 as x, "
             "cast('2026-07-01 12:30:00' as timestamp) as ts, cast('2026-07-01' as date) as d")
    frame = adapter.read_frame("t")
    assert list(frame.columns) == ["s", "n", "x", "ts", "d"]
    row = frame.iloc[0]
    assert (row["s"], int(row["n"]), float(row["x"])) == ("a", 2, 1.5)
    assert pd.Timestamp(row["ts"]) == pd.Timestamp("2026-07-01 12:30:00")
    assert pd.Timestamp(row["d"]) == pd.Timestamp("2026-07-01")


def test_query_read_only_refuses_writes(adapter):
    adapter.build_table("a", "select 1 as x")
    adapter.close()
    reader = adapter_for(adapter.target, adapter.root, read_only=True)
    try:
        assert reader.query_read_only("select x from a").rows == [(1,)]
        with pytest.raises(SqlError):
            reader.query_read_only("drop table a")
    finally:
        reader.close()
    adapter.open()
    assert adapter.relation_kind("a") == "table"


def test_spark_temp_views_of_the_callers_session_do_not_shadow_the_warehouse(make_target, tmp_path):
    """A notebook's (or another test's) active session may hold a temp view named like a model:
    tierpool works in its own session on the same SparkContext, so it reads its own tables."""
    adapter = adapter_for(make_target("spark"), tmp_path)
    adapter.open()
    try:
        adapter.build_table("models", "select 1 as x")
        from pyspark.sql import SparkSession

        callers = SparkSession.getActiveSession().newSession()
        callers.createDataFrame([(99, "shadow")], "x int, y string").createOrReplaceTempView("models")
        assert SparkSession.getActiveSession() is callers  # creating a frame made it active
        adapter.close()
        adapter.open()
        assert _rows(adapter, "select * from models") == [(1,)]
        reader = adapter_for(adapter.target, adapter.root, read_only=True)
        assert reader.query_read_only("select * from models").rows == [(1,)]
        reader.close()
    finally:
        callers.catalog.dropTempView("models")
        adapter.close()


def test_tests_of_a_view_see_its_rows_through_a_snapshot(adapter, monkeypatch):
    """Tests many of which read one view (Spark: from a snapshot of it) report what the view holds."""
    from tierpool.core.execute_tests import run_data_tests
    from tierpool.core.nodes import DataTest

    adapter.build_table("facts", "select * from (values (1, 'a'), (2, null), (3, null), (4, 'd')) t(k, v)")
    adapter.create_view("facts_view", "select k, v from facts where k > 1")
    tests = [DataTest(name=f"t{i}", kind="test", depends_on=("facts_view",), attached_to=("facts_view",),
                      sql=sql)
             for i, sql in enumerate(["select * from facts_view where v is null",
                                      "select * from facts_view where k > 10",
                                      "select k from facts_view group by k having count(*) > 1"])]
    statements: list[str] = []
    execute = adapter.execute
    monkeypatch.setattr(adapter, "execute", lambda sql: (statements.append(sql), execute(sql))[1])
    if adapter.snapshot_min_tests is not None:
        monkeypatch.setattr(adapter, "snapshot_min_tests", 2)
    results = run_data_tests(adapter, tests, None, views={"facts_view"})
    assert [(r.name, r.failures) for r in results] == [("t0", 2), ("t1", 0), ("t2", 0)]
    assert sorted(e["k"] for e in results[0].examples) == [2, 3]
    snapshots = [s for s in statements if s.startswith("CREATE TABLE") and "tsnap_facts_view" in s]
    assert len(snapshots) == (1 if adapter.type == "spark" else 0)
    assert set(adapter.relation_kinds()) == {"facts", "facts_view"}  # nothing left behind
    if adapter.type == "spark":
        assert not adapter.session().catalog.tableExists(f"{adapter.schema}.__tierpool_tsnap_facts_view")
