"""`tierpool query` / `show` through the CLI: refusals exit 2 with a message and change nothing;
a build holding the database for a moment is waited for (--wait, TIERPOOL_QUERY_WAIT_S)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from cli_helpers import copy_fixture, invoke


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    project = copy_fixture("run_basic", tmp_path_factory.mktemp("ro"))
    result = invoke(project, "build")
    assert result.exit_code == 0, result.output
    return project


def _refused(project, sql, reason):
    result = invoke(project, "query", sql)
    assert result.exit_code == 2, result.output
    assert "tierpool query is read-only" in result.output and reason in result.output
    assert "Traceback" not in result.output


def test_copy_cannot_overwrite_project_files(built):
    own_sql = built / "sql" / "model_sizes.sql"
    before = own_sql.read_text()
    _refused(built, f"copy (select 1) to '{own_sql}' (header false)", "COPY reads and writes files")
    _refused(built, "copy models to 'sql/model_sizes.sql'", "COPY")
    assert own_sql.read_text() == before


def test_attach_export_install_and_file_reads_are_refused(built, tmp_path):
    other = tmp_path / "other.duckdb"
    _refused(built, f"attach '{other}' as o (read_only false)", "ATTACH")
    _refused(built, "insert into o.t values (1)", "INSERT")
    assert not other.exists()
    _refused(built, f"export database '{tmp_path}/dump'", "EXPORT DATABASE writes files")
    assert not (tmp_path / "dump").exists()
    _refused(built, "install httpfs", "INSTALL")
    _refused(built, "select * from read_csv('data/regions.csv')", "read_csv() reads files")
    _refused(built, "select * from '/etc/hostname'", "is a file")


def test_source_views_and_show_still_work(built):
    result = invoke(built, "query", "select count(*) as n from regions", "--format", "csv")
    assert result.exit_code == 0 and result.output == "n\n2\n", result.output
    shown = invoke(built, "show", "regions", "--limit", "1")
    assert shown.exit_code == 0 and "region_id" in shown.output, shown.output


_HOLDER = textwrap.dedent("""
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])  # read-write: holds the file lock like a build
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
    print("released", flush=True)
""")


def _hold(project, seconds):
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(project / "target" / "warehouse.duckdb"), str(seconds)],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_query_waits_for_a_build_holding_the_database(built):
    holder = _hold(built, 1.5)
    start = time.monotonic()
    try:
        result = invoke(built, "query", "select count(*) as n from models", "--wait", "10",
                        "--format", "csv")
    finally:
        holder.wait(timeout=60)
    assert result.exit_code == 0, result.output
    assert time.monotonic() - start >= 1.0  # it did wait for the holder
    assert result.output.splitlines()[0] == "n"


def test_query_fails_with_the_lock_message_after_the_wait(built, monkeypatch):
    holder = _hold(built, 30)
    try:
        monkeypatch.setenv("TIERPOOL_QUERY_WAIT_S", "0.3")
        result = invoke(built, "query", "select 1")
    finally:
        holder.kill()
        holder.wait(timeout=60)
    assert result.exit_code == 2, result.output
    assert "is locked by process" in result.output and "Waited 0.3 s" in result.output
    assert "Traceback" not in result.output
