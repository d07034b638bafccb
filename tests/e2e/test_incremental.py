"""materialized: incremental through the CLI, on DuckDB and on Spark (this worker's shared
session): the first build is full; later builds merge only the event parent's rows at or
after the target's latest event_time and give exactly what a full rebuild gives; a changed
lookup, the model's SQL, its columns or --full-refresh rebuild in full, saying why; a rerun
with nothing new writes 0 rows; a failing error test keeps the previous table.

The project: a seed of events (the event parent, through the view stg_events) and two lookups
(the seed rates, the table region_count), so every build is one seed load away.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import invoke, run_results
from conftest import require_spark, spark_profile

EVENTS = """\
event_id,region_id,event_at,amount
1,fr,2026-01-01 10:00:00,1.5
2,se,2026-01-01 11:00:00,2.0
3,fr,2026-01-02 09:30:00,4.0
4,se,2026-01-02 09:30:00,8.0
"""
FILES = {
    "tierpool_project.yml": "name: incremental\n",
    "seeds/events.csv": EVENTS,
    "seeds/rates.csv": "region_id,factor,label\nfr,2.0,france\nse,0.5,sweden\n",
    "seeds/seeds.yml": """
        seeds:
          - name: events
            columns:
              - {name: event_id, data_type: BIGINT}
              - {name: region_id, data_type: VARCHAR}
              - {name: event_at, data_type: TIMESTAMP}
              - {name: amount, data_type: DOUBLE}
          - name: rates
            columns:
              - {name: region_id, data_type: VARCHAR}
              - {name: factor, data_type: DOUBLE}
              - {name: label, data_type: VARCHAR}
    """,
    "sql/stg_events.sql": "select e.* from events as e where e.amount is not null\n",
    "sql/region_count.sql": "select count(*) as n_regions from rates\n",
    "sql/enriched.sql": """
        -- one row per valid event, with its region's factor
        select s.*, s.amount * r.factor as scaled, r.label, c.n_regions
        from stg_events as s
        inner join rates as r on r.region_id = s.region_id
        cross join region_count as c
    """,
    "sql/models.yml": """
        models:
          - name: stg_events
            config: {materialized: view}
          - name: region_count
            config: {materialized: table}
          - name: enriched
            config: {materialized: incremental, unique_key: event_id, event_time: event_at}
            columns:
              - name: event_id
                data_tests: [not_null, unique]
              - name: scaled
                data_tests: [{accepted_range: {min_value: 0}}]
    """,
}
DUCKDB = "tierpool:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: target/warehouse.duckdb\n"


@pytest.fixture(params=["duckdb", "spark"])
def project(request: pytest.FixtureRequest, project_factory: Any) -> tuple[Path, str]:
    """The project with a DuckDB (dev) target, and a Spark one of its own schema; (dir, target)."""
    profile = DUCKDB
    if request.param == "spark":
        require_spark()
        spark_root = request.getfixturevalue("spark_root")
        profile += "    spark:\n" + "\n".join(
            "      " + line for line in spark_profile(spark_root, request.getfixturevalue("spark_schema")()).splitlines()) + "\n"
    root = project_factory({**FILES, "profiles.yml": profile})
    return root, "spark" if request.param == "spark" else "dev"


def build(project: tuple[Path, str], *args: str, exit_code: int = 0) -> dict[str, Any]:
    """``tierpool build`` on the project's target; the incremental model's run result."""
    root, target = project
    result = invoke(root, "build", "--target", target, *args)
    assert result.exit_code == exit_code, result.output
    return run_results(root)["enriched"]


def rows(project: tuple[Path, str], relation: str = "enriched") -> list[tuple]:
    root, target = project
    result = invoke(root, "query", f"select * from {relation}", "--format", "json", "--target", target)
    assert result.exit_code == 0, result.output
    return sorted(tuple(sorted(r.items())) for r in json.loads(result.output))


def add_events(root: Path, *lines: str) -> None:
    with (root / "seeds" / "events.csv").open("a") as f:
        f.write("".join(line + "\n" for line in lines))


def test_new_rows_only_and_the_result_of_a_full_rebuild(project: tuple[Path, str]) -> None:
    root, _ = project
    first = build(project)
    assert (first["rows"], first["message"]) == (4, "full rebuild: no table yet")

    add_events(root, "5,fr,2026-01-03 00:00:00,3.0",   # later than the mark (2026-01-02 09:30)
               "6,se,2026-01-02 09:30:00,1.0",         # late, at the mark exactly
               "7,fr,2026-01-04 12:00:00,0.5")
    second = build(project)
    assert (second["rows"], second["message"]) == (3, "incremental: 3 new rows")
    assert sorted(dict(r)["event_id"] for r in rows(project)) == [1, 2, 3, 4, 5, 6, 7]

    events = root / "seeds" / "events.csv"  # event 7, at the new mark, is corrected
    events.write_text(events.read_text().replace("7,fr,2026-01-04 12:00:00,0.5", "7,fr,2026-01-04 12:00:00,0.25"))
    corrected = build(project)
    assert (corrected["rows"], corrected["message"]) == (1, "incremental: 1 new rows")

    add_events(root, "8,se,2026-01-05 00:00:00,")  # no amount: not in stg_events
    rerun = build(project)
    assert (rerun["rows"], rerun["message"]) == (0, "incremental: 0 new rows")
    merged = rows(project)
    assert len(merged) == 7 and {dict(r)["event_id"]: dict(r)["scaled"] for r in merged}[7] == 0.5

    refreshed = build(project, "--full-refresh")
    assert (refreshed["rows"], refreshed["message"]) == (7, "full rebuild: --full-refresh")
    assert rows(project) == merged  # exactly what a full rebuild gives

    unchanged = build(project)
    assert unchanged["message"] == "up to date"

    rates = root / "seeds" / "rates.csv"
    rates.write_text(rates.read_text().replace("fr,2.0,france", "fr,3.0,france"))
    relooked = build(project)
    assert (relooked["rows"], relooked["message"]) == (7, "full rebuild: rates changed")
    assert {dict(r)["event_id"]: dict(r)["scaled"] for r in rows(project)}[1] == pytest.approx(4.5)


def test_a_failing_error_test_keeps_the_previous_table(project: tuple[Path, str]) -> None:
    root, target = project
    build(project)
    before = rows(project)
    add_events(root, "9,fr,2026-01-06 00:00:00,-1.0")  # scaled < 0: accepted_range fails

    failed = build(project, exit_code=1)

    assert failed["status"] == "error" and "not published" in failed["message"]
    assert rows(project) == before
    events = root / "seeds" / "events.csv"
    events.write_text(EVENTS)
    again = build(project)  # nothing says what the kept rows were built with: rebuild them all
    assert (again["rows"], again["message"]) == (4, "full rebuild: no record of its last successful build")
    assert rows(project) == before


def test_sql_columns_and_lookup_tables_rebuild_in_full(project_factory: Any) -> None:
    project = (project_factory({**FILES, "profiles.yml": DUCKDB}), "dev")
    root = project[0]
    build(project)
    model = root / "sql" / "enriched.sql"
    model.write_text(model.read_text().replace("r.label,", "upper(r.label) as label,"))
    assert build(project)["message"] == "full rebuild: SQL of enriched changed"

    # a column more in the event seed reaches the model through s.*: its columns change
    (root / "seeds" / "events.csv").write_text(
        "".join(line + (",x\n" if i else ",note\n") for i, line in enumerate(EVENTS.splitlines())))
    widened = build(project)
    assert widened["message"] == "full rebuild: columns changed"
    assert all(dict(r)["note"] == "x" for r in rows(project))

    # region_count is a lookup too (a table model): a new region changes it
    add_events(root, "10,de,2026-01-07 00:00:00,1.0,x")
    (root / "seeds" / "rates.csv").write_text((root / "seeds" / "rates.csv").read_text() + "de,1.0,germany\n")
    relooked = build(project)
    assert relooked["message"] == "full rebuild: rates, region_count changed"
    assert {dict(r)["n_regions"] for r in rows(project)} == {3}

    # the SQL the event parent is made from is part of what the rows were computed with
    (root / "sql" / "stg_events.sql").write_text(
        "select e.* from events as e where e.amount is not null and e.amount < 100\n")
    assert build(project)["message"] == "full rebuild: SQL of stg_events changed"


@pytest.mark.parametrize(("config", "expected"), [
    ("{materialized: incremental, event_time: event_at}",
     "'enriched': materialized: incremental needs unique_key under config:"),
    ("{materialized: incremental, unique_key: event_id}",
     "'enriched': materialized: incremental needs event_time under config:"),
    ("{materialized: table, event_time: event_at}",
     "'enriched': event_time is used by materialized: incremental only"),
])
def test_incremental_config_is_checked(project_factory: Any, config: str, expected: str) -> None:
    models = FILES["sql/models.yml"].replace(
        "{materialized: incremental, unique_key: event_id, event_time: event_at}", config)
    root = project_factory({**FILES, "profiles.yml": DUCKDB, "sql/models.yml": models})
    result = invoke(root, "compile")
    assert result.exit_code == 2, result.output
    assert expected in result.output


@pytest.mark.parametrize(("event_time", "select", "expected"), [
    ("created_at", "s.*",
     "incremental model enriched selects no column created_at (its event_time and unique_key; "
     "it selects event_id, region_id, event_at, amount, scaled, label, n_regions)"),
    ("happened_at", "s.event_id, s.event_at as happened_at, s.region_id, s.amount",
     "incremental model enriched: none of its parents (rates, region_count, stg_events) has the "
     "event_time column 'happened_at'"),
])
def test_an_event_time_the_model_or_its_parents_lack_is_an_error(
    project_factory: Any, event_time: str, select: str, expected: str
) -> None:
    models = FILES["sql/models.yml"].replace("event_time: event_at", f"event_time: {event_time}")
    model = FILES["sql/enriched.sql"].replace("select s.*,", f"select {select},")
    root = project_factory({**FILES, "profiles.yml": DUCKDB, "sql/models.yml": models,
                            "sql/enriched.sql": model})
    result = invoke(root, "build")
    assert result.exit_code == 1, result.output
    assert expected in run_results(root)["enriched"]["message"]
