"""Spark Connect (`method: connect`): how clusters and Databricks are reached.

pyspark starts a local Spark Connect server for ``url: local[2]`` (in the process that
connects), so the test runs the build and a read-only query in one fresh Python process:
this worker's own classic Spark session (other tests) must not be in that process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from cli_helpers import copy_fixture
from conftest import require_spark

SCRIPT = """
import sys
from pathlib import Path
from tierpool.core import runner
from tierpool.adapters import adapter_for
from tierpool.core.project import load_project
root = Path(sys.argv[1])
project = load_project(root, "connect")
results = runner.build(project)
print("STATUS", sorted({r.status for r in results.results}))
print("EXIT", results.exit_code)
reader = adapter_for(project.target, root, read_only=True)
print("ROWS", sorted(reader.query_read_only("select model_id from model_sizes").rows))
try:
    reader.query_read_only("insert into families values ('x', 'y')")
except Exception as exc:
    print("REFUSED", type(exc).__name__)
"""


def test_build_and_query_through_spark_connect(tmp_path: Path) -> None:
    require_spark()
    project = copy_fixture("run_basic", tmp_path)
    pq.write_table(pa.table({"region_id": ["fr-par-1"], "region_class_id": ["western-eu-grid"]}),
                   project / "data" / "regions.parquet")
    (project / "sql" / "sources.yml").write_text(
        "sources:\n  - name: regions\n    expression: \"read_parquet('data/regions.parquet')\"\n")
    (project / "profiles.yml").write_text(
        "tierpool:\n  target: dev\n  outputs:\n    dev: {type: duckdb}\n"
        "    connect:\n      type: spark\n      method: connect\n      url: ${TP_TEST_CONNECT_URL}\n"
        "      schema: connect_test\n"
        f"      conf: {{spark.sql.warehouse.dir: '{tmp_path / 'connect-warehouse'}', "
        "spark.sql.shuffle.partitions: 2}\n"
    )
    env = {**os.environ, "TP_TEST_CONNECT_URL": "local[2]"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(project)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    assert "STATUS ['pass', 'success', 'warn']" in out, out
    assert "EXIT 0" in out
    assert "ROWS [('llama-3-70b',), ('llama-3-8b',), ('mistral-7b',), ('mixtral-8x22b',)]" in out
    assert "REFUSED SqlError" in out
