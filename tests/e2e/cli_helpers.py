"""Helpers shared by the CLI end-to-end tests (copy a fixture project, invoke the CLI)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from tierpool.cli import cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "projects"


def copy_fixture(name: str, tmp_path: Path) -> Path:
    """Copy tests/fixtures/projects/<name> to tmp_path/<name> (without any target/)."""
    dest = tmp_path / name
    shutil.copytree(FIXTURES / name, dest, ignore=shutil.ignore_patterns("target"))
    return dest


def invoke(project: Path, *args: str) -> Result:
    """Run ``tierpool <args> --project-dir <project>`` in-process."""
    return CliRunner().invoke(cli, [*args, "--project-dir", str(project)])


def run_results(project: Path) -> dict[str, Any]:
    """target/run_results.json keyed by node/test name."""
    data = json.loads((project / "target" / "run_results.json").read_text())
    return {r["name"]: r for r in data["results"]} | {"__all__": data}


def query(project: Path, sql: str) -> list[tuple]:
    """Rows of a read-only query against the project's warehouse."""
    import duckdb

    con = duckdb.connect(str(project / "target" / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def synth_project(dest: Path, fit_vars: dict[str, Any], rows: int = 20_000, seed: int = 1) -> Path:
    """`tierpool synth --out dest` with ``vars.fit`` replaced by ``fit_vars`` (a test profile), no hold-out validation."""
    import yaml

    synth = CliRunner().invoke(cli, ["synth", "--rows", str(rows), "--seed", str(seed), "--out", str(dest)])
    assert synth.exit_code == 0, synth.output
    config_path = dest / "tierpool_project.yml"
    config = yaml.safe_load(config_path.read_text())
    config.setdefault("vars", {})["fit"] = fit_vars
    config["vars"].pop("validation", None)  # no hold-out refits (tests/e2e/test_warehouse_build.py covers them)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return dest
