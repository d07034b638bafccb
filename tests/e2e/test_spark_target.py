"""The run_basic project on a Spark target (local[2], this worker's shared session), through
the CLI: the same results, tests, state-based skipping and artifacts as on DuckDB.

The source reads a Parquet file (``read_parquet`` in the project's DuckDB SQL becomes Spark's
``parquet.`path```), so the one project builds unchanged on both engines.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import copy_fixture, invoke, run_results
from conftest import require_spark, spark_profile

RELATIONS = ("models", "families", "model_sizes", "family_sizes", "size_history", "region_count",
             "big_models", "small_models", "big_count")


def _profile(project: Path, spark_root: Path, schema: str, python_max_rows: int | None = None) -> None:
    spark = "\n".join("      " + line for line in spark_profile(spark_root, schema).splitlines())
    if python_max_rows is not None:
        spark += f"\n      python_max_rows: {python_max_rows}"
    (project / "profiles.yml").write_text(
        "tierpool:\n  target: dev\n  outputs:\n"
        "    dev:\n      type: duckdb\n      path: target/warehouse.duckdb\n"
        f"    spark:\n{spark}\n"
    )


@pytest.fixture()
def project(tmp_path: Path, spark_root: Path, spark_schema: Callable[[], str]) -> Path:
    require_spark()
    path = copy_fixture("run_basic", tmp_path)
    regions = path / "data" / "regions.parquet"
    pq.write_table(pa.table({"region_id": ["fr-par-1", "se-sto-1"],
                             "region_class_id": ["western-eu-grid", "nordic"]}), regions)
    (path / "sql" / "sources.yml").write_text(
        "sources:\n  - name: regions\n    expression: \"read_parquet('data/regions.parquet')\"\n")
    _profile(path, spark_root, spark_schema())
    return path


def _rows(project: Path, target: str, relation: str) -> list[tuple]:
    result = invoke(project, "query", f"select * from {relation}", "--format", "json", "--target", target)
    assert result.exit_code == 0, result.output
    return sorted(tuple(sorted(r.items())) for r in json.loads(result.output))


def test_same_project_same_results_on_duckdb_and_spark(project: Path) -> None:
    on_duckdb = invoke(project, "build")
    assert on_duckdb.exit_code == 0, on_duckdb.output
    on_spark = invoke(project, "build", "--target", "spark")
    assert on_spark.exit_code == 0, on_spark.output
    summary = [line for line in on_duckdb.output.splitlines() if line.startswith("Done.")]
    assert summary and summary[0] in on_spark.output
    for relation in RELATIONS:
        assert _rows(project, "spark", relation) == _rows(project, "dev", relation), relation
    manifest = json.loads((project / "target" / "manifest.json").read_text())
    assert manifest["metadata"]["target"] == "spark"
    results = run_results(project)
    assert results["__all__"]["metadata"]["target"] == "spark"
    assert results["model_sizes"]["status"] == "success" and results["model_sizes"]["rows"] == 4


def test_second_spark_build_skips_unchanged_nodes_and_tests(project: Path) -> None:
    assert invoke(project, "build", "--target", "spark").exit_code == 0
    again = invoke(project, "build", "--target", "spark")
    assert again.exit_code == 0, again.output
    got = {n: (r["status"], r["message"]) for n, r in run_results(project).items() if n != "__all__"}
    for name in ("families", "models", "model_sizes", "region_count", "size_history"):
        assert got[name] == ("success", "up to date"), name
    assert got["unique_model_sizes_model_id"] == ("pass", "unchanged")
    assert _rows(project, "spark", "size_history") == _rows(project, "spark", "model_sizes")[:0] + sorted(
        _rows(project, "spark", "size_history"))  # idempotent append: no duplicate keys
    assert len(_rows(project, "spark", "size_history")) == 4


def test_failing_error_test_and_show_on_spark(project: Path) -> None:
    seed = project / "seeds" / "models.csv"
    seed.write_text(seed.read_text() + seed.read_text().splitlines()[1] + "\n")  # duplicate model_id
    result = invoke(project, "build", "--target", "spark")
    assert result.exit_code == 1
    assert "unique_models_model_id" in result.output and "FAIL" in result.output
    shown = invoke(project, "show", "families", "--target", "spark", "--limit", "1")
    assert shown.exit_code == 0 and "family_id" in shown.output


def test_python_model_input_past_row_limit_is_refused(
    project: Path, spark_root: Path, spark_schema: Callable[[], str]
) -> None:
    _profile(project, spark_root, spark_schema(), python_max_rows=2)
    result = invoke(project, "build", "--target", "spark")
    assert result.exit_code == 1
    failed = run_results(project)["split"]
    assert failed["status"] == "error"
    assert "input 'model_sizes' has 4 rows, more than python_max_rows (2)" in failed["message"]
    assert "aggregate it in SQL first" in failed["message"]


def test_query_on_spark_is_read_only(project: Path) -> None:
    built = invoke(project, "build", "--target", "spark")
    assert built.exit_code == 0, built.output
    result = invoke(project, "query", "drop table families", "--target", "spark")
    assert result.exit_code == 2 and "read-only" in result.output
    assert _rows(project, "spark", "families")


def test_compile_checks_columns_against_spark_source_schema(project: Path) -> None:
    (project / "sql" / "region_typo.sql").write_text("select r.region_idd\nfrom regions as r\n")
    result = invoke(project, "compile", "--target", "spark")
    assert result.exit_code == 2
    assert "sql/region_typo.sql:1: unknown column 'region_idd' in table 'regions'" in result.output
    assert "did you mean 'region_id'" in result.output
