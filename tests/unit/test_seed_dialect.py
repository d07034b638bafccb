"""Seeds keep their dialect (issue 10, item 2): RFC 4180, never sniffed.

Delimiter ',', quote '"', escape '""', a header line checked against the declared columns,
LF and CRLF record ends mixed in one file, UTF-8. A malformed file fails with file and
line before anything is written, so the previous table stays as it was, on every engine.
"""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pytest

from tierpool.adapters import adapter_for, csv_seed
from tierpool.core.nodes import Column, Seed
from tierpool.errors import ModelError

HEADER = "request_id,indicator,estimate"
GOOD = HEADER + '\n1,"energy_wh",0.5\n2,"gco2e",1.5\n'
COLUMNS = (
    Column("request_id", "BIGINT"), Column("indicator", "VARCHAR"), Column("estimate", "DOUBLE"))


def _write(tmp_path: Path, data: str | bytes, name: str = "t2.csv") -> Path:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8", newline="")
    return path


def _read(path: Path, declared: dict | None = None) -> list[tuple]:
    declared = {c.name: c.type for c in COLUMNS} if declared is None else declared
    con = duckdb.connect()
    try:
        rows = con.sql(csv_seed.seed_select(path, declared, path.name)).fetchall()
        csv_seed.raise_rejects(con, path.name)
        return rows
    finally:
        con.close()


def _error(path: Path, declared: dict | None = None) -> str:
    with pytest.raises(ModelError) as info:
        _read(path, declared)
    return str(info.value)


# -- the reader -----------------------------------------------------------------------------


def test_crlf_rows_appended_by_python_csv_to_an_lf_file_load(tmp_path: Path):
    path = _write(tmp_path, GOOD)
    with path.open("a", newline="", encoding="utf-8") as f:  # csv's default lineterminator: CRLF
        csv.writer(f).writerows([[3, "energy_wh", 2.5], [4, "a, b", 3.5]])
    assert b"\r\n" in path.read_bytes() and b"5\n" in path.read_bytes()
    assert _read(path) == [
        (1, "energy_wh", 0.5), (2, "gco2e", 1.5), (3, "energy_wh", 2.5), (4, "a, b", 3.5)]
    assert not list(path.parent.glob("*.csv"))[1:]  # nothing written next to the seed


def test_crlf_inside_a_quoted_value_is_kept(tmp_path: Path):
    path = _write(tmp_path, HEADER + '\r\n1,"two\r\nlines",0.5\n2,"say ""hi""",1\r\n')
    assert _read(path) == [(1, "two\r\nlines", 0.5), (2, 'say "hi"', 1.0)]


def test_quotes_never_reach_column_names(tmp_path: Path):
    path = _write(tmp_path, '"request_id","indicator","estimate"\n1,"x",0.5\n')
    con = duckdb.connect()
    names = [row[0] for row in con.sql(f"describe {csv_seed.seed_select(path, {})}").fetchall()]
    assert names == ["request_id", "indicator", "estimate"]


def test_unterminated_quote_names_file_and_line(tmp_path: Path):
    path = _write(tmp_path, GOOD + '3,"energy_wh,0.7\n4,"gco2e",0.9\n')
    message = _error(path)
    assert message.startswith("t2.csv:4: malformed quote: the quoted field that starts on line 4")
    assert 'write a literal " inside a quoted field as ""' in message


def test_quote_left_open_to_the_end_of_the_file(tmp_path: Path):
    path = _write(tmp_path, GOOD + '3,"energy_wh,0.7\n')
    assert _error(path).startswith("t2.csv:4: unterminated quote: the quoted field that starts")


def test_quote_inside_an_unquoted_value(tmp_path: Path):
    path = _write(tmp_path, GOOD + '3,energy"wh,0.7\n')
    assert _error(path).startswith("t2.csv:4: malformed quote: a '\"' inside an unquoted value")


@pytest.mark.parametrize(
    ("row", "words"), [("3,x,0.7,9", "too many columns: 4"), ("3,x", "too few columns: 2")])
def test_wrong_field_count_names_the_line(tmp_path: Path, row: str, words: str):
    path = _write(tmp_path, GOOD + "\n" + row + "\n")  # a blank line before it is skipped
    assert _error(path).startswith(f"t2.csv:5: {words} field(s) where the header has 3")


def test_value_that_does_not_cast_names_line_and_column(tmp_path: Path):
    path = _write(tmp_path, GOOD + "3,x,lots\n")
    assert _error(path) == "t2.csv:4: column estimate: could not convert 'lots' to DOUBLE"


def test_non_utf8_byte_names_file_and_line(tmp_path: Path):
    path = _write(tmp_path, GOOD.encode() + b"3,caf\xe9,0.7\n")
    message = _error(path)
    assert message.startswith("t2.csv:4: byte 0xe9 at column 6 is not UTF-8")
    assert "save the file as UTF-8" in message


def test_utf8_bom_is_accepted(tmp_path: Path):
    path = _write(tmp_path, b"\xef\xbb\xbf" + GOOD.encode())
    assert _read(path)[0] == (1, "energy_wh", 0.5)


def test_stray_carriage_return_names_the_line(tmp_path: Path):
    path = _write(tmp_path, GOOD + "3,x\r,0.7\n")
    message = _error(path)
    assert message.startswith("t2.csv:4: a carriage return (\\r) that does not end the line")


def test_misspelled_header_column_gets_did_you_mean(tmp_path: Path):
    path = _write(tmp_path, GOOD.replace("estimate", "estimat", 1))
    message = _error(path)
    assert message.startswith("t2.csv:1: header: declared column 'estimate' is not in the header;")
    assert "did you mean 'estimat'?" in message


def test_missing_header_column_is_named(tmp_path: Path):
    path = _write(tmp_path, "request_id,indicator\n1,x\n")
    message = _error(path)
    assert "declared column 'estimate' is not in the header" in message
    assert "header: request_id, indicator" in message


def test_duplicate_or_empty_header_names(tmp_path: Path):
    assert "column 'A' appears twice" in _error(_write(tmp_path, "a,b,A\n1,2,3\n"), {})
    assert "column 2 has no name" in _error(_write(tmp_path, "a,,c\n1,2,3\n"), {})


def test_header_order_and_case_are_free_and_undeclared_columns_are_inferred(tmp_path: Path):
    path = _write(tmp_path, "Estimate,request_id,note,indicator\n0.5,1,7,x\n")
    assert _read(path) == [(0.5, 1, 7, "x")]


def test_empty_file(tmp_path: Path):
    assert _error(_write(tmp_path, "")).startswith("t2.csv:1: the file is empty")


def test_describe_uses_the_pinned_dialect(tmp_path: Path):
    path = _write(tmp_path, '"a","b"\n1,"x"\r\n2,"y"\n')
    described = csv_seed.describe(duckdb.connect(), path, {"b": "VARCHAR"})
    assert described == {"a": "BIGINT", "b": "VARCHAR"}
    assert csv_seed.describe(duckdb.connect(), _write(tmp_path, 'a\n"x\n', "bad.csv"), {}) is None


# -- through the adapters: the previous table is kept ---------------------------------------


@pytest.fixture(params=["duckdb", "spark"])
def adapter(request, make_target, tmp_path):
    (tmp_path / "seeds").mkdir(exist_ok=True)
    adapter = adapter_for(make_target(request.param), tmp_path)
    adapter.open()
    yield adapter
    adapter.close()


def test_bad_seed_keeps_previous_table_and_crlf_appends_load(adapter, tmp_path: Path):
    path = tmp_path / "seeds" / "t2.csv"
    seed = Seed(name="t2", path=Path("seeds/t2.csv"), columns=COLUMNS)
    path.write_text(GOOD, encoding="utf-8", newline="")
    assert adapter.load_seed(seed) == 2
    good = sorted(adapter.fetch("select * from t2").rows)
    path.write_text(GOOD + '3,"energy_wh,0.7\n4,"gco2e",0.9\n', encoding="utf-8", newline="")
    with pytest.raises(ModelError, match=r"^seeds/t2\.csv:4: malformed quote"):
        adapter.load_seed(seed)
    kept = adapter.fetch("select * from t2")
    assert sorted(kept.rows) == good
    assert [c.lower() for c in kept.columns] == ["request_id", "indicator", "estimate"]
    path.write_text(GOOD, encoding="utf-8", newline="")
    with path.open("a", newline="", encoding="utf-8") as f:
        csv.writer(f).writerow([3, "gco2e", 2.5])
    assert adapter.load_seed(seed) == 3
