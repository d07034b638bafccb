"""End-to-end: examples/eight_schools builds with `tierpool build` and reproduces BDA3 §5.5.

The reference is the exact posterior under the flat prior on (mu, tau), computed here by
numerical integration over tau (mu and the school effects are Gaussian given tau). The build
uses reduced draws; tolerances are a few Monte Carlo standard errors of the saved draws.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import invoke, query, run_results

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

pytestmark = [pytest.mark.slow, pytest.mark.fit]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "eight_schools"
SCHOOLS = list("ABCDEFGH")
Y = np.array([28.0, 8, -3, 7, -1, 1, 18, 12])
SIGMA = np.array([15.0, 10, 16, 11, 9, 11, 10, 18])
N_MCSE = 4.0  # |estimate - exact| <= 4 MCSE: a false alarm rate ~1e-4 per quantity


def exact_posterior_means() -> dict[str, float]:
    """E[mu], E[tau] and E[theta_j] under p(mu, tau) ∝ 1 (BDA3 eqs. 5.20-5.21), by quadrature."""
    tau = np.linspace(1e-6, 300.0, 300_001)[:, None]
    var = SIGMA**2 + tau**2
    v_mu = 1.0 / np.sum(1.0 / var, axis=1, keepdims=True)
    mu_hat = v_mu * np.sum(Y / var, axis=1, keepdims=True)
    log_p = 0.5 * np.log(v_mu) + np.sum(-0.5 * np.log(var) - 0.5 * (Y - mu_hat) ** 2 / var, axis=1, keepdims=True)
    w = np.exp(log_p - log_p.max())
    w /= w.sum()
    theta = (Y / SIGMA**2 + mu_hat / tau**2) / (1.0 / SIGMA**2 + 1.0 / tau**2)
    means = {"mu": float(np.sum(w * mu_hat)), "tau": float(np.sum(w * tau))}
    means.update({s: float(np.sum(w[:, 0] * theta[:, j])) for j, s in enumerate(SCHOOLS)})
    return means


def test_exact_reference_matches_bda3() -> None:
    exact = exact_posterior_means()
    assert exact["mu"] == pytest.approx(7.9, abs=0.1)  # BDA3 Table 5.3 / the usual 7.9
    assert 6.0 < exact["tau"] < 7.0 and exact["A"] > exact["G"] > exact["C"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    project = tmp_path_factory.mktemp("eight_schools") / "eight_schools"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("target"))
    result = invoke(project, "build", "--no-progress", "--fit-tune", "500", "--fit-draws", "1000", "--fit-chains", "2")
    assert result.exit_code == 0, result.output[-3000:]
    return project, result.output


def test_example_builds_tables(built: tuple[Path, str]) -> None:
    project, output = built
    assert run_results(project)["eight_schools"]["status"] == "success"
    assert "divergences 0" in output
    hyper = query(project, "select parameter, mean, sd, q05, q50, q95 from hyperparameters order by parameter")
    assert [r[0] for r in hyper] == ["mu", "tau"]
    effects = query(project, "select school, mean, sd, q05, q50, q95 from school_effects order by school")
    assert [r[0] for r in effects] == SCHOOLS
    for _, mean, sd, q05, q50, q95 in hyper + effects:
        assert sd > 0 and q05 < q50 < q95 and q05 < mean < q95
    assert (project / "target" / "fits" / "eight_schools.nc").is_file()


def test_posterior_matches_exact_within_mcse(built: tuple[Path, str]) -> None:
    import arviz as az

    project, _ = built
    idata = az.from_netcdf(project / "target" / "fits" / "eight_schools.nc")
    assert (idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]) == (2, 1000)
    mcse = az.mcse(idata, method="mean")
    exact = exact_posterior_means()
    tables = dict(query(project, "select parameter, mean from hyperparameters"))
    tables |= dict(query(project, "select school, mean from school_effects"))
    checks = {"mu": float(mcse["mu_global"]), "tau": float(mcse["tau_global"])}
    checks |= {s: float(mcse["mu_school"].sel(school=s)) for s in SCHOOLS}
    for name, err in checks.items():
        assert 0 < err < 1.0, name  # reduced draws still give a usable MCSE
        assert abs(tables[name] - exact[name]) <= N_MCSE * err, (name, tables[name], exact[name], err)
    # shrinkage, as in BDA3: school A's 28 is pulled far towards mu
    assert tables["mu"] < tables["A"] < 0.6 * Y[0]
