"""Write, audit, publish: a relation that fails an error-severity test is never served.

The run_basic project on DuckDB and on Spark, through the CLI. After a good build, each
case breaks one node so that one of its error tests fails: the build exits 1 naming the
test, and the relation (every output of a Python model), its downstream relations and
what a reader gets all stay exactly as they were. Warn tests do not block publishing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import copy_fixture, invoke
from conftest import require_spark, spark_profile

ENGINES = ["duckdb", "spark"]


@pytest.fixture(params=["duckdb"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    """run_basic built once on the engine; returns (project dir, target name)."""
    path = copy_fixture("run_basic", tmp_path)
    target = "dev"
    if request.param == "spark":
        require_spark()
        spark_root = request.getfixturevalue("spark_root")
        spark = "\n".join("      " + line for line in
                          spark_profile(spark_root, request.getfixturevalue("spark_schema")()).splitlines())
        (path / "profiles.yml").write_text(
            "tierpool:\n  target: dev\n  outputs:\n"
            "    dev:\n      type: duckdb\n      path: target/warehouse.duckdb\n"
            f"    spark:\n{spark}\n"
        )
        # Spark reads Parquet sources (the fixture's read_csv source is DuckDB-only).
        pq.write_table(pa.table({"region_id": ["fr-par-1", "se-sto-1"],
                                 "region_class_id": ["western-eu-grid", "nordic"]}),
                       path / "data" / "regions.parquet")
        (path / "sql" / "sources.yml").write_text(
            "sources:\n  - name: regions\n    expression: \"read_parquet('data/regions.parquet')\"\n")
        target = "spark"
    first = invoke(path, "build", "--target", target)
    assert first.exit_code == 0, first.output
    return path, target


def _rows(project: Path, target: str, relation: str) -> list[tuple]:
    result = invoke(project, "query", f"select * from {relation}", "--format", "json", "--target", target)
    assert result.exit_code == 0, result.output
    return sorted(tuple(sorted(r.items())) for r in json.loads(result.output))


def _snapshot(project: Path, target: str, relations: tuple[str, ...]) -> dict[str, list[tuple]]:
    return {rel: _rows(project, target, rel) for rel in relations}


def test_a_seed_that_fails_its_unique_test_is_not_served(project: tuple[Path, str]) -> None:
    path, target = project
    watched = ("models", "model_sizes", "big_models", "small_models")
    before = _snapshot(path, target, watched)
    with (path / "seeds" / "models.csv").open("a") as f:
        f.write("mistral-7b,mistral,9.9\n")  # a duplicate model_id

    result = invoke(path, "build", "--target", target)

    assert result.exit_code == 1, result.output
    assert "not published" in result.output and "unique_models_model_id" in result.output
    assert "Traceback" not in result.output
    assert _snapshot(path, target, watched) == before


@pytest.mark.parametrize("project", ENGINES, indirect=True)
def test_failing_view_and_python_outputs_keep_their_previous_contents(project: tuple[Path, str]) -> None:
    path, target = project
    watched = ("family_sizes", "big_models", "small_models")
    before = _snapshot(path, target, watched)
    # The view gains a family with no model (its `n_models > 0` test fails); the Python
    # model moves models between its outputs and emits a NULL model_id in big_models.
    view = path / "sql" / "family_sizes.sql"
    view.write_text(view.read_text().rstrip().rstrip(";")
                    + "\nunion all select 'ghost', 0, 0.0\n")
    split = path / "python_models" / "split.py"
    split.write_text(split.read_text().replace(
        'return {"big_models": big, "small_models": small}',
        'big.loc[len(big)] = [None, 1.0]\n    return {"big_models": big, "small_models": small}'))

    result = invoke(path, "build", "--target", target, "--vars", "threshold: 8")

    assert result.exit_code == 1, result.output
    assert "expression_family_sizes" in result.output
    assert "not_null_big_models_model_id" in result.output
    assert result.output.count("not published") == 2
    assert _snapshot(path, target, watched) == before


def test_warn_tests_do_not_block_publishing(project: tuple[Path, str]) -> None:
    path, target = project
    # accepted_range(total_params_b <= 100) is a warn test: a 141B model warns, and is served.
    with (path / "seeds" / "models.csv").open("a") as f:
        f.write("mistral-large,mistral,123\n")

    result = invoke(path, "build", "--target", target)

    assert result.exit_code == 0, result.output
    assert "WARN" in result.output
    assert ("model_id", "mistral-large") in {pair for row in _rows(path, target, "models") for pair in row}
