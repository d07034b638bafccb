"""`tierpool build` end to end on the run_basic fixture: order, statuses, materializations,
failures and skips, artifacts."""

from __future__ import annotations

import json

import pytest
from cli_helpers import copy_fixture, invoke, query, run_results


@pytest.fixture()
def project(tmp_path):
    return copy_fixture("run_basic", tmp_path)


def test_build_runs_in_order_with_statuses_and_artifacts(project):
    result = invoke(project, "build")
    assert result.exit_code == 0, result.output
    assert "Done. PASS=18 WARN=1 ERROR=0 SKIP=0 TOTAL=19" in result.output
    out = result.output.splitlines()
    lines = [l for l in out if "/9 " in l]
    names = [l.split()[2] for l in lines]
    assert names.index("families") < names.index("model_sizes") < names.index("family_sizes")
    assert names.index("split") < names.index("big_count")
    # one line per node: its materialization and a count of its tests; passing tests are not listed
    assert lines[0].startswith("1/9 seed families ...") and "OK 2 rows, 2 tests passed in" in lines[0]
    assert "4/9 table model_sizes" in lines[3] and "OK 4 rows, 2 tests passed in" in lines[3]
    assert "view family_sizes" in result.output and "append size_history" in result.output
    assert "unique_model_sizes_model_id" not in result.output
    # a warning test is shown in full under its node
    models = out.index(lines[1])
    assert "4 tests: 3 passed, 1 warned" in lines[1]
    assert "WARN accepted_range_models_total_params_b" in out[models + 1]
    assert "mixtral-8x22b" in "\n".join(out[models + 2:models + 6])
    results = run_results(project)
    assert results["model_sizes"] | {"execution_time": 0} == {
        "unique_id": "model.model_sizes", "name": "model_sizes", "resource_type": "model",
        "status": "success", "execution_time": 0, "rows": 4, "message": "",
    }
    assert results["split"]["rows"] == 4 and results["split"]["message"] == "first run"
    assert results["accepted_range_models_total_params_b"]["status"] == "warn"
    assert results["__all__"]["args"]["command"] == "build"
    assert results["__all__"]["elapsed"] > 0
    manifest = json.loads((project / "target" / "manifest.json").read_text())
    assert manifest["nodes"]["model.split"]["relations"] == ["big_models", "small_models"]
    assert manifest["nodes"]["model.model_sizes"]["depends_on"] == ["seed.families", "seed.models"]
    assert ["model.model_sizes", "model.family_sizes"] in manifest["edges"]
    assert manifest["nodes"]["model.size_history"]["materialized"] == "append"
    # --verbose: every test under the node it ran after
    verbose = invoke(project, "build", "--verbose", "--full-refresh").output.splitlines()
    assert verbose.index(next(l for l in verbose if "table model_sizes" in l)) < verbose.index(
        "    PASS unique_model_sizes_model_id" + next(
            l for l in verbose if "PASS unique_model_sizes_model_id" in l).split("unique_model_sizes_model_id")[1]
    ) < verbose.index(next(l for l in verbose if "table region_count" in l))


def test_materializations_and_idempotent_append(project):
    assert invoke(project, "build").exit_code == 0
    kinds = dict(query(project, "select table_name, table_type from information_schema.tables"))
    assert kinds["family_sizes"] == "VIEW" and kinds["model_sizes"] == "BASE TABLE"
    assert kinds["regions"] == "VIEW" and kinds["big_models"] == "BASE TABLE"
    assert invoke(project, "build").exit_code == 0  # same keys: replaced, not duplicated
    assert query(project, "select count(*) from size_history") == [(4,)]
    seed = project / "seeds" / "models.csv"
    seed.write_text(seed.read_text().replace("llama-3-8b,llama,8", "llama-3-8b,llama,9")
                    + "qwen-2-7b,llama,7\n")
    assert invoke(project, "build").exit_code == 0
    assert query(project, "select count(*) from size_history") == [(5,)]
    assert query(project, "select total_params_b from size_history where model_id = 'llama-3-8b'") == [(9.0,)]
    assert run_results(project)["split"]["message"] == "previously 2 big"


def test_failing_node_keeps_previous_relation_and_skips_downstream(project):
    assert invoke(project, "build").exit_code == 0
    sql = project / "sql" / "model_sizes.sql"
    sql.write_text(sql.read_text().replace("f.display_name", "f.display_name, cast(m.family_id as integer) as broken"))
    result = invoke(project, "build")
    assert result.exit_code == 1
    results = run_results(project)
    assert results["model_sizes"]["status"] == "error"
    assert "sql/model_sizes.sql" in results["model_sizes"]["message"]
    assert "Could not convert string" in results["model_sizes"]["message"]
    for name in ("family_sizes", "size_history", "split", "big_count", "unique_model_sizes_model_id"):
        assert results[name]["status"] == "skipped", name
    assert "model_sizes" in results["family_sizes"]["message"]
    assert results["region_count"]["status"] == "success"  # independent branch still builds
    assert query(project, "select count(*) from model_sizes") == [(4,)]
    assert "broken" not in [r[0] for r in query(project, "describe model_sizes")]
    assert "ERROR=1" in result.output and "SKIP=" in result.output


def test_malformed_seed_row_fails_with_location_and_keeps_table(project):
    assert invoke(project, "build").exit_code == 0
    seed = project / "seeds" / "models.csv"
    seed.write_text(seed.read_text() + "bad-model,llama,abc\n")
    result = invoke(project, "build", "--select", "models")
    assert result.exit_code == 1
    assert "seeds/models.csv:6: column total_params_b: could not convert 'abc' to DOUBLE" in result.output
    assert query(project, "select count(*) from models") == [(4,)]


def test_failing_data_test_reports_count_examples_and_skips_downstream(project):
    (project / "tests" / "data" / "assert_small_models.sql").write_text(
        "select model_id, total_params_b from models where total_params_b > 60\n"
    )
    result = invoke(project, "build")
    assert result.exit_code == 1
    test = run_results(project)["assert_small_models"]
    assert test["status"] == "fail" and test["failures"] == 2
    assert test["relation"] == "models"
    assert {e["model_id"] for e in test["examples"]} == {"mixtral-8x22b", "llama-3-70b"}
    assert "2 failing row(s) in models" in result.output and "mixtral-8x22b" in result.output
    assert run_results(project)["model_sizes"]["status"] == "skipped"
    assert "assert_small_models" in run_results(project)["model_sizes"]["message"]
    assert run_results(project)["region_count"]["status"] == "success"


def test_selection_builds_only_selected_nodes(project):
    assert invoke(project, "seed").exit_code == 0
    result = invoke(project, "build", "--select", "+model_sizes", "--exclude", "families")
    assert result.exit_code == 0, result.output
    results = run_results(project)
    assert {n for n, r in results.items() if n != "__all__" and r["resource_type"] != "test"} == {
        "models", "model_sizes"}
    result = invoke(project, "run", "-s", "model_sizes+")
    assert result.exit_code == 0, result.output
    ran = {n for n in run_results(project) if n != "__all__"}
    assert ran == {"model_sizes", "family_sizes", "size_history", "split", "big_count"}


def test_seed_and_test_commands(project):
    result = invoke(project, "seed")
    assert result.exit_code == 0 and "TOTAL=2" in result.output
    assert invoke(project, "run").exit_code == 0
    result = invoke(project, "test", "--select", "models")
    assert result.exit_code == 0, result.output
    ran = set(run_results(project)) - {"__all__"}
    assert "unique_models_model_id" in ran and "not_null_families_family_id" not in ran
