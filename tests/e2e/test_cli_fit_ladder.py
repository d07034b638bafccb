"""Issue 12 item 4 end to end: a fit failing the gate only on a few divergences is refitted up the
target_accept ladder, and every attempt is recorded in fit_runs.

The synth warehouse of test_warehouse_build.py (~20k tier-2 rows, seed 1) with its reduced sampler
(2 chains x 300 tune + 300 draws) and its relaxed r_hat/ESS gate, but a deliberately low
target_accept (0.6: a large step, a few divergences in either indicator, 4 and 2 of 600 when
written, r_hat and ESS within the gate), no divergence allowed, and the ladder
``target_accept_ladder: [0.99]`` (0.99 leaves none). Real settings only, no stand-ins: the build
must record attempt 1 as 'retried' and publish attempt 2 at 0.99.
"""

from __future__ import annotations

import json
import os

import pytest
from cli_helpers import synth_project, invoke, query, run_results


for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

pytestmark = [pytest.mark.slow, pytest.mark.fit]

INDICATORS = ["energy_wh", "gco2e"]
FIT_VARS = {"tune": 300, "draws": 300, "chains": 2, "target_accept": 0.6, "seed": 20261121,
            "methodology_base_version": "1.4.2", "as_of": "2026-11-21", "target_accept_ladder": [0.99],
            "gate": {"max_r_hat": 1.05, "min_ess_bulk": 100, "max_divergences": 0}}


@pytest.fixture(scope="module")
def laddered(tmp_path_factory: pytest.TempPathFactory):
    project = synth_project(tmp_path_factory.mktemp("ladder") / "synth", FIT_VARS)
    return project, invoke(project, "build", "--no-progress"), _code(project)


def _code(project):
    """The code part of the fit's reuse fingerprint (as test_warehouse_build.fit_code)."""
    from tierpool.calibration.lifecycle import code_fingerprint

    return code_fingerprint([project / "python_models" / "hierarchical_fit.py"])


def test_divergences_only_are_refitted_at_the_next_rung_and_published(laddered):
    project, result, _ = laddered
    assert result.exit_code == 0, result.output[-4000:]
    assert "failed the gate on divergences only: refitting every indicator at target_accept 0.99" in result.output
    assert "published fit 2026Q3 as methodology 1.4.3 (attempt 2, target_accept 0.99)" in result.output
    runs = query(project, "select attempt, indicator, status, reason, max_r_hat, min_ess_bulk, divergences, settings "
                          "from fit_runs order by attempt, indicator")
    for attempt, indicator, status, reason, rhat, ess, div, settings in runs:
        print(f"attempt {attempt} {indicator}: {status} r_hat {rhat:.4f} ess {ess:.0f} divergences {div}")
        assert rhat <= 1.05 and ess >= 100, (attempt, indicator, rhat, ess)  # divergences were the only failure
    assert [(a, i, s) for a, i, s, *_ in runs] == [(1, i, "retried") for i in INDICATORS] + \
        [(2, i, "published") for i in INDICATORS]
    first, second = runs[:2], runs[2:]
    assert sum(r[6] for r in first) > 0 and all(r[6] == 0 for r in second)
    assert all("divergent transition(s) > 0 allowed" in r[3] or r[6] == 0 for r in first)
    assert all("retried at target_accept 0.99" in r[3] for r in first) and all(r[3] is None for r in second)
    # fit_runs.settings: the target_accept each attempt actually sampled with (and the configured ladder)
    assert [json.loads(r[7])["target_accept"] for r in runs] == [0.6, 0.6, 0.99, 0.99]
    assert all(json.loads(r[7])["target_accept_ladder"] == [0.99] for r in runs)
    # one published fit, served everywhere; the gate and the row keys pass
    assert query(project, "select distinct fit_id, methodology_version from latest_fit") == [("2026Q3", "1.4.3")]
    assert query(project, "select indicator, status, action from fit_decision order by indicator") == \
        [(i, "published", "fitted") for i in INDICATORS]
    assert query(project, "select distinct fit_id from priors") == [("2026Q3",)]
    results = run_results(project)
    assert results["fit_gate"]["status"] == "pass" and results["posterior_keys_unique"]["status"] == "pass"
    assert results["fit_gate_rejected_fits"]["status"] == "pass"
    # the posterior tables hold the published attempt only
    assert query(project, "select count(*) from posterior_families group by indicator, family_id, parameter "
                          "having count(*) > 1") == []


def test_the_draws_are_the_published_attempt_and_a_rebuild_reuses_it(laddered):
    import arviz as az

    project, _, code = laddered
    idata = az.from_netcdf(str(project / "target" / "fits" / "2026Q3" / "gco2e.nc"))
    assert int(idata.sample_stats["diverging"].values.sum()) == 0  # attempt 2's draws, not attempt 1's
    if _code(project) != code:  # the fit code was edited since (a shared tree): that build refits, correctly
        assert invoke(project, "build", "--no-progress").exit_code == 0
    fit_id = query(project, "select distinct fit_id from latest_fit")[0][0]
    runs = query(project, "select count(*) from fit_runs")
    again = invoke(project, "build", "--no-progress")
    assert again.exit_code == 0, again.output[-3000:]
    assert f"reused fit {fit_id} (published)" in again.output and "fitting" not in again.output
    assert query(project, "select count(*) from fit_runs") == runs
    assert query(project, "select indicator, status, action from fit_decision order by indicator") == \
        [(i, "published", "reused") for i in INDICATORS]
