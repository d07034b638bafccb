"""`tierpool query` is read-only: statement checks (both engines) and DuckDB's locked-down open.

DuckDB's read-only mode protects the database file only: COPY ... TO, EXPORT DATABASE,
ATTACH ... (read_only false) and file-reading table functions all ran before. Each case here
is refused with a message, and what it would have touched is unchanged.
"""

from __future__ import annotations

import duckdb
import pytest

from tierpool.adapters import adapter_for
from tierpool.adapters.read_only import _open, check_read_only, view_file_paths
from tierpool.errors import SqlError

READS = [
    "select * from priors",
    "with a as (select 1 as x) select * from a",
    "values (1), (2)",
    "from priors",
    "table priors",
    "(select 1) union all (select 2)",
    "select * from main.priors;",
    "-- a comment\nselect 1",
    "describe priors",
    "describe select 1",
    "desc priors",
    "show tables",
    "show all tables",
    "show priors",
    "summarize priors",
    "explain select 1",
    "explain analyze select 1",
    "pragma version",
    "pragma table_info('priors')",
    "call pragma_table_info('priors')",
    "pivot priors on family using count(*)",
    "select * from range(3)",
    "select * from duckdb_tables()",
    'select * from "priors"',
    "select list_transform([1, 2], x -> x + 1)",
]

REFUSED = [
    ("copy priors to 'sql/priors/latest_fit.sql'", "COPY reads and writes files"),
    ("COPY (select 1) TO '/tmp/x.csv'", "COPY"),
    ("copy priors from 'x.csv'", "COPY"),
    ("attach 'other.duckdb' as o (read_only false)", "ATTACH opens another database"),
    ("detach o", "DETACH"),
    ("use o", "USE"),
    ("export database 'dump'", "EXPORT DATABASE writes files"),
    ("import database 'dump'", "IMPORT DATABASE"),
    ("install httpfs", "INSTALL"),
    ("force install httpfs", "INSTALL"),
    ("load httpfs", "LOAD"),
    ("set enable_external_access = true", "SET changes"),
    ("reset threads", "RESET"),
    ("create table x as select 1", "CREATE changes the warehouse"),
    ("insert into priors values (1)", "INSERT"),
    ("update priors set a = 1", "UPDATE"),
    ("delete from priors", "DELETE"),
    ("drop table priors", "DROP"),
    ("checkpoint", "CHECKPOINT"),
    ("vacuum", "VACUUM"),
    ("begin transaction", "transactions"),
    ("pragma enable_profiling", "PRAGMA enable_profiling is not a read"),
    ("select * from read_csv('data/x.csv')", "read_csv() reads files"),
    ("select * from read_csv_auto('x.csv')", "read_csv_auto() reads files"),
    ("select * from read_parquet(['a.parquet', 'b.parquet'])", "read_parquet() reads files"),
    ("select * from read_json('x.json')", "read_json() reads files"),
    ("select read_text('/etc/passwd')", "read_text() reads files"),
    ("select * from parquet_scan('x')", "parquet_scan() reads files"),
    ("select count(*) from glob('*')", "glob() reads files"),
    ("select * from sniff_csv('x.csv')", "sniff_csv() reads files"),
    ("select * from 'x.csv'", "'x.csv' is a file"),
    ('select * from "/etc/passwd"', "'/etc/passwd' is a file"),
    ("select * from priors, 'a.parquet'", "'a.parquet' is a file"),
    ("with x as (select * from 'f.csv') select * from x", "'f.csv' is a file"),
    ("select * from (select * from read_parquet('x'))", "read_parquet()"),
    ("describe 'x.csv'", "'x.csv' is a file"),
    ("summarize read_csv('x.csv')", "read_csv()"),
    ("call read_csv('x.csv')", "read_csv()"),
    ("explain copy priors to 'x'", "COPY"),
    ("explain analyze copy priors to 'x'", "COPY"),
    ("select * from query('select 1')", "query() runs SQL text"),
    ("select getenv('HOME')", "getenv() reads the environment"),
    ("select * from parquet.`/tmp/x`", "a file used as a table"),
    ("select * from csv.`/tmp/x.csv`", "a file used as a table"),
    ("select reflect('java.lang.System', 'exit', 0)", "reflect() calls Java"),
    ("select 1; select 2", "one statement at a time"),
    ("select 1; copy priors to 'x'", "one statement at a time"),
]


@pytest.mark.parametrize("sql", READS)
def test_reads_pass_the_check(sql):
    check_read_only(sql)


@pytest.mark.parametrize(("sql", "reason"), REFUSED)
def test_writes_and_file_reads_are_refused_with_a_reason(sql, reason):
    with pytest.raises(SqlError) as info:
        check_read_only(sql)
    message = str(info.value)
    assert message.startswith("tierpool query is read-only: ") and reason in message
    assert "tierpool build" in message or "source" in message


@pytest.mark.parametrize("sql", ["", "  ;  ", "-- only a comment"])
def test_empty_sql_asks_for_a_statement(sql):
    with pytest.raises(SqlError, match="needs a SQL statement"):
        check_read_only(sql)


def test_view_file_paths_resolve_relative_paths_and_keep_glob_folders(tmp_path):
    files, folders = view_file_paths(
        [
            "CREATE VIEW a AS SELECT * FROM read_parquet('/p/data/**/*.parquet');",
            'CREATE VIEW b AS SELECT * FROM "/p/x.csv";',
            "CREATE VIEW c AS SELECT * FROM read_csv('data/r.csv', header = true);",
            "CREATE VIEW d AS SELECT * FROM read_parquet(['a.parquet', 's3://bucket/b.parquet']);",
            "CREATE VIEW e AS SELECT 1 AS x;",
        ],
        tmp_path,
    )
    assert files == sorted(["/p/x.csv", "data/r.csv", str(tmp_path / "data/r.csv"), "a.parquet",
                            str(tmp_path / "a.parquet")])
    assert folders == ["/p/data"]


# -- DuckDB: nothing outside the warehouse is touched ------------------------------------------


@pytest.fixture
def warehouse(make_target, tmp_path):
    """A small DuckDB warehouse: a table, a view over a CSV and a view over a parquet glob."""
    (tmp_path / "data" / "parts").mkdir(parents=True)
    (tmp_path / "data" / "regions.csv").write_text("region_id,n\nfr,1\nse,2\n")
    (tmp_path / "secret.csv").write_text("password\nhunter2\n")
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "latest_fit.sql").write_text("select 1 as fit\n")
    con = duckdb.connect()
    for i in range(2):
        con.execute(f"copy (select {i} as part) to '{tmp_path}/data/parts/p{i}.parquet'")
    other = tmp_path / "other.duckdb"
    con.execute(f"attach '{other}' as other")
    con.execute("create table other.t as select 1 as x")
    con.close()
    target = make_target("duckdb")
    writer = adapter_for(target, tmp_path)
    writer.open()
    writer.build_table("priors", "select 'a' as model_id, 0.5 as bias_mean")
    writer.create_view("regions", f"select * from read_csv('{tmp_path}/data/regions.csv')")
    writer.create_view("parts", "select * from read_parquet('data/parts/*.parquet')")
    writer.create_view("priors_view", "select * from priors")
    writer.close()
    reader = adapter_for(target, tmp_path, read_only=True)
    yield reader
    reader.close()


def test_reads_of_tables_and_views_work(warehouse):
    assert warehouse.query_read_only("select model_id from priors").rows == [("a",)]
    assert warehouse.query_read_only("select * from priors_view").rows == [("a", 0.5)]
    # a source's view reads its files: allowed (absolute, relative and glob paths)
    assert warehouse.query_read_only("select sum(n) from regions").rows == [(3,)]
    assert warehouse.query_read_only("select sum(part) from parts").rows == [(1,)]
    assert ("priors",) in warehouse.query_read_only("show tables").rows
    assert warehouse.query_read_only("pragma version").columns[0] == "library_version"


def test_copy_to_a_file_is_refused_and_writes_nothing(warehouse, tmp_path):
    latest = tmp_path / "sql" / "latest_fit.sql"
    for sql in (f"copy priors to '{tmp_path}/out.csv'", f"copy (select 2) to '{latest}' (header false)"):
        with pytest.raises(SqlError, match="read-only: COPY"):
            warehouse.query_read_only(sql)
    assert not (tmp_path / "out.csv").exists()
    assert latest.read_text() == "select 1 as fit\n"


def test_attach_read_write_and_insert_are_refused_other_db_unchanged(warehouse, tmp_path):
    other = tmp_path / "other.duckdb"
    with pytest.raises(SqlError, match="ATTACH"):
        warehouse.query_read_only(f"attach '{other}' as o (read_only false)")
    with pytest.raises(SqlError, match="INSERT"):
        warehouse.query_read_only("insert into o.t values (2)")
    con = duckdb.connect(str(other), read_only=True)
    assert con.execute("select * from t").fetchall() == [(1,)]
    con.close()


def test_export_install_and_local_files_are_refused(warehouse, tmp_path):
    with pytest.raises(SqlError, match="EXPORT DATABASE"):
        warehouse.query_read_only(f"export database '{tmp_path}/dump'")
    assert not (tmp_path / "dump").exists()
    with pytest.raises(SqlError, match="INSTALL"):
        warehouse.query_read_only("install httpfs")
    for sql in (f"select * from read_csv('{tmp_path}/secret.csv')", f"select * from '{tmp_path}/secret.csv'",
                "select * from 'secret.csv'"):
        with pytest.raises(SqlError, match="read-only"):
            warehouse.query_read_only(sql)


def test_guarded_connection_refuses_even_unchecked_statements(warehouse, tmp_path):
    """Defence in depth: the connection itself cannot write or read files beyond the views'."""
    con = _open(warehouse.path, tmp_path, 0.0)
    try:
        with pytest.raises(duckdb.Error):
            con.execute(f"copy (select 1) to '{tmp_path}/sql/latest_fit.sql'")
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"select * from read_csv('{tmp_path}/secret.csv')")
        with pytest.raises(duckdb.Error):
            con.execute(f"attach '{tmp_path}/other.duckdb' as o (read_only false)")
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("set enable_external_access = true")
        assert con.execute("select sum(n) from regions").fetchall() == [(3,)]
    finally:
        con.close()
    assert (tmp_path / "sql" / "latest_fit.sql").read_text() == "select 1 as fit\n"


def test_lock_down_does_not_leak_into_other_connections(warehouse):
    warehouse.query_read_only("select 1")
    con = duckdb.connect(str(warehouse.path), read_only=True)
    try:
        assert con.execute("select current_setting('enable_external_access')").fetchone()[0] is True
    finally:
        con.close()


# -- Spark: the same statement checks ----------------------------------------------------------


def test_spark_query_read_only_refuses_writes_and_files(make_target, tmp_path):
    target = make_target("spark")
    writer = adapter_for(target, tmp_path)
    writer.open()
    writer.build_table("priors", "select 'a' as model_id")
    reader = adapter_for(target, tmp_path, read_only=True)
    assert reader.query_read_only("select model_id from priors").rows == [("a",)]
    for sql, reason in [(f"select * from parquet.`{tmp_path}`", "a file used as a table"),
                        ("select * from read_csv('x.csv')", "read_csv()"),
                        ("insert into priors values ('b')", "INSERT"),
                        ("select reflect('java.lang.System', 'exit', 0)", "reflect()")]:
        with pytest.raises(SqlError, match="read-only") as info:
            reader.query_read_only(sql)
        assert reason in str(info.value)
    assert reader.query_read_only("select count(*) from priors").rows == [(1,)]
