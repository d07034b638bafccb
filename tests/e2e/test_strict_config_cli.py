"""Strict configuration end to end (issue 10, item 3): a bad edit to a built project fails
`tierpool build` with exit 2, the message (file, line, did-you-mean), no traceback, and
leaves every table and file already built as it was."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest
from cli_helpers import copy_fixture, invoke

MODELS_YML = """\
models:
  - name: model_sizes
    config: {materialized: table}
    columns:
      - name: model_id
        data_tests: [unique]
  - name: family_sizes
    config: {materialized: table}
  - name: region_count
    config: {materialized: table}
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """run_basic without its Python model, built once."""
    project = copy_fixture("run_basic", tmp_path_factory.mktemp("strict"))
    shutil.rmtree(project / "python_models")
    (project / "sql" / "big_count.sql").unlink()
    (project / "sql" / "size_history.sql").unlink()
    (project / "sql" / "models.yml").write_text(MODELS_YML)
    result = invoke(project, "build")
    assert result.exit_code == 0, result.output
    return project


@pytest.fixture
def project(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(built, copy)
    return copy


def snapshot(project: Path) -> dict[str, str]:
    """Every relation's rows (hashed) and every file outside target/."""
    con = duckdb.connect(str(project / "target" / "warehouse.duckdb"), read_only=True)
    try:
        names = [r[0] for r in con.execute(
            "select table_name from information_schema.tables order by 1").fetchall()]
        state = {name: hashlib.sha256(repr(con.execute(
            f'select * from "{name}" order by all').fetchall()).encode()).hexdigest()
            for name in names}
    finally:
        con.close()
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*")
                   if "target" not in p.relative_to(project).parts)
    return {**state, "__files__": "\n".join(files)}


def fails_cleanly(project: Path, *expected: str) -> str:
    before = snapshot(project)
    result = invoke(project, "build")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for text in expected:
        assert text in result.output, result.output
    after = snapshot(project)
    assert {k: v for k, v in after.items() if k != "__files__"} == \
        {k: v for k, v in before.items() if k != "__files__"}
    return result.output


def test_misspelt_materialized(project: Path) -> None:
    yml = project / "sql" / "models.yml"
    yml.write_text(MODELS_YML.replace("config: {materialized: table}\n  - name: region_count",
                                      "config: {materialised: view}\n  - name: region_count"))
    fails_cleanly(project, "sql/models.yml:8: unknown key 'materialised' in models > "
                           "family_sizes > config; did you mean 'materialized'?")


def test_column_and_data_test_typos(project: Path) -> None:
    yml = project / "sql" / "models.yml"
    yml.write_text(MODELS_YML.replace("data_tests: [unique]", "data_test: [unique]")
                   + "  - name: big\n    column: []\n")
    (project / "sql" / "big.sql").write_text("select 1 as x\n")
    fails_cleanly(project,
                  "sql/models.yml:6: unknown key 'data_test' in models > model_sizes > columns > "
                  "model_id; did you mean 'data_tests' or 'data_type'?",
                  "sql/models.yml:12: unknown key 'column' in models > big; did you mean 'columns'?")


def test_dbt_hook_is_not_supported(project: Path) -> None:
    (project / "sql" / "models.yml").write_text(MODELS_YML.replace(
        "config: {materialized: table}\n    columns",
        "config: {materialized: table, post-hook: 'drop table families'}\n    columns"))
    fails_cleanly(project, "sql/models.yml:3: 'post-hook' (in models > model_sizes > config) is "
                           "a dbt key tierpool does not support: hooks are not run")


def test_jinja_env_var_in_profiles_path(project: Path) -> None:
    profiles = project / "profiles.yml"
    profiles.write_text(profiles.read_text().replace(
        "path: target/warehouse.duckdb", "path: \"{{ env_var('WAREHOUSE') }}/warehouse.duckdb\""))
    output = fails_cleanly(project, "tierpool does not use Jinja; write ${VAR} or ${VAR:-default}")
    assert "profiles.yml:" in output
    assert not any("{{" in p.name for p in project.rglob("*"))


def test_jinja_in_sql(project: Path) -> None:
    (project / "sql" / "region_count.sql").write_text(
        "select count(*) as n_regions\nfrom {{ source('raw', 'regions') }}\n")
    fails_cleanly(project, "sql/region_count.sql:2: tierpool does not use Jinja; refer to "
                           "models, seeds and sources by name")


def test_multi_statement_source_drops_nothing(project: Path) -> None:
    (project / "sql" / "sources.yml").write_text(
        "sources:\n  - name: regions\n    expression: \"read_csv('data/regions.csv', "
        "header = true); drop table model_sizes\"\n")
    fails_cleanly(project, "sql/sources.yml:3: source 'regions': holds 2 statements; a source "
                           "is one relation expression")


def test_non_utf8_byte_names_the_file(project: Path) -> None:
    (project / "sql" / "family_sizes.sql").write_bytes(
        b"-- caf\xe9\nselect family_id, count(*) as n from model_sizes group by 1\n")
    fails_cleanly(project, "sql/family_sizes.sql: file is not UTF-8 (byte 0xe9 at line 1, "
                           "column 7)")


def test_syntax_error_and_unknown_column_reported_together(project: Path) -> None:
    (project / "sql" / "family_sizes.sql").write_text("select (\nfrom model_sizes\n")
    (project / "sql" / "region_count.sql").write_text("select nope from regions\n")
    output = fails_cleanly(project, "2 problem(s) found before anything ran",
                           "sql/family_sizes.sql:2:",
                           "sql/region_count.sql:1: unknown column 'nope' in table 'regions'")
    assert output.index("family_sizes.sql") < output.index("region_count.sql")
