"""Run the demo project's SQL straight in DuckDB, without the engine.

A deliberately tiny stand-in for ``tierpool build`` used by test_demo_sql.py and
test_synth.py: load frames as tables, create one table per SQL model in dependency
order (dependencies read with sqlglot scopes), create the Python model outputs as
empty tables from their yml declarations, run singular tests.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import sqlglot
import yaml
from sqlglot.optimizer.scope import traverse_scope

REPO = Path(__file__).resolve().parents[2]


# The SQL this harness checks (other models, e.g. conformal calibration, have their own tests)
WAREHOUSE_DIRS = ("staging", "calibration", "priors")


def sql_models(project: Path = REPO) -> dict[str, str]:
    """Model name -> SQL text for the sql/{staging,calibration,priors}/*.sql of the project."""
    return {p.stem.lower(): p.read_text()
            for d in WAREHOUSE_DIRS for p in sorted((project / "sql" / d).rglob("*.sql"))}


def referenced_tables(sql: str) -> set[str]:
    """Table names a query reads, CTE names excluded."""
    names = set()
    for scope in traverse_scope(sqlglot.parse_one(sql, read="duckdb")):
        for source in scope.sources.values():
            if isinstance(source, sqlglot.exp.Table):
                names.add(source.name.lower())
    return names


def build_order(models: dict[str, str]) -> list[str]:
    """Models sorted so each comes after the models it reads (deterministic)."""
    deps = {name: referenced_tables(sql) & set(models) for name, sql in models.items()}
    order: list[str] = []
    while len(order) < len(models):
        ready = sorted(n for n in models if n not in order and deps[n] <= set(order))
        assert ready, f"cycle among {set(models) - set(order)}"
        order += ready
    return order


def yml_models(project: Path = REPO) -> dict[str, dict]:
    """Every ``models:`` entry of the project's properties yml, by name."""
    entries: dict[str, dict] = {}
    for path in sorted([*(project / "sql").rglob("*.yml"), *(project / "python_models").rglob("*.yml")]):
        for entry in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            entries[entry["name"]] = entry
    return entries


FIT_OUTPUTS = ("posterior_families", "posterior_models", "posterior_region_classes",
               "posterior_regions", "posterior_predictive", "fit_runs", "methodology_releases", "fit_decision")


def python_outputs(project: Path = REPO) -> list[str]:
    """Every output declared in python_models/*.yml (the fit's, interim_priors, fit_draws)."""
    return [entry["name"] for path in sorted((project / "python_models").rglob("*.yml"))
            for entry in (yaml.safe_load(path.read_text()) or {}).get("models", [])]


def create_fit_outputs(con: duckdb.DuckDBPyConnection, project: Path = REPO) -> None:
    """Empty tables for the Python models' outputs (the fit's and the others the SQL reads, e.g.
    interim_priors), typed as declared in yml."""
    entries = yml_models(project)
    for name in dict.fromkeys([*FIT_OUTPUTS, *python_outputs(project)]):
        cols = ", ".join(f'"{c["name"]}" {c["data_type"]}' for c in entries[name]["columns"])
        con.execute(f"create or replace table {name} ({cols})")


def load_frames(con: duckdb.DuckDBPyConnection, frames: dict[str, pd.DataFrame]) -> None:
    """Each frame as a table of the same name."""
    for name, frame in frames.items():
        con.register("_frame", frame)
        con.execute(f"create or replace table {name} as select * from _frame")
        con.unregister("_frame")


def build(con: duckdb.DuckDBPyConnection, only: set[str] | None = None,
          project: Path = REPO) -> list[str]:
    """Create every SQL model (or those in ``only``) as a table, in dependency order."""
    models = sql_models(project)
    order = [n for n in build_order(models) if only is None or n in only]
    for name in order:
        con.execute(f"create or replace table {name} as {models[name]}")
    return order


def singular_test(con: duckdb.DuckDBPyConnection, name: str, project: Path = REPO) -> pd.DataFrame:
    """Failing rows of tests/data/<name>.sql."""
    return con.sql((project / "tests" / "data" / f"{name}.sql").read_text()).df()
