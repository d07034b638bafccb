"""Python models through the CLI: outputs swap together, column mismatches name the column,
ctx.ref is limited to literal refs, and the database is released while the model runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from cli_helpers import copy_fixture, invoke, query, run_results


@pytest.fixture()
def project(tmp_path):
    return copy_fixture("run_basic", tmp_path)


def _rewrite_split(project, body: str) -> None:
    path = project / "python_models" / "split.py"
    path.write_text('outputs = ("big_models", "small_models")\n\n\ndef model(ctx):\n' + body)


def test_outputs_swap_together_on_column_mismatch(project):
    assert invoke(project, "build").exit_code == 0
    _rewrite_split(project, (
        '    sizes = ctx.ref("model_sizes")\n'
        '    big = sizes[sizes.total_params_b >= 1][["model_id", "total_params_b"]]\n'
        '    small = sizes[["model_id", "total_params_b", "family_id"]]\n'
        '    return {"big_models": big, "small_models": small}\n'
    ))
    result = invoke(project, "build", "--select", "split+")
    assert result.exit_code == 1
    message = run_results(project)["split"]["message"]
    assert "output 'small_models': unexpected column(s) family_id" in message
    assert run_results(project)["big_count"]["status"] == "skipped"
    # big_models would have changed to 4 rows; the failed swap left both outputs as they were
    assert query(project, "select count(*) from big_models") == [(2,)]
    assert query(project, "select count(*) from small_models") == [(2,)]


def test_bad_type_and_missing_column_messages(project):
    _rewrite_split(project, (
        '    import pandas as pd\n'
        '    ctx.ref("model_sizes")\n'
        '    return {"big_models": pd.DataFrame({"model_id": ["a"], "total_params_b": ["huge"]}),\n'
        '            "small_models": pd.DataFrame({"model_id": ["b"]})}\n'
    ))
    result = invoke(project, "build")
    assert result.exit_code == 1
    message = run_results(project)["split"]["message"]
    assert "output 'big_models': column 'total_params_b' value 'huge' cannot be cast to declared type DOUBLE" in message


def test_non_literal_ref_is_a_clear_model_error(project):
    _rewrite_split(project, (
        '    ctx.ref("model_sizes")\n'
        '    fetch = ctx.ref  # hides the name from the syntax-tree reader\n'
        '    return {"big_models": fetch("families"), "small_models": fetch("families")}\n'
    ))
    assert invoke(project, "build").exit_code == 1
    message = run_results(project)["split"]["message"]
    assert "ctx.ref('families') is not a dependency of this model" in message
    assert "literal" in message


def test_model_exception_is_one_line_with_file(project):
    _rewrite_split(project, '    ctx.ref("model_sizes")\n    raise ValueError("no data for 2026Q3")\n')
    result = invoke(project, "build")
    assert result.exit_code == 1
    assert "python_models/split.py: model() raised ValueError: no data for 2026Q3" in result.output
    assert "Traceback" not in result.output


def test_database_released_during_python_model_and_build_lock(project, tmp_path):
    """A real subprocess build; while its Python model runs, a second build is refused
    (naming the pid) and `tierpool query` reads the warehouse."""
    go, started = tmp_path / "go", tmp_path / "started"
    _rewrite_split(project, (
        '    import pathlib, time\n'
        '    sizes = ctx.ref("model_sizes")\n'
        f'    pathlib.Path({str(started)!r}).write_text("x")\n'
        f'    while not pathlib.Path({str(go)!r}).exists():\n'
        '        time.sleep(0.05)\n'
        '    cols = ["model_id", "total_params_b"]\n'
        '    return {"big_models": sizes[cols], "small_models": sizes[cols].head(0)}\n'
    ))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    build = subprocess.Popen(
        [sys.executable, "-m", "tierpool", "build", "--project-dir", str(project)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert build.poll() is None, build.stdout.read()
            assert time.monotonic() < deadline, "python model never started"
            time.sleep(0.05)
        second = invoke(project, "build")
        assert second.exit_code == 2
        assert f"is in use by process {build.pid} (tierpool build)" in second.output
        assert "Traceback" not in second.output
        reader = invoke(project, "query", "select count(*) as n from model_sizes", "--format", "csv")
        assert reader.exit_code == 0, reader.output
        assert reader.output.strip() == "n\n4"
    finally:
        go.write_text("go")
        out, _ = build.communicate(timeout=120)
    assert build.returncode == 0, out
    assert "Done. PASS=" in out
    assert query(project, "select count(*) from big_models") == [(4,)]
    assert not (project / "target" / "tierpool.core.lock").exists()
