"""target/project_cache.pkl: reused while no project input changed, never trusted after a change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import invoke, query

from tierpool.core import project_cache
from tierpool.core.project_model import Project, key_of_test

MODELS_YML = """\
models:
  - name: doubled
    config: {materialized: table}
    columns:
      - name: v
        data_tests: [not_null]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "seeds").mkdir(parents=True)
    (root / "sql").mkdir()
    (root / "tests" / "data").mkdir(parents=True)
    (root / "seeds" / "base.csv").write_text("id,x\n1,10\n2,20\n")
    (root / "sql" / "doubled.sql").write_text("select id, x * 2 as v\nfrom base\n")
    (root / "sql" / "models.yml").write_text(MODELS_YML)
    (root / "tests" / "data" / "no_negative.sql").write_text("select * from doubled where v < 0\n")
    (root / "tierpool_project.yml").write_text("name: proj\nvars:\n  who: ${TP_CACHE_WHO:-nobody}\n")
    (root / "profiles.yml").write_text(
        "tierpool:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        "      path: ${TP_CACHE_DB:-target/warehouse.duckdb}\n"
    )
    return root


def build(root: Path) -> None:
    result = invoke(root, "build")
    assert result.exit_code == 0, result.output


def edit(path: Path, text: str) -> None:
    """Rewrite a file and move its mtime on, so even a same-size edit is a change."""
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def cached(root: Path) -> Project | None:
    return project_cache.load(root, project_cache.cache_key(root, None))


def test_second_command_reuses_the_cached_project(project: Path) -> None:
    build(project)
    hit = cached(project)
    assert hit is not None and sorted(hit.nodes) == ["base", "doubled"]
    # The parsed queries were not pickled but are parsed again on demand.
    assert hit.parsed["doubled"].sql(dialect="duckdb") == "SELECT id, x * 2 AS v FROM base"
    assert "from doubled" in hit.parsed[key_of_test("no_negative")].sql(dialect="duckdb").lower()
    from tierpool.core.compile import check_project

    check_project(hit)  # compile checks work from the lazily parsed queries
    build(project)
    assert query(project, "select sum(v) from doubled") == [(60,)]


def test_edited_sql_file_invalidates_the_cache(project: Path) -> None:
    build(project)
    edit(project / "sql" / "doubled.sql", "select id, x * 3 as v\nfrom base\n")
    assert cached(project) is None
    build(project)
    assert query(project, "select sum(v) from doubled") == [(90,)]
    assert cached(project) is not None


def test_edited_yml_invalidates_the_cache(project: Path) -> None:
    build(project)
    edit(project / "sql" / "models.yml", MODELS_YML.replace("table", "view"))
    build(project)
    assert query(project, "select table_type from information_schema.tables "
                          "where table_name = 'doubled'") == [("VIEW",)]
    hit = cached(project)
    assert hit is not None and hit.nodes["doubled"].config["materialized"] == "view"


def test_new_sql_file_invalidates_the_cache(project: Path) -> None:
    build(project)
    (project / "sql" / "tripled.sql").write_text("select id, v * 3 as w from doubled\n")
    build(project)
    assert query(project, "select sum(w) from tripled") == [(180,)]


def test_edited_profiles_yml_invalidates_the_cache(project: Path) -> None:
    build(project)
    edit(project / "profiles.yml", (project / "profiles.yml").read_text()
         .replace("target/warehouse.duckdb", "target/other.duckdb"))
    build(project)
    assert (project / "target" / "other.duckdb").exists()
    hit = cached(project)
    assert hit is not None and hit.target.path == project / "target" / "other.duckdb"


def test_env_vars_of_profiles_and_project_yml_invalidate_the_cache(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(project)
    assert cached(project).vars == {"who": "nobody"}  # type: ignore[union-attr]
    monkeypatch.setenv("TP_CACHE_DB", str(tmp_path / "env.duckdb"))
    monkeypatch.setenv("TP_CACHE_WHO", "alice")
    assert cached(project) is None
    build(project)
    assert (tmp_path / "env.duckdb").exists()
    hit = cached(project)
    assert hit is not None and hit.vars == {"who": "alice"}
    assert hit.target.path == tmp_path / "env.duckdb"


def test_corrupt_or_foreign_pickle_falls_back_to_a_normal_load(project: Path) -> None:
    build(project)
    pkl = project / "target" / project_cache.CACHE_FILE
    for junk in (b"not a pickle", pkl.read_bytes()[:50], b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01."):
        pkl.write_bytes(junk)
        assert cached(project) is None
        edit(project / "sql" / "doubled.sql", (project / "sql" / "doubled.sql").read_text())
        build(project)
        assert query(project, "select sum(v) from doubled") == [(60,)]
        assert cached(project) is not None  # rewritten by the normal load


def test_broken_project_is_reported_even_with_a_cache(project: Path) -> None:
    build(project)
    edit(project / "sql" / "doubled.sql", "select id, x * 2 as v from bse\n")
    result = invoke(project, "build")
    assert result.exit_code == 2 and "unknown table 'bse'" in result.output


def test_build_from_the_cache_does_not_import_sqlglot(project: Path) -> None:
    build(project)
    code = (
        "import sys\n"
        "from tierpool.cli import cli\n"
        "try:\n"
        f"    cli(['build', '--project-dir', {str(project)!r}])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "print('sqlglot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
