"""Issue 10 items 6-8 end to end: a constant tier-3 series does not sink the quarter, the gate
fails only the build that made a rejected fit, and fit draws follow the database.

One synth warehouse (~20k tier-2 rows, as in test_warehouse_build.py) plus a new catalogue model
``flatline-7b`` with ten fit-fold requests whose residuals are all equal (S = 0), built with the
DEFAULT gate (r_hat <= 1.01, ess_bulk >= 400, no divergence) and the default sampler except the
draw count: 2 chains x (1,000 tune + 3,000 draws) instead of 4 x (2,000 + 4,000), to keep the
suite's time (2 x 1,000 draws leave bulk ESS under 400 on the demo, see test_cross_engine.py).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from cli_helpers import synth_project, invoke, query, run_results


for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

pytestmark = [pytest.mark.slow, pytest.mark.fit]

FLAT = "flatline-7b"
# request ids whose md5 fold lands in the fit fold (request_folds.sql: fold_u < 0.6)
FLAT_IDS = [9000000, 9000001, 9000002, 9000006, 9000009, 9000010, 9000011, 9000014, 9000015, 9000020]
FIT_VARS = {"tune": 1000, "draws": 3000, "chains": 2, "target_accept": 0.97, "seed": 20261121,
            "methodology_base_version": "1.4.2", "as_of": "2026-11-21",
            "gate": {"max_r_hat": 1.01, "min_ess_bulk": 400, "max_divergences": 0}}


def _add_constant_series(project: Path) -> None:
    import duckdb

    models = project / "seeds" / "models.csv"
    lines = models.read_text().splitlines()
    header, first = lines[0].split(","), lines[1].split(",")
    row = dict(zip(header, first))
    row[header[0]] = f'"{FLAT}"'
    models.write_text("\n".join([*lines, ",".join(row[h] for h in header)]) + "\n")
    family_region = None
    con = duckdb.connect()
    try:
        t2 = f"read_parquet('{project}/data/tier2/*.parquet')"
        t3 = f"read_parquet('{project}/data/tier3/*.parquet')"
        family_region = con.sql(f"select region_id from {t2} where indicator = 'energy_wh' limit 1").fetchall()[0][0]
        con.execute(f"create table a as select * from {t2} limit 0")
        con.execute(f"create table b as select * from {t3} limit 0")
        # measurements vary (so no constant-telemetry rule quarantines them) but tier 2 is exactly
        # 1.25 x tier 3: every residual is ln 1.25, S = 0 up to rounding
        for k, rid in enumerate(FLAT_IDS):
            t3v = 0.08 * (1 + 0.1 * k)
            con.execute("insert into a by name select ? as request_id, 'energy_wh' as indicator, ? as model_id, "
                        "? as region_id, timestamp '2026-08-01 10:00:00' as requested_at, ? as estimate, "
                        "? as ci90_low, ? as ci90_high", [rid, FLAT, family_region, 1.25 * t3v, 0.6 * t3v, 2.5 * t3v])
            con.execute("insert into b by name select ? as request_id, 'energy_wh' as indicator, "
                        "timestamp '2026-08-01 10:00:05' as measured_at, ? as measurement", [rid, t3v])
        con.execute(f"copy a to '{project}/data/tier2/part-flat.parquet' (format parquet)")
        con.execute(f"copy b to '{project}/data/tier3/part-flat.parquet' (format parquet)")
    finally:
        con.close()


@pytest.fixture(scope="module")
def degenerate(tmp_path_factory: pytest.TempPathFactory):
    project = synth_project(tmp_path_factory.mktemp("robust") / "synth", FIT_VARS)
    _add_constant_series(project)
    result = invoke(project, "build", "--no-progress")
    return project, result


def test_constant_series_publishes_at_the_default_gate(degenerate):
    project, result = degenerate
    assert result.exit_code == 0, result.output[-4000:]
    cells = query(project, f"select n, s from residual_cells where model_id = '{FLAT}' and indicator = 'energy_wh'")
    assert len(cells) == 1 and cells[0][0] == 10 and cells[0][1] < 1e-20, cells
    runs = query(project, "select indicator, status, max_r_hat, min_ess_bulk, divergences, settings, sampling_seconds "
                          "from fit_runs order by indicator")
    for indicator, status, rhat, ess, div, settings, seconds in runs:
        print(f"{indicator}: r_hat {rhat:.4f} ess {ess:.0f} divergences {div} sampling {seconds:.1f}s")
        assert status == "published" and rhat <= 1.01 and ess >= 400 and div == 0, (indicator, rhat, ess, div)
        assert json.loads(settings)["resolution"] == 0.001
    sigma = query(project, f"select mean, q95 from posterior_models where model_id = '{FLAT}' and parameter = 'sigma' "
                           "and indicator = 'energy_wh'")
    assert len(sigma) == 1 and sigma[0][1] < 0.01  # the floor's scale, δ/√12 ≈ 3e-4, not a runaway chain
    n_models, n_regions = (query(project, f"select count(*) from {t}")[0][0] for t in ("models", "regions"))
    assert query(project, "select count(*) from priors")[0][0] == 2 * n_models * n_regions


def test_draws_are_promoted_after_the_commit(degenerate):
    project, _ = degenerate
    fits = project / "target" / "fits"
    assert not (fits / ".pending").exists()
    rows = query(project, "select fit_id, indicator, path, present from fit_draws order by indicator")
    assert [r[3] for r in rows] == [True, True] and all((project / "target" / r[2]).is_file() for r in rows)


def test_orphan_draws_of_a_killed_run_are_removed(degenerate, tmp_path):
    project = tmp_path / "copy"
    shutil.copytree(degenerate[0], project)
    orphan = project / "target" / "fits" / ".pending" / "2026Q3-r9"
    orphan.mkdir(parents=True)
    (orphan / "energy_wh.nc").write_bytes(b"partial")
    (orphan / "fit_run.json").write_text(json.dumps({"fit_id": "2026Q3-r9", "started_at": "2026-11-21T00:00:00.000000"}))
    result = invoke(project, "build", "--no-progress")
    assert result.exit_code == 0, result.output[-3000:]
    assert not orphan.exists() and not (project / "target" / "fits" / "2026Q3-r9").exists()
    assert "removed orphan draws 2026Q3-r9" in result.output or "reused fit" in result.output


def test_a_rejected_refit_fails_only_its_own_build(degenerate, tmp_path):
    project = tmp_path / "copy"
    shutil.copytree(degenerate[0], project)
    published = query(project, "select distinct fit_id from latest_fit")[0][0]
    priors_before = query(project, "select * from priors order by all")
    config_path = project / "tierpool_project.yml"
    config = yaml.safe_load(config_path.read_text())
    config["vars"]["fit"] = {**FIT_VARS, "tune": 300, "draws": 300, "gate": {**FIT_VARS["gate"], "min_ess_bulk": 1e9}}
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    rejected = invoke(project, "build", "--no-progress", "--refit")
    assert rejected.exit_code == 1, rejected.output[-3000:]
    assert "REJECTED by the gate" in rejected.output and "energy_wh: " in rejected.output
    assert "driven by:" in rejected.output  # the models and cells behind the rejection
    assert run_results(project)["fit_gate"]["status"] == "fail"
    assert query(project, "select * from priors order by all") == priors_before
    # a newly added model, then a later build: it passes, warns naming the rejected fit, covers the catalogue
    models = project / "seeds" / "models.csv"
    lines = models.read_text().splitlines()
    models.write_text("\n".join([*lines, lines[1].replace(lines[1].split(",")[0], '"brand-new-1b"', 1)]) + "\n")
    later = invoke(project, "build", "--no-progress")
    assert later.exit_code == 0, later.output[-3000:]
    results = run_results(project)
    assert results["fit_gate"]["status"] == "pass" and results["fit_gate_rejected_fits"]["status"] == "warn"
    rejected_id = query(project, "select distinct fit_id from fit_runs where status = 'rejected'")[0][0]
    assert rejected_id in later.output and "fitting" not in later.output
    assert query(project, "select distinct fit_id from priors") == [(published,)]
    n_regions = query(project, "select count(*) from regions")[0][0]
    assert query(project, "select count(*) from priors where model_id = 'brand-new-1b'")[0][0] == 2 * n_regions
