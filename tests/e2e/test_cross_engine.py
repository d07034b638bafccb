"""The acceptance test of the Spark adapter: the demo warehouse built on DuckDB and on Spark.

`tierpool build` and `tierpool build --target spark` (the demo's own profiles.yml, each in its
own process, the two side by side, Spark in local[2] session mode) on one copy of the demo project, with 2 chains of
3,000 draws (the default publication gate applies). Then:

* request_folds and rejected_rows are identical (same requests, folds, fold_u, reasons);
* residual_cells agree to 1e-9 relative (n exactly);
* posterior summaries agree within Monte Carlo error: |mean_duckdb - mean_spark| is at most
  4.5 combined MCSEs (sd / sqrt(ess_bulk) of each run); bit-identical cells give a
  bit-identical fit, so mostly they are equal;
* priors agree within the Monte Carlo error of their fit, and the overall held-out coverage
  of the calibrated intervals is the same (up to the MC error of the interval ends).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import require_spark

pytestmark = [pytest.mark.slow, pytest.mark.fit]

REPO = Path(__file__).resolve().parents[2]
# 2 chains of 3,000 draws: enough bulk ESS for the default gate (>= 400; 2 x 1,000 gave 262)
FIT = ["--fit-tune", "1000", "--fit-draws", "3000", "--fit-chains", "2", "--no-progress"]
TABLES = ("request_folds", "rejected_rows", "residual_cells", "posterior_families", "posterior_models",
          "posterior_region_classes", "posterior_regions", "fit_runs", "priors", "coverage_release")
POSTERIORS = {"posterior_families": "family_id", "posterior_models": "model_id",
              "posterior_region_classes": "region_class_id", "posterior_regions": "region_id"}

# One process per target builds, then exports the tables it built: a Spark process starts
# its JVM once (a cold start is ~40 s) and the two targets' processes run side by side.
BUILD_AND_EXPORT = """
import sys
from pathlib import Path
from tierpool.adapters import adapter_for
from tierpool.cli import cli
from tierpool.core.config import load_target
root, target, out, tables = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4].split(",")
try:  # as the console script runs it: click exits with the command's status
    cli.main(["build", "--target", target, *sys.argv[5:]], prog_name="tierpool")
    code = 0
except SystemExit as exc:
    code = exc.code
if code:
    sys.exit(f"tierpool build --target {target} exited with {code}")
out.mkdir(parents=True, exist_ok=True)
reader = adapter_for(load_target(root, target), root, read_only=True)
for name in tables:
    reader.frame(f"select * from {name}").to_parquet(out / f"{name}.parquet")
reader.close()
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, pd.DataFrame]]:
    require_spark()
    # a copy per target: a project builds one target at a time (its target/ holds the lock)
    projects = {target: tmp_path_factory.mktemp("cross_engine") / "demo" for target in ("dev", "spark")}
    for project in projects.values():
        project.mkdir()
        for name in ("seeds", "sql", "python_models", "tests/data"):
            shutil.copytree(REPO / name, project / name)
        for name in ("profiles.yml", "tierpool_project.yml"):
            shutil.copy(REPO / name, project / name)
        config = yaml.safe_load((project / "tierpool_project.yml").read_text())
        config["vars"].pop("validation", None)  # hold-out refits are engine-independent pandas work
        (project / "tierpool_project.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    logs = {target: (project / "build.log").open("w") for target, project in projects.items()}
    runs = {target: subprocess.Popen(
        [sys.executable, "-c", BUILD_AND_EXPORT, str(project), target, str(project / "export"),
         ",".join(TABLES), *FIT], cwd=project, env=env, stdout=logs[target],
        stderr=subprocess.STDOUT) for target, project in projects.items()}
    frames: dict[str, dict[str, pd.DataFrame]] = {}
    for target, run in runs.items():
        run.wait(timeout=900)
        logs[target].close()
        output = (projects[target] / "build.log").read_text()
        assert run.returncode == 0, f"{target}:\n{output[-4000:]}"
        out = projects[target] / "export"
        frames[target] = {t: pd.read_parquet(out / f"{t}.parquet") for t in TABLES}
    return frames


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    frame = frame.rename(columns=str.lower)
    return frame.sort_values(keys).reset_index(drop=True)


@pytest.mark.parametrize(("table", "keys"), [("request_folds", ["request_id"]),
                                             ("rejected_rows", ["source", "indicator", "request_id", "reason"])])
def test_folds_and_rejected_rows_are_identical(built, table, keys):
    duck, spark = (_sorted(built[t][table], keys) for t in ("dev", "spark"))
    assert len(duck) > 0
    pd.testing.assert_frame_equal(duck, spark, check_dtype=False)


def test_residual_cells_agree_to_1e9(built):
    keys = ["indicator", "model_id", "region_id"]
    duck, spark = (_sorted(built[t]["residual_cells"], keys) for t in ("dev", "spark"))
    assert duck[keys].equals(spark[keys]) and (duck["n"].to_numpy() == spark["n"].to_numpy()).all()
    for col in ("mean", "s"):
        np.testing.assert_allclose(spark[col].to_numpy(float), duck[col].to_numpy(float), rtol=1e-9, atol=1e-12)


def test_both_fits_published(built):
    for target in ("dev", "spark"):
        runs = built[target]["fit_runs"]
        assert set(runs["status"]) == {"published"}, (target, runs[["indicator", "status", "reason"]])


@pytest.mark.parametrize("table", sorted(POSTERIORS))
def test_posteriors_agree_within_monte_carlo_error(built, table):
    keys = ["fit_id", "indicator", POSTERIORS[table], "parameter"]
    duck, spark = (_sorted(built[t][table], keys) for t in ("dev", "spark"))
    assert duck[keys].equals(spark[keys])
    mcse = np.hypot(duck["sd"] / np.sqrt(duck["ess_bulk"]), spark["sd"] / np.sqrt(spark["ess_bulk"]))
    gap = (duck["mean"] - spark["mean"]).abs()
    worst = (gap / mcse).max()
    assert (gap <= 4.5 * mcse + 1e-12).all(), f"{table}: largest gap {worst:.2f} MCSE"


def test_priors_and_coverage_agree(built):
    keys = ["indicator", "model_id", "region_id"]
    duck, spark = (_sorted(built[t]["priors"], keys) for t in ("dev", "spark"))
    assert len(duck) > 0 and duck[keys].equals(spark[keys])
    assert duck["source_level"].equals(spark["source_level"])
    # a prior is a posterior functional: its MC error is at most sd / sqrt(min ess) of its fit
    min_ess = min(built[t]["fit_runs"]["min_ess_bulk"].min() for t in ("dev", "spark"))
    tolerance = 4.5 * np.sqrt(2.0) * duck["bias_sd"] / np.sqrt(min_ess)
    assert ((duck["bias_mean"] - spark["bias_mean"]).abs() <= tolerance + 1e-12).all()
    cov_duck, cov_spark = (built[t]["coverage_release"].rename(columns=str.lower) for t in ("dev", "spark"))
    assert len(cov_duck) == len(cov_spark) == 1
    row_d, row_s = cov_duck.iloc[0], cov_spark.iloc[0]
    assert row_d["test_n"] == row_s["test_n"] > 0
    assert row_d["status"] == row_s["status"]
    identical_fit = all(
        np.array_equal(_sorted(built["dev"][t], ["indicator", POSTERIORS[t], "parameter"])["mean"],
                       _sorted(built["spark"][t], ["indicator", POSTERIORS[t], "parameter"])["mean"])
        for t in POSTERIORS)
    # the same fit gives the same intervals, hence the same coverage; otherwise a held-out row
    # whose interval end moved by MC noise may flip: allow a handful of them
    allowed = 0.0 if identical_fit else 5.0 / row_d["test_n"]
    assert abs(row_d["empirical_coverage"] - row_s["empirical_coverage"]) <= allowed + 1e-12
