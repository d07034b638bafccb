"""Fingerprint helpers of the build state: volatile SQL and the files a reader matches."""

from __future__ import annotations

import os

from tierpool.core.state import file_inputs, is_volatile_sql


def test_volatile_functions_outside_literals_and_comments():
    assert is_volatile_sql("select now() as at")
    assert is_volatile_sql("select * from t where d < current_date")
    assert is_volatile_sql("select random() < 0.5 as coin")
    assert is_volatile_sql("select * from duckdb_tables()")
    assert not is_volatile_sql("select 'random' as mode, 'now()' as s from t -- not random()\n")
    assert not is_volatile_sql("select a /* current_date */ from t")


def test_file_inputs_globs_relative_paths_and_tracks_changes(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("x\n1\n")
    expr = "read_csv('data/*.csv', delim = ',')"
    first = file_inputs(expr, tmp_path)
    assert first is not None
    assert [[os.path.basename(f[0]) for f in files] for _, files in first] == [[], ["a.csv"]]
    assert file_inputs(expr, tmp_path) == first
    (data / "b.csv").write_text("x\n2\n")  # a new file matching the glob
    second = file_inputs(expr, tmp_path)
    assert second != first
    st = (data / "b.csv").stat()
    (data / "b.csv").write_text("x\n3\n")  # same size and (restored) mtime, content differs
    os.utime(data / "b.csv", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_inputs(expr, tmp_path) != second


def test_file_inputs_volatile_without_files_or_for_urls(tmp_path):
    assert file_inputs("read_parquet('missing/*.parquet')", tmp_path) is None
    assert file_inputs("some_table", tmp_path) is None
    (tmp_path / "x.csv").write_text("a\n")
    assert file_inputs("read_csv(['x.csv', 'https://example.com/y.csv'])", tmp_path) is None
