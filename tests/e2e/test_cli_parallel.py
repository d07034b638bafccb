"""Parallel builds (`threads`), --fail-fast, `tierpool retry` and the build log (console, log
file, --log-format json), through the CLI on DuckDB and Spark."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cli_helpers import copy_fixture, invoke, query, run_results

WAIT_MODEL = '''"""Waits for an "external service", then records when it ran."""
import time

import pandas as pd


def model(ctx):
    begun = time.time()
    time.sleep(1.0)
    ctx.log("service answered")
    return pd.DataFrame({{"name": ["{name}"], "begun": [begun], "ended": [time.time()]}})
'''


def _wide_project(tmp_path: Path) -> Path:
    """run_basic plus four independent Python models that each wait one second."""
    project = copy_fixture("run_basic", tmp_path)
    for name in ("wait_a", "wait_b", "wait_c", "wait_d"):
        (project / "python_models" / f"{name}.py").write_text(WAIT_MODEL.format(name=name))
        (project / "python_models" / f"{name}.yml").write_text(
            f"models:\n  - name: {name}\n    columns:\n"
            "      - {name: name, data_type: VARCHAR, data_tests: [not_null]}\n"
            "      - {name: begun, data_type: DOUBLE}\n      - {name: ended, data_type: DOUBLE}\n")
    (project / "sql" / "waited.sql").write_text(
        "select * from wait_a union all select * from wait_b\n"
        "union all select * from wait_c union all select * from wait_d\n")
    return project


def _without_times(output: str) -> list[str]:
    return [re.sub(r" in \d+\.\d+s", "", line) for line in output.splitlines()
            if not line.startswith("Finished ")]


def test_independent_nodes_run_at_once_with_the_same_log_and_results(tmp_path):
    one = _wide_project(tmp_path / "one")
    serial = invoke(one, "build", "--threads", "1")
    assert serial.exit_code == 0, serial.output
    serial_results = [r["name"] for r in json.loads((one / "target" / "run_results.json").read_text())["results"]]
    project = _wide_project(tmp_path / "four")
    parallel = invoke(project, "build", "--threads", "4")
    assert parallel.exit_code == 0, parallel.output
    # the four waits overlapped: each began before any of them ended
    spans = query(project, "select begun, ended from waited")
    assert len(spans) == 4 and max(b for b, _ in spans) < min(e for _, e in spans)
    # one output and one run_results order, whatever order the nodes finished in
    assert _without_times(parallel.output) == _without_times(serial.output)
    results = json.loads((project / "target" / "run_results.json").read_text())
    assert [r["name"] for r in results["results"]] == serial_results
    assert results["args"]["threads"] == 4
    # a Python model's log lines are printed with its result line, under its name
    lines = parallel.output.splitlines()
    at = next(i for i, line in enumerate(lines) if "python wait_b" in line)
    assert lines[at - 1].strip() == "[wait_b] service answered"


def test_profile_threads_and_a_failure_skip_only_downstream(tmp_path):
    project = _wide_project(tmp_path)
    profile = project / "profiles.yml"
    profile.write_text(profile.read_text().replace("threads: 1", "threads: 3"))
    assert invoke(project, "build").exit_code == 0
    before = query(project, "select count(*) from model_sizes")
    (project / "python_models" / "wait_c.py").write_text("def model(ctx):\n    raise ValueError('service down')\n")
    (project / "sql" / "model_sizes.sql").write_text(
        (project / "sql" / "model_sizes.sql").read_text() + "\n")  # rebuilt alongside
    result = invoke(project, "build")
    assert result.exit_code == 1
    got = run_results(project)
    assert got["__all__"]["args"].get("threads") is None  # from the profile
    assert got["wait_c"]["status"] == "error" and "service down" in got["wait_c"]["message"]
    assert got["waited"]["status"] == "skipped" and "upstream wait_c failed" in got["waited"]["message"]
    for name in ("wait_a", "wait_b", "wait_d", "model_sizes", "big_count"):
        assert got[name]["status"] == "success", name
    assert query(project, "select count(*) from model_sizes") == before


def test_fail_fast_then_retry_reruns_what_failed_or_was_skipped(tmp_path):
    project = copy_fixture("run_basic", tmp_path)
    model = project / "sql" / "model_sizes.sql"
    good = model.read_text()
    body = good.strip().rstrip(";")
    model.write_text(f"select * from ({body}) union all select * from ({body})\n")  # fails unique
    result = invoke(project, "build", "--fail-fast")
    assert result.exit_code == 1
    got = run_results(project)
    assert got["model_sizes"]["status"] == "error"
    # independent nodes after the failure did not start either
    assert got["region_count"]["status"] == "skipped"
    assert got["region_count"]["message"] == "skipped: --fail-fast after model_sizes failed"
    assert got["families"]["status"] == "success"
    model.write_text(good)
    retry = invoke(project, "retry")
    assert retry.exit_code == 0, retry.output
    assert "Retrying tierpool build of" in retry.output
    again = run_results(project)
    assert again["__all__"]["args"]["fail_fast"] is True  # the last run's flags
    assert "families" not in again and again["model_sizes"]["status"] == "success"
    assert {"region_count", "big_count", "split"} <= set(again)
    assert "Nothing to retry" in invoke(project, "retry").output


def test_log_file_and_json_log(tmp_path):
    project = copy_fixture("run_basic", tmp_path)
    result = invoke(project, "build", "--log-format", "json")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines()]
    finished = [e for e in events if e["event"] == "finish"]
    assert [e["index"] for e in finished] == list(range(1, 10))
    sizes = next(e for e in finished if e["node"]["name"] == "model_sizes")
    assert sizes["node"]["materialized"] == "table" and sizes["node"]["rows"] == 4
    assert {t["name"] for t in sizes["tests"]} == {"unique_model_sizes_model_id", "assert_every_family_has_models"}
    assert any(e["event"] == "log" and e["node"] == "split" and e["message"] == "threshold 50" for e in events)
    assert events[-1]["event"] == "done" and events[-1]["counts"]["WARN"] == 1
    log = (project / "target" / "logs" / "tierpool.log").read_text()
    # every test, without colours, under a header naming the invocation
    assert 'tierpool build {"command": "build"' in log and '"target": "dev"' in log
    assert "PASS unique_model_sizes_model_id" in log and "\x1b[" not in log
    assert "Done. PASS=18 WARN=1 ERROR=0 SKIP=0 TOTAL=19" in log


def test_parallel_build_on_spark(tmp_path, spark_root, spark_schema):
    from conftest import require_spark, spark_profile

    require_spark()

    import pyarrow as pa
    import pyarrow.parquet as pq

    project = _wide_project(tmp_path)
    pq.write_table(pa.table({"region_id": ["fr-par-1", "se-sto-1"],
                             "region_class_id": ["western-eu-grid", "nordic"]}), project / "data" / "regions.parquet")
    (project / "sql" / "sources.yml").write_text(
        "sources:\n  - name: regions\n    expression: \"read_parquet('data/regions.parquet')\"\n")
    spark = "\n".join("      " + line for line in spark_profile(spark_root, spark_schema()).splitlines())
    (project / "profiles.yml").write_text(
        "tierpool:\n  target: spark\n  outputs:\n"
        f"    spark:\n{spark}\n      threads: 4\n")
    result = invoke(project, "build")
    assert result.exit_code == 0, result.output
    rows = invoke(project, "query", "select begun, ended from waited", "--format", "json")
    spans = sorted((s["begun"], s["ended"]) for s in json.loads(rows.output))
    # the first four nodes to start include seeds, which Spark takes seconds to write: at
    # least two waits overlapped
    assert len(spans) == 4 and any(spans[i + 1][0] < spans[i][1] for i in range(3))
