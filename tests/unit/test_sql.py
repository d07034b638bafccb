"""sql.py: dependencies from sqlglot scopes, parse errors with positions."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlglot

from tierpool.core.sql import (
    column_lines,
    parse_select,
    referenced_tables,
    statement_text,
)
from tierpool.errors import SqlError

PAIRS = Path(__file__).parents[1] / "fixtures" / "sql" / "dependencies.sql"


def load_pairs(path: Path) -> list[tuple[str, str, list[str]]]:
    """``# title:`` blocks of ``query; expected tables;`` (sqlglot's fixture style)."""
    cases = []
    for block in path.read_text().split("# title: ")[1:]:
        title, _, body = block.partition("\n")
        query, expected, _ = body.split(";\n", 2) if body.count(";\n") >= 2 else (*body.split(";\n"), "")
        names = [n.strip() for n in expected.strip().rstrip(";").split(",") if n.strip()]
        cases.append((title.strip(), query.strip(), names))
    return cases


CASES = load_pairs(PAIRS)


def test_fixture_file_has_cases() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize(("title", "query", "expected"), CASES, ids=[c[0] for c in CASES])
def test_referenced_tables(title: str, query: str, expected: list[str]) -> None:
    parsed = sqlglot.parse_one(query, read="duckdb")
    assert sorted(t.name for t in referenced_tables(parsed)) == sorted(expected)


def test_table_refs_carry_line_and_column() -> None:
    query = parse_select("select *\nfrom a\njoin   bb using (id)", "m.sql")
    refs = {r.name: (r.line, r.col) for r in referenced_tables(query)}
    assert refs["a"][0] == 2
    assert refs["bb"][0] == 3


def test_syntax_error_names_file_line_and_column() -> None:
    with pytest.raises(SqlError) as info:
        parse_select("select a\nfrom\n  where x = 1", "sql/broken.sql")
    message = str(info.value)
    assert message.startswith("sql/broken.sql:3:")
    assert "syntax error" in message
    assert "'where'" in message
    assert "<Token" not in message


def test_several_statements_are_an_error() -> None:
    with pytest.raises(SqlError, match=r"sql/two.sql: found 2 statements"):
        parse_select("select 1; select 2;", "sql/two.sql")


def test_non_select_is_an_error() -> None:
    with pytest.raises(SqlError, match=r"must be a SELECT statement, found CREATE"):
        parse_select("create table x as select 1", "sql/ddl.sql")


def test_empty_file_is_an_error() -> None:
    with pytest.raises(SqlError, match="empty"):
        parse_select("-- nothing here\n", "sql/empty.sql")


def test_with_and_union_are_queries() -> None:
    assert parse_select("with a as (select 1 x) select x from a union select 2", "m.sql")


def test_statement_text_drops_trailing_semicolon_and_comment() -> None:
    sql = "-- keep me\nselect 1 as x -- trailing\n;\n-- the end\n"
    assert statement_text(sql) == "-- keep me\nselect 1 as x"


def test_column_lines() -> None:
    query = parse_select("select a,\n  b\nfrom t\nwhere B > 1", "m.sql")
    assert column_lines(query, "b") == [2, 4]


def test_read_from_reads_staged_relations_and_keeps_qualified_columns() -> None:
    import duckdb

    from tierpool.core.sql import read_from

    sql = ("with models as (select * from models where total > 0) "
           "select models.id from models join families f on f.id = models.fid")
    staged = read_from(sql, {"models": "__stage_models", "families": "__stage_families"})
    con = duckdb.connect()
    con.execute("create table __stage_models as select 1 as id, 'a' as fid, 5 as total")
    con.execute("create table __stage_families as select 'a' as id")
    # Only the staged tables exist: the query must read them, CTE name and aliases intact.
    assert con.execute(staged).fetchall() == [(1,)]
    assert read_from(sql, {}) == sql
