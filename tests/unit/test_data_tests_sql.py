"""data_tests.py: generic tests become SQL that selects failing rows (run on DuckDB)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tierpool.core import nodes
from tierpool.core.data_tests import (
    build_generic_tests,
    canonical_kind,
    check_test_args,
    generic_test_sql,
    load_singular_test,
    read_severity,
)
from tierpool.errors import ProjectError


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(
        "create table models as select * from (values "
        "('m1', 'f1', 'dense', 7.0), ('m2', 'f1', 'moe', 141.0), ('m2', 'f9', 'sparse', -1.0), "
        "(null, 'f2', 'dense', null)) as t(model_id, family_id, architecture, params)"
    )
    con.execute("create table families as select * from (values ('f1'), ('f2')) as t(family_id)")
    return con


def failing(con: duckdb.DuckDBPyConnection, kind: str, column: str | None = "model_id",
            where: str | None = None, **args: object) -> int:
    spec = nodes.TestSpec(kind, "models", column, dict(args), where=where)
    return len(con.execute(generic_test_sql(spec)).fetchall())


@pytest.mark.parametrize(
    ("kind", "column", "where", "args", "expected"),
    [
        ("not_null", "model_id", None, {}, 1),
        ("not_null", "model_id", "params > 0", {}, 0),
        ("unique", "model_id", None, {}, 1),  # one duplicated value (m2)
        ("unique", "model_id", "family_id <> 'f2'", {}, 1),
        ("unique", "model_id", "architecture <> 'sparse'", {}, 0),
        ("accepted_values", "architecture", None, {"values": ["dense", "moe"]}, 1),
        ("accepted_values", "architecture", None, {"values": ["dense", "moe", "sparse"]}, 0),
        ("relationships", "family_id", None, {"to": "ref('families')", "field": "family_id"}, 1),
        ("relationships", "family_id", None, {"to": "families", "field": "family_id"}, 1),
        ("accepted_range", "params", None, {"min_value": 0}, 1),
        ("accepted_range", "params", None, {"min_value": 7, "max_value": 141}, 1),
        ("accepted_range", "params", None, {"min_value": 7, "inclusive": False}, 2),
        ("expression", "params", None, {"expression": ">= 0"}, 1),
        ("expression", "params", None, {"expression": "between 0 and 100"}, 2),
        ("expression", None, None, {"expression": "params > 0 or architecture = 'dense'"}, 1),
    ],
)
def test_generic_sql_counts_failing_rows(con: duckdb.DuckDBPyConnection, kind: str,
                                        column: str | None, where: str | None,
                                        args: dict[str, object], expected: int) -> None:
    assert failing(con, kind, column, where, **args) == expected


def test_values_are_quoted(con: duckdb.DuckDBPyConnection) -> None:
    spec = nodes.TestSpec("accepted_values", "models", "architecture", {"values": ["it's"]})
    assert "'it''s'" in generic_test_sql(spec)
    assert len(con.execute(generic_test_sql(spec)).fetchall()) == 4


def test_names_are_dbt_like_and_deduplicated() -> None:
    specs = [
        nodes.TestSpec("not_null", "models", "model_id"),
        nodes.TestSpec("expression", "models", None, {"expression": "params > 0"}),
        nodes.TestSpec("expression", "models", None, {"expression": "params < 1000"},
                       severity="warn"),
        nodes.TestSpec("relationships", "models", "family_id",
                       {"to": "ref('families')", "field": "family_id"}),
    ]
    tests = build_generic_tests(specs, str)
    assert [t.name for t in tests] == [
        "not_null_models_model_id",
        "expression_models",
        "expression_models_2",
        "relationships_models_family_id__family_id__families",
    ]
    assert tests[2].severity == "warn"
    assert tests[3].attached_to == ("models", "families")
    assert tests[3].depends_on == ("models", "families")
    assert tests[0].attached_to == ("models",) and tests[0].spec is specs[0]


def test_where_subquery_adds_dependency() -> None:
    spec = nodes.TestSpec("not_null", "models", "model_id",
                          where="family_id in (select family_id from families)")
    (test,) = build_generic_tests([spec], str)
    assert set(test.depends_on) == {"models", "families"}
    assert test.attached_to == ("models",)


def test_unknown_kind_lists_valid_kinds() -> None:
    with pytest.raises(ProjectError) as info:
        check_test_args("not_nul", {}, "sql/schema.yml: 'models.model_id'")
    message = str(info.value)
    assert message.startswith("sql/schema.yml: 'models.model_id': unknown data test 'not_nul'")
    assert "not_null, unique, accepted_values, relationships, accepted_range, expression" in message


@pytest.mark.parametrize(
    ("kind", "args", "missing"),
    [
        ("accepted_values", {}, "values"),
        ("relationships", {"to": "x"}, "field"),
        ("accepted_range", {"inclusive": True}, "min_value or max_value"),
        ("expression", {}, "expression"),
    ],
)
def test_missing_arguments(kind: str, args: dict[str, object], missing: str) -> None:
    with pytest.raises(ProjectError, match=f"needs {missing}"):
        check_test_args(kind, args, "x.yml")


def test_kind_aliases() -> None:
    assert canonical_kind("dbt_utils.accepted_range") == "accepted_range"
    assert canonical_kind("expression_is_true") == "expression"


def test_singular_test(tmp_path: Path) -> None:
    path = tmp_path / "assert_families_have_models.sql"
    path.write_text("-- severity: warn\nselect f.* from families f\n"
                    "where not exists (select 1 from models m where m.family_id = f.family_id);\n")
    test, query = load_singular_test(path, "tests/data/assert_families_have_models.sql")
    assert test.name == "assert_families_have_models"
    assert test.severity == "warn"
    assert test.depends_on == test.attached_to == ("families", "models")
    assert test.spec is None and not test.sql.endswith(";")
    assert query is not None


def test_singular_severity_default_and_invalid() -> None:
    assert read_severity("select 1", "t.sql") == "error"
    with pytest.raises(ProjectError, match=r"t.sql:1: severity must be 'error' or 'warn'"):
        read_severity("-- severity: fatal\nselect 1", "t.sql")
