"""compile.py / column_check.py: unknown tables, cycles, unknown columns, all together."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlglot

from tierpool.core.column_check import check_columns
from tierpool.core.compile import check_project, relation_schemas
from tierpool.core.project import load_project
from tierpool.errors import CompileErrors, CycleError

BASIC = Path(__file__).parents[1] / "fixtures" / "projects" / "basic"
Factory = Callable[..., Path]


def compile_problems(root: Path) -> list[str]:
    with pytest.raises(CompileErrors) as info:
        check_project(load_project(root))
    return [str(e) for e in info.value.errors]


def test_basic_project_compiles() -> None:
    check_project(load_project(BASIC))


def test_relation_schemas() -> None:
    schemas = relation_schemas(load_project(BASIC))
    assert schemas["models"]["total_params_b"] == "DOUBLE"  # declared
    assert schemas["tier2_estimates"] == {  # sniffed from the CSV behind the source
        "request_id": "VARCHAR", "model_id": "VARCHAR", "estimate": "DOUBLE"}
    assert schemas["cell_counts"] == {"model_id": "VARCHAR", "n_obs": "BIGINT"}
    assert list(schemas["residuals"]) == ["request_id", "family_id", "model_id", "residual"]
    assert list(schemas["priors"]) == ["model_id", "family_id", "bias_mean", "n_obs"]


def test_unknown_column_message(project_factory: Factory) -> None:
    root = project_factory({"sql/r2.sql": """
        select
            t2.request_id,
            ln(t2.estimat) as x
        from tier2_estimates as t2
        """}, base="basic")
    assert compile_problems(root) == [
        "sql/r2.sql:3: unknown column 'estimat' in table 'tier2_estimates' "
        "(columns: estimate, model_id, request_id); did you mean 'estimate'?"]


def test_unknown_columns_in_several_models_reported_together(project_factory: Factory) -> None:
    root = project_factory({
        "sql/a.sql": "select model_id, mean_resid from cell_means",  # Python output schema
        "sql/b.sql": "select request_id, fam_id from residuals",  # upstream SQL model schema
        "sql/c.sql": "with x as (select request_id from residuals) select x.residual from x",
    }, base="basic")
    problems = sorted(compile_problems(root))
    assert problems[0].startswith("sql/a.sql:1: unknown column 'mean_resid' in table 'cell_means'")
    assert problems[1].startswith("sql/b.sql:1: unknown column 'fam_id' in table 'residuals'")
    assert "did you mean 'family_id'?" in problems[1]
    assert len(problems) == 2  # c.sql's CTE column is not confirmed against a table: skipped


def test_generic_test_column_must_exist(project_factory: Factory) -> None:
    root = project_factory({"sql/extra.yml": """
        models:
          - name: model_catalog
            columns:
              - name: modelid
                data_tests: [not_null]
        """}, base="basic")
    assert compile_problems(root) == [
        "sql/extra.yml: data test 'not_null_model_catalog_modelid': unknown column 'modelid' in "
        "table 'model_catalog' (columns: model_id, family_id, display_name, architecture); "
        "did you mean model_id?"]


def test_relationship_field_must_exist(project_factory: Factory) -> None:
    root = project_factory({"sql/extra.yml": """
        models:
          - name: model_catalog
            columns:
              - name: family_id
                data_tests:
                  - relationships: {to: ref('families'), field: family}
        """}, base="basic")
    (message,) = compile_problems(root)
    assert "unknown column 'family' in table 'families'" in message


def test_missing_source_files_skip_downstream_checks(project_factory: Factory) -> None:
    root = project_factory({
        "sql/sources.yml": """
            sources:
              - name: tier2_estimates
                expression: "read_parquet('data/missing/*.parquet')"
              - name: tier3_measurements
                expression: "read_csv('data/tier3.csv')"
            """,
        "sql/uses_missing.sql": "select not_a_column from tier2_estimates",
    }, base="basic")
    project = load_project(root)
    check_project(project)  # no false "unknown column" downstream of an unreadable source
    schemas = relation_schemas(project)
    assert "tier2_estimates" not in schemas and "residuals" not in schemas
    assert "tier3_measurements" in schemas


@pytest.mark.parametrize(
    "sql",
    [
        "select * exclude (estimate) from t2",
        "select request_id, estimate * 2 as e2 from t2 order by e2",
        "select request_id, count(*) as n from t2 group by all having n > 1",
        "select request_id from t2 qualify row_number() over (partition by request_id "
        "order by estimate) = 1",
        "select list_transform([estimate], x -> x + 1) as l from t2",
        "select a.request_id from t2 a where a.estimate > (select avg(estimate) from t2)",
        "select x from t2, read_csv('elsewhere.csv') as r",
        "pivot t2 on request_id using sum(estimate)",
        "select t2.request_id, r.anything from t2, (select * from read_csv('f.csv')) r",
    ],
)
def test_no_false_positives(sql: str) -> None:
    schema = {"t2": {"request_id": "VARCHAR", "estimate": "DOUBLE"}}
    assert check_columns(sqlglot.parse_one(sql, read="duckdb"), schema, "m.sql").problems == ()


@pytest.mark.parametrize(
    ("sql", "columns"),
    [
        ("select * from t2", ["request_id", "estimate"]),
        ("select request_id, ln(estimate) from t2", None),  # unnamed expression
        ("select * from read_csv('f.csv')", None),
    ],
)
def test_output_columns(sql: str, columns: list[str] | None) -> None:
    schema = {"t2": {"request_id": "VARCHAR", "estimate": "DOUBLE"}}
    assert check_columns(sqlglot.parse_one(sql, read="duckdb"), schema, "m.sql").columns == columns


def test_cycle_reported_with_path_and_files(project_factory: Factory) -> None:
    root = project_factory({"sql/a.sql": "select * from c", "sql/b.sql": "select * from a",
                            "sql/c.sql": "select * from b"})
    with pytest.raises(CompileErrors) as info:
        load_project(root)
    (error,) = info.value.errors
    assert isinstance(error, CycleError)
    assert str(error) == "dependency cycle: a -> b -> c -> a (in sql/a.sql, sql/b.sql, sql/c.sql)"


def test_unknown_tables_in_python_model_and_test(project_factory: Factory) -> None:
    root = project_factory({
        "python_models/fit_cells.py": "outputs = ('cell_means', 'cell_counts')\n\n"
                                      "def model(ctx):\n    return ctx.ref('residual')\n",
        "tests/data/assert_x.sql": "select * from familes",
    }, base="basic")
    with pytest.raises(CompileErrors) as info:
        load_project(root)
    assert [str(e) for e in info.value.errors] == [
        "python_models/fit_cells.py:4: unknown table 'residual'; closest: residuals",
        "tests/data/assert_x.sql:1: unknown table 'familes'; closest: families "
        "(data test 'assert_x')",
    ]
