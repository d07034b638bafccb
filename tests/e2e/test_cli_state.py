"""State-based rebuilds: `tierpool build` skips nodes and tests whose inputs are unchanged
(target/state.json), reruns exactly what an edit touches, and never trusts a failure."""

from __future__ import annotations

import json
import os

import duckdb
import pytest
from cli_helpers import copy_fixture, invoke, query, run_results

# table/append nodes of run_basic that a second build must skip (views and sources are re-created)
SKIPPABLE = {"families", "models", "model_sizes", "region_count", "size_history"}


@pytest.fixture()
def project(tmp_path):
    path = copy_fixture("run_basic", tmp_path)
    result = invoke(path, "build")
    assert result.exit_code == 0, result.output
    return path


def statuses(project) -> dict[str, tuple[str, str]]:
    """name -> (status, message) of the last run."""
    return {n: (r["status"], r["message"]) for n, r in run_results(project).items() if n != "__all__"}


def rebuilt(project) -> set[str]:
    """Nodes and tests that actually ran in the last command (not reported unchanged)."""
    return {n for n, (s, m) in statuses(project).items() if m not in ("up to date", "unchanged")}


def test_second_build_skips_unchanged_tables_and_tests(project):
    result = invoke(project, "build", "--verbose")
    assert result.exit_code == 0, result.output
    assert "Done. PASS=18 WARN=1 ERROR=0 SKIP=0 TOTAL=19" in result.output
    got = statuses(project)
    for name in SKIPPABLE:
        assert got[name] == ("success", "up to date"), name
        assert f"{name} " in result.output
    assert "table model_sizes ....." in result.output and "OK (unchanged)" in result.output
    assert got["unique_model_sizes_model_id"] == ("pass", "unchanged")
    assert got["assert_every_family_has_models"] == ("pass", "unchanged")
    assert "    PASS unique_model_sizes_model_id (unchanged)" in result.output
    # views and sources are re-created and the Python model always runs, but it wrote the same
    # rows (its outputs are fingerprinted by content), so big_count and the test on big_models
    # stay up to date; the warned test always reruns
    assert rebuilt(project) == {"regions", "family_sizes", "split", "accepted_range_models_total_params_b"}
    assert got["big_count"] == ("success", "up to date")
    assert got["accepted_range_models_total_params_b"][0] == "warn"
    assert query(project, "select count(*) from size_history") == [(4,)]
    state = json.loads((project / "target" / "state.json").read_text())
    assert list(state["databases"]) == [str((project / "target" / "warehouse.duckdb").resolve())]


def test_edited_seed_reruns_it_and_its_downstream_only(project):
    seed = project / "seeds" / "models.csv"
    seed.write_text(seed.read_text().replace("llama-3-8b,llama,8", "llama-3-8b,llama,9"))
    assert invoke(project, "build").exit_code == 0
    ran = rebuilt(project)
    assert {"models", "model_sizes", "size_history", "unique_models_model_id",
            "unique_model_sizes_model_id", "assert_every_family_has_models"} <= ran
    assert not ran & {"families", "region_count", "not_null_families_family_id", "unique_families_family_id"}
    assert query(project, "select total_params_b from model_sizes where model_id = 'llama-3-8b'") == [(9.0,)]


def test_edited_sql_reruns_that_model_and_downstream(project):
    sql = project / "sql" / "model_sizes.sql"
    sql.write_text(sql.read_text().replace("f.display_name", "upper(f.display_name) as display_name"))
    assert invoke(project, "build").exit_code == 0
    ran = rebuilt(project)
    assert {"model_sizes", "size_history", "unique_model_sizes_model_id", "assert_every_family_has_models",
            "expression_family_sizes"} <= ran
    assert not ran & {"families", "models", "region_count", "unique_models_model_id"}
    assert ("LLAMA",) in query(project, "select distinct display_name from model_sizes")


def test_edited_source_file_reruns_its_readers(project):
    data = project / "data" / "regions.csv"
    data.write_text(data.read_text() + "us-east-1,us-grid\n")
    assert invoke(project, "build").exit_code == 0
    ran = rebuilt(project)
    assert "region_count" in ran
    assert not ran & {"model_sizes", "size_history", "families"}
    assert query(project, "select n_regions from region_count") == [(3,)]
    # same bytes again, only the mtime moves: the fingerprint holds (path, size, mtime)
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert invoke(project, "build").exit_code == 0
    assert "region_count" in rebuilt(project)
    assert invoke(project, "build").exit_code == 0
    assert statuses(project)["region_count"] == ("success", "up to date")


def test_full_refresh_reruns_everything(project):
    result = invoke(project, "build", "--full-refresh")
    assert result.exit_code == 0, result.output
    assert "(unchanged)" not in result.output
    assert rebuilt(project) == set(statuses(project))
    assert query(project, "select count(*) from size_history") == [(4,)]
    # and it recorded state: the next plain build skips again
    assert invoke(project, "build").exit_code == 0
    assert statuses(project)["model_sizes"] == ("success", "up to date")


def test_dropped_table_or_replaced_database_is_rebuilt(project):
    con = duckdb.connect(str(project / "target" / "warehouse.duckdb"))
    con.execute("drop table model_sizes")
    con.close()
    assert invoke(project, "build").exit_code == 0
    got = statuses(project)
    assert got["model_sizes"] == ("success", "")
    assert got["region_count"] == ("success", "up to date")
    assert query(project, "select count(*) from model_sizes") == [(4,)]
    (project / "target" / "warehouse.duckdb").unlink()
    assert invoke(project, "build").exit_code == 0
    assert SKIPPABLE <= rebuilt(project)
    assert query(project, "select count(*) from size_history") == [(4,)]


def test_other_target_has_its_own_state(project):
    profiles = project / "profiles.yml"
    profiles.write_text(profiles.read_text() + "    other:\n      type: duckdb\n      path: target/other.duckdb\n")
    assert invoke(project, "build", "--target", "other").exit_code == 0
    assert SKIPPABLE <= rebuilt(project)
    assert invoke(project, "build").exit_code == 0
    assert statuses(project)["model_sizes"] == ("success", "up to date")
    state = json.loads((project / "target" / "state.json").read_text())
    assert len(state["databases"]) == 2


def test_failed_node_and_failed_test_rerun_next_time(project):
    sql = project / "sql" / "region_count.sql"
    original = sql.read_text()
    sql.write_text("select error('boom')::bigint as n_regions from regions\n")
    assert invoke(project, "build").exit_code == 1
    assert statuses(project)["region_count"][0] == "error"
    sql.write_text(original)  # back to the SQL of the last success: still rebuilt, a failure forgets
    assert invoke(project, "build").exit_code == 0
    assert statuses(project)["region_count"] == ("success", "")
    failing = project / "tests" / "data" / "assert_no_big_models.sql"
    failing.write_text("select model_id from model_sizes where total_params_b > 100\n")
    assert invoke(project, "build").exit_code == 1
    assert statuses(project)["assert_no_big_models"][0] == "fail"
    assert invoke(project, "build").exit_code == 1  # inputs unchanged, but a failure always reruns
    assert statuses(project)["assert_no_big_models"][0] == "fail"
    assert "assert_no_big_models" in statuses(project)["size_history"][1]  # downstream still blocked


APPEND_MODEL = '''
outputs = ("size_log",)


def model(ctx):
    sizes = ctx.ref("model_sizes")
    previous = ctx.previous("size_log")
    seen = set() if previous is None else set(previous.model_id)
    ctx.message = f"{len(seen)} seen"
    return sizes[~sizes.model_id.isin(seen)][["model_id", "total_params_b"]]
'''
APPEND_YML = """models:
  - name: size_log
    config: {materialized: append, unique_key: model_id}
    columns:
      - {name: model_id, data_type: VARCHAR, data_tests: [not_null]}
      - {name: total_params_b, data_type: DOUBLE}
"""


def test_python_model_always_runs_and_empty_append_keeps_downstream(project):
    (project / "python_models" / "log_sizes.py").write_text(APPEND_MODEL)
    (project / "python_models" / "log_sizes.yml").write_text(APPEND_YML)
    (project / "sql" / "log_total.sql").write_text("select count(*) as n from size_log\n")
    models_yml = project / "sql" / "models.yml"
    models_yml.write_text(models_yml.read_text() + "  - name: log_total\n    config: {materialized: table}\n")
    assert invoke(project, "build").exit_code == 0
    assert statuses(project)["log_total"] == ("success", "")
    assert query(project, "select n from log_total") == [(4,)]
    assert invoke(project, "build").exit_code == 0  # the model runs, appends nothing
    got = statuses(project)
    assert got["log_sizes"] == ("success", "4 seen") and run_results(project)["log_sizes"]["rows"] == 0
    assert got["log_total"] == ("success", "up to date")
    assert got["not_null_size_log_model_id"] == ("pass", "unchanged")
    seed = project / "seeds" / "models.csv"
    seed.write_text(seed.read_text() + "qwen-2-7b,llama,7\n")
    assert invoke(project, "build").exit_code == 0  # one new row appended: downstream reruns
    got = statuses(project)
    assert run_results(project)["log_sizes"]["rows"] == 1
    assert got["log_total"] == ("success", "") and got["not_null_size_log_model_id"] == ("pass", "")
    assert query(project, "select n from log_total") == [(5,)]


OFF_STEP_MODEL = '''
outputs = ("step_rows",)


def model(ctx):
    import pandas as pd

    if not ctx.vars.get("step_on"):  # a step that is off returns before reading its input
        ctx.message = "off"
        return pd.DataFrame({"model_id": pd.Series([], dtype=str)})
    return ctx.ref("unreadable")[["model_id"]]
'''
OFF_STEP_YML = """models:
  - name: step_rows
    columns:
      - {name: model_id, data_type: VARCHAR}
"""


def test_a_step_that_is_off_reads_nothing_and_its_empty_output_keeps_downstream(project):
    # a view that fails when read (its build only creates it): a model reading it fails
    (project / "sql" / "unreadable.sql").write_text("select model_id, cast('not a number' as integer) as n from models\n")
    (project / "python_models" / "off_step.py").write_text(OFF_STEP_MODEL)
    (project / "python_models" / "off_step.yml").write_text(OFF_STEP_YML)
    (project / "sql" / "step_total.sql").write_text("select count(*) as n from step_rows\n")
    models_yml = project / "sql" / "models.yml"
    models_yml.write_text(models_yml.read_text() + "  - name: step_total\n    config: {materialized: table}\n")
    first = invoke(project, "build")
    assert first.exit_code == 0, first.output
    assert statuses(project)["off_step"] == ("success", "off") and statuses(project)["step_total"] == ("success", "")
    # the very next build: the empty output is the same (no row), so its downstream is up to date
    assert invoke(project, "build").exit_code == 0
    assert statuses(project)["step_total"] == ("success", "up to date")
    # turned on, the model reads the input, and its error is the node's
    on = invoke(project, "build", "--vars", "{step_on: true}")
    assert on.exit_code == 1
    assert statuses(project)["off_step"][0] == "error" and "not a number" in on.output
