"""`tierpool compare-hierarchies` end to end on a small synth warehouse (issue 5, item 6).

The warehouse is built without the fit: seeds, then only the ancestors of ``residuals`` and
``request_folds`` (~3 s), because the command fits its own two hierarchies. Sampling is tiny
(2 chains × 200 draws): the command's plumbing is under test here, the statistics in
tests/unit/test_fit_compare.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import duckdb
import pytest
from cli_helpers import invoke, query
from click.testing import CliRunner

from tierpool.cli import cli

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

pytestmark = [pytest.mark.slow, pytest.mark.fit]

SAMPLING = ("--fit-tune", "200", "--fit-draws", "200", "--fit-chains", "2", "--no-progress")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("compare") / "synth"
    done = CliRunner().invoke(cli, ["synth", "--rows", "3000", "--seed", "3", "--out", str(project)])
    assert done.exit_code == 0, done.output
    assert invoke(project, "seed").exit_code == 0
    built = invoke(project, "run", "--select", "+residuals", "--select", "+request_folds")
    assert built.exit_code == 0, built.output
    return project


def test_compare_prints_and_records_both_hierarchies(warehouse: Path) -> None:
    n_test = query(warehouse, "select count(*) from residuals r join request_folds f using (request_id) "
                              "where f.fold = 'test' and r.indicator = 'energy_wh'")[0][0]
    result = invoke(warehouse, "compare-hierarchies", "--indicator", "energy_wh", "--run-id", "r1", *SAMPLING)
    assert result.exit_code == 0, result.output
    assert "hierarchy_comparison run r1" in result.output
    assert "two_level" in result.output and "three_level" in result.output
    assert "predicts the test fold best by" in result.output

    rows = query(warehouse, "select hierarchy, indicator, elpd_test, elpd_diff, coverage_90, mean_width, "
                            "n_test_rows, loo_elpd, settings, run_at from hierarchy_comparison order by hierarchy")
    assert [r[0] for r in rows] == ["three_level", "two_level"] and {r[1] for r in rows} == {"energy_wh"}
    for _, _, elpd, diff, cov, width, n_rows, loo, settings, run_at in rows:
        # densities of residuals with sd ~0.1 exceed 1, so elpd may be positive: finite is the check
        assert math.isfinite(elpd) and math.isfinite(loo) and diff <= 0 and 0.5 <= cov <= 1.0 and width > 0
        assert n_rows == n_test  # every test-fold row was scored (unseen models via their priors)
        assert json.loads(settings)["draws"] == 200 and run_at is not None
    assert max(r[3] for r in rows) == 0.0  # the best one is the reference

    # the same run id replaces its rows; the rest of the warehouse is untouched
    again = invoke(warehouse, "compare-hierarchies", "--indicator", "energy_wh", "--run-id", "r1", *SAMPLING)
    assert again.exit_code == 0, again.output
    assert query(warehouse, "select count(*), count(distinct run_id) from hierarchy_comparison") == [(2, 1)]


def test_holdout_modes_score_whole_held_out_groups(warehouse: Path) -> None:
    n_rows = query(warehouse, "select count(*) from residuals where indicator = 'energy_wh'")[0][0]
    result = invoke(warehouse, "compare-hierarchies", "--indicator", "energy_wh", "--run-id", "h1",
                    "--hierarchy", "two_level", "--hierarchy", "global_level", "--holdout", "models",
                    "--holdout", "families", "--folds", "2", *SAMPLING)
    assert result.exit_code == 0, result.output
    assert "whole groups left out of the fit" in result.output and "new families:" in result.output
    rows = query(warehouse, "select mode, hierarchy, elpd, coverage_90, n_rows, folds from hierarchy_holdout "
                            "where run_id = 'h1' order by mode, hierarchy")
    assert [(r[0], r[1]) for r in rows] == [("families", "global_level"), ("families", "two_level"),
                                           ("models", "global_level"), ("models", "two_level")]
    for _, _, elpd, coverage, scored, folds in rows:
        # every residual of every held-out group (all request folds: none was fitted) is scored once
        assert math.isfinite(elpd) and 0.0 <= coverage <= 1.0 and scored == n_rows and folds == 2


def test_clear_errors(warehouse: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(warehouse, copy)
    con = duckdb.connect(str(copy / "target" / "warehouse.duckdb"))
    con.execute("create or replace table models as select * exclude (architecture) from models")
    con.close()
    no_arch = invoke(copy, "compare-hierarchies", *SAMPLING)
    assert no_arch.exit_code == 2 and "no `architecture` column" in no_arch.output

    unknown = invoke(warehouse, "compare-hierarchies", "--indicator", "nope", *SAMPLING)
    assert unknown.exit_code == 2 and "no residuals for indicator(s) ['nope']" in unknown.output

    shutil.rmtree(copy / "target")
    missing = invoke(copy, "compare-hierarchies", *SAMPLING)
    assert missing.exit_code == 2 and "run `tierpool build` first" in missing.output

    assert invoke(copy, "seed").exit_code == 0  # seeds but no residuals yet
    unbuilt = invoke(copy, "compare-hierarchies", *SAMPLING)
    assert unbuilt.exit_code == 2 and "has no residuals, request_folds" in unbuilt.output
