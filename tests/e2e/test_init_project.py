"""`tierpool init`: the scaffold builds at once, passes compile and every test, and is refused
where it would overwrite something."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import invoke, query, run_results
from click.testing import CliRunner

from tierpool.cli import cli


def _init(*args: str) -> object:
    return CliRunner().invoke(cli, ["init", *args])


@pytest.fixture(scope="module")
def scaffold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("init") / "my-warehouse"
    result = _init(str(project))
    assert result.exit_code == 0, result.output
    assert "created project 'my_warehouse'" in result.output
    assert f"tierpool build --project-dir {project}" in result.output
    return project


def test_scaffold_files(scaffold: Path) -> None:
    files = sorted(p.relative_to(scaffold).as_posix() for p in scaffold.rglob("*") if p.is_file())
    assert files == [
        ".gitignore", "README.md", "profiles.yml", "seeds/measurements.csv", "seeds/models.csv",
        "seeds/seeds.yml", "sql/model_bias.sql", "sql/models.yml", "sql/residuals.sql",
        "tests/data/residuals_within_tenfold.sql", "tierpool_project.yml",
    ]
    assert "name: my_warehouse" in (scaffold / "tierpool_project.yml").read_text()
    assert "schema: my_warehouse" in (scaffold / "profiles.yml").read_text()
    assert (scaffold / "README.md").read_text().startswith("# my_warehouse\n")
    assert "target/" in (scaffold / ".gitignore").read_text().splitlines()
    assert "__" not in "".join(p.read_text() for p in scaffold.rglob("*") if p.is_file())


def test_scaffold_compiles_and_builds_with_every_test_passing(scaffold: Path) -> None:
    compiled = invoke(scaffold, "compile")
    assert compiled.exit_code == 0, compiled.output
    assert "ok: 4 nodes" in compiled.output
    built = invoke(scaffold, "build")
    assert built.exit_code == 0, built.output
    results = run_results(scaffold)
    statuses = {name: r["status"] for name, r in results.items() if name != "__all__"}
    assert {statuses[n] for n in ("models", "measurements", "residuals", "model_bias")} == {"success"}
    tests = {n: s for n, s in statuses.items() if results[n]["resource_type"] == "test"}
    assert len(tests) >= 15 and set(tests.values()) == {"pass"}, tests
    assert tests["residuals_within_tenfold"] == "pass"
    assert "accepted_range_models_total_params_b" in tests  # declared tests run (a NULL passes a range)
    rows = query(scaffold, "select model_id, n_requests from model_bias order by model_id")
    assert rows == [("llama-3-70b", 3), ("llama-3-8b", 2), ("mistral-7b", 3), ("mistral-medium-3", 2)]
    types = dict(query(scaffold, "select column_name, data_type from information_schema.columns "
                                 "where table_name = 'measurements'"))
    assert types == {"request_id": "BIGINT", "model_id": "VARCHAR", "estimate_wh": "DOUBLE",
                     "measured_wh": "DOUBLE"}


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    target = tmp_path / "existing"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    result = _init(str(target))
    assert result.exit_code == 2
    assert "is not empty (notes.txt)" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    assert (target / "notes.txt").read_text() == "mine"
    # A file of the scaffold's own, even hidden, is refused too; a bare .git is not.
    (target / "notes.txt").unlink()
    (target / ".gitignore").write_text("mine\n")
    assert _init(str(target)).exit_code == 2
    (target / ".gitignore").unlink()
    (target / ".git").mkdir()
    again = _init(str(target), "--name", "kept")
    assert again.exit_code == 0, again.output
    assert (target / "tierpool_project.yml").is_file() and (target / ".git").is_dir()


def test_init_refuses_a_file_and_a_bad_name(tmp_path: Path) -> None:
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    result = _init(str(a_file))
    assert result.exit_code == 2 and "is a file" in result.output
    bad = _init(str(tmp_path / "p"), "--name", "2x-y")
    assert bad.exit_code == 2 and "must be letters, digits and underscores" in bad.output
    assert not (tmp_path / "p").exists()
