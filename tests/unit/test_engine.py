"""engine.py against real DuckDB files: atomic replace, append with unique_key, outputs."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pytest

from tierpool import engine
from tierpool.errors import DatabaseError, ModelError
from tierpool.nodes import Column


@pytest.fixture()
def con(tmp_path):
    connection = engine.connect(tmp_path / "w.duckdb")
    yield connection
    connection.close()


def test_strip_sql_removes_trailing_semicolon_and_comment():
    assert engine.strip_sql("select 1 as x;\n-- the end\n") == "select 1 as x"
    assert engine.strip_sql("select ';' as x") == "select ';' as x"


def test_replace_relation_switches_between_view_and_table(con):
    with engine.transaction(con):
        assert engine.replace_relation(con, "a", "select 1 as x", "view") is None
    assert engine.relation_kind(con, "a") == "view"
    with engine.transaction(con):
        assert engine.replace_relation(con, "a", "select 1 as x union all select 2", "table") == 2
    assert engine.relation_kind(con, "a") == "table"


@pytest.mark.parametrize(
    ("kind", "bad_sql"),
    [("view", "select no_such_column from a"), ("table", "select cast('oops' as integer) as x")],
)
def test_failed_replace_keeps_previous_relation(con, kind, bad_sql):
    with engine.transaction(con):
        engine.replace_relation(con, "a", "select 1 as x", "table")
    with pytest.raises(Exception), engine.transaction(con):
        engine.replace_relation(con, "a", bad_sql, kind)
    assert engine.relation_kind(con, "a") == "table"
    assert con.execute("select x from a").fetchall() == [(1,)]


def test_append_with_unique_key_is_idempotent_and_accumulates(con):
    sql = "select * from (values (1, 'a'), (2, 'b')) t(k, v)"
    for _ in range(2):
        with engine.transaction(con):
            assert engine.append_rows(con, "h", sql, ("k",)) == 2
    assert engine.count_rows(con, "h") == 2
    with engine.transaction(con):
        engine.append_rows(con, "h", "select * from (values (2, 'B'), (3, 'c')) t(k, v)", ("k",))
    assert con.execute("select k, v from h order by k").fetchall() == [(1, "a"), (2, "B"), (3, "c")]


def test_write_output_casts_and_checks_columns(con):
    cols = (Column("id", "VARCHAR"), Column("x", "DOUBLE"))
    with engine.transaction(con):
        n = engine.write_output(con, "o", pd.DataFrame({"id": ["a"], "x": [1]}), cols, "table")
    assert n == 1
    assert con.execute("select typeof(x) from o").fetchall()[0][0] == "DOUBLE"
    with pytest.raises(ModelError, match="output 'o': missing column\\(s\\) x; unexpected column\\(s\\) y"):
        engine.write_output(con, "o", pd.DataFrame({"id": ["a"], "y": [1]}), cols, "table")
    with pytest.raises(ModelError, match="column 'x' value 'abc' cannot be cast to declared type DOUBLE"):
        engine.write_output(con, "o", pd.DataFrame({"id": ["a"], "x": ["abc"]}), cols, "table")


def test_write_output_accepts_arrow_and_relation(con):
    cols = (Column("id", "VARCHAR"),)
    with engine.transaction(con):
        engine.write_output(con, "a", pa.table({"id": ["x", "y"]}), cols, "table")
    import duckdb

    other = duckdb.connect()
    rel = engine.detach(other.sql("select 'z' as id"))
    other.close()
    with engine.transaction(con):
        engine.write_output(con, "b", rel, cols, "table")
    assert engine.count_rows(con, "a") == 2 and engine.count_rows(con, "b") == 1


def test_empty_append_output_adds_nothing_but_creates_table(con):
    cols = (Column("fit_id", "VARCHAR"), Column("v", "DOUBLE"))
    with engine.transaction(con):
        assert engine.write_output(con, "fits", pd.DataFrame(), cols, "append", ("fit_id",)) == 0
    assert engine.count_rows(con, "fits") == 0
    assert [r[0] for r in con.execute("describe fits").fetchall()] == ["fit_id", "v"]


def test_read_only_connect_of_missing_file_is_clear(tmp_path):
    with pytest.raises(DatabaseError, match="no warehouse at .*run `tierpool build` first"):
        engine.connect(tmp_path / "missing.duckdb", read_only=True)


def test_lock_held_by_other_process_names_path_and_pid(tmp_path):
    path = tmp_path / "w.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, sys, time; c = duckdb.connect({str(path)!r}); print('ready', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(DatabaseError) as info:
            engine.connect(path, read_only=True)
        assert str(path) in str(info.value)
        assert f"process {holder.pid}" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
