"""The vectorised diagnostics (tierpool.fit.diagnostics) reproduce ArviZ's az.rhat / az.ess.

ArviZ is the reference: every case compares against ``az.rhat`` (method "rank") and
``az.ess(method="bulk" | "tail")`` on each quantity, to 1e-8 relative or both NaN.
"""

from __future__ import annotations

import logging
import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr

from tierpool.fit import diagnostics as dg

RTOL = 1e-8


def _ar1(rng: np.random.Generator, shape: tuple[int, int, int], phi: float) -> np.ndarray:
    e = rng.normal(size=shape)
    x = np.empty_like(e)
    x[:, 0] = e[:, 0]
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


def _arviz(x: np.ndarray) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0/0 of constant quantities, as in ArviZ itself
        cols = [x[:, :, p] for p in range(x.shape[2])]
        return {
            "r_hat": np.array([az.rhat(c) for c in cols], float),
            "ess_bulk": np.array([az.ess(c, method="bulk") for c in cols], float),
            "ess_tail": np.array([az.ess(c, method="tail") for c in cols], float),
        }


def _assert_matches(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.shape == ref.shape
    nan = np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_allclose(got[~nan], ref[~nan], rtol=RTOL, atol=0)


def _cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20240601)
    stuck = rng.normal(size=(4, 200, 6))
    stuck[1] += 2.5  # one chain at another mean: r_hat far above 1
    special = rng.normal(size=(4, 100, 7))
    special[:, :, 0] = 2.5  # constant: r_hat NaN, ess = draws
    special[:, :, 1] = np.nan
    special[0, 5, 2] = np.nan  # a single NaN poisons the quantity, as in ArviZ
    special[:, :, 3] = np.inf
    special[1, :10, 4] = np.inf
    special[:, :60, 5] = -np.inf  # median -inf: folded draws NaN
    special[:, :, 6] = 1 + 1e-13 * rng.normal(size=(4, 100))  # numerically constant for ESS
    long = _ar1(rng, (4, 1200, 8), 0.97)  # Geyer's stop beyond the first lag stages
    long[:, :, 0] = rng.normal(size=(4, 1200))
    long[:, :, 1] = _ar1(rng, (4, 1200, 1), 0.995)[:, :, 0]
    return {
        "iid": rng.normal(size=(4, 200, 10)),
        "ar1": _ar1(rng, (4, 300, 8), 0.9),
        "ar1_odd_draws": _ar1(rng, (3, 301, 6), 0.99),
        "antithetic": _ar1(rng, (4, 200, 5), -0.7),
        "stuck_chain": stuck,
        "heavy_tails": rng.standard_cauchy(size=(2, 157, 8)),
        "ties_poisson": rng.poisson(1.0, size=(4, 100, 8)).astype(float),
        "ties_rare_events": (rng.random((4, 100, 6)) < 0.03).astype(float),
        "integers": rng.integers(0, 3, size=(4, 50, 4)),
        "float32": _ar1(rng, (4, 200, 5), 0.8).astype(np.float32),
        "special_values": special,
        "one_chain": rng.normal(size=(1, 100, 3)),  # r_hat NaN, ESS defined
        "four_draws": rng.normal(size=(2, 4, 3)),
        "three_draws": rng.normal(size=(2, 3, 2)),  # too short: all NaN
        "long_slow": long,
    }


@pytest.fixture(scope="module")
def cases() -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    logging.getLogger("arviz").setLevel(logging.ERROR)  # its NaN/shape warnings are expected
    return {name: (x, _arviz(x)) for name, x in _cases().items()}


@pytest.mark.parametrize("name", list(_cases()))
def test_matches_arviz(cases, name):
    x, ref = cases[name]
    got = dg.diagnose(x)
    for key in dg.DIAGNOSTICS:
        _assert_matches(got[key], ref[key])


def test_single_diagnostic_functions(cases):
    x, ref = cases["stuck_chain"]
    _assert_matches(dg.rhat(x), ref["r_hat"])
    _assert_matches(dg.ess_bulk(x), ref["ess_bulk"])
    _assert_matches(dg.ess_tail(x), ref["ess_tail"])
    assert (dg.rhat(x) > 1.1).all()


def test_blocks_do_not_change_results(cases, monkeypatch):
    x, ref = cases["ar1"]
    monkeypatch.setattr(dg, "_BLOCK_ELEMENTS", 1)  # one quantity per block
    got = dg.diagnose(x)
    for key in dg.DIAGNOSTICS:
        _assert_matches(got[key], ref[key])


def test_summarise_dataset_matches_arviz_per_variable():
    rng = np.random.default_rng(7)
    x = _ar1(rng, (4, 200, 7), 0.6)
    ds = xr.Dataset(
        {
            "scalar": (("chain", "draw"), x[:, :, 0]),
            "vec": (("chain", "draw", "g"), x[:, :, 1:4]),
            "mat": (("chain", "draw", "a", "b"), x[:, :, 4:6].reshape(4, 200, 1, 2)),
            "draw_major": (("draw", "chain"), x[:, :, 6].T),  # dims in another order
            "counts": (("chain", "draw"), rng.poisson(2.0, size=(4, 200))),
        },
        coords={"g": ["x", "y", "z"]},
    )
    got = dg.summarise(ds)
    refs = {"r_hat": az.rhat(ds), "ess_bulk": az.ess(ds, method="bulk"), "ess_tail": az.ess(ds, method="tail")}
    for key, ref in refs.items():
        assert list(got[key]) == list(ds.data_vars)
        for var in ds.data_vars:
            _assert_matches(np.asarray(got[key][var]), np.asarray(ref[var].values))


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="chain, draw, P"):
        dg.diagnose(np.zeros((4, 100)))
    with pytest.raises(ValueError, match="unknown diagnostic"):
        dg.diagnose(np.zeros((4, 100, 1)), ("mcse",))


def test_gate_verdict_matches_the_arviz_computation():
    from tierpool.fit.gate import GateThresholds, _label, evaluate_gate

    rng = np.random.default_rng(11)
    mu = rng.normal(size=(4, 300, 3))
    mu[2, :, 1] += 3.0  # one group's chain elsewhere: worst r_hat
    sigma = _ar1(rng, (4, 300, 1), 0.97)[:, :, 0]  # slowly mixing scalar
    idata = az.from_dict(
        posterior={"mu_model": mu, "sigma_model": sigma},
        sample_stats={"diverging": np.zeros((4, 300), dtype=bool)},
        coords={"model": ["m1", "m2", "m3"]},
        dims={"mu_model": ["model"]},
    )
    post = idata.posterior
    rhat, ess = az.rhat(post), az.ess(post, method="bulk")
    flat_r = {v: np.atleast_1d(rhat[v].values).ravel() for v in post.data_vars}
    flat_e = {v: np.atleast_1d(ess[v].values).ravel() for v in post.data_vars}
    worst_r = max(flat_r, key=lambda v: flat_r[v].max())
    worst_e = min(flat_e, key=lambda v: flat_e[v].min())
    verdict = evaluate_gate(idata, GateThresholds())
    assert verdict.max_r_hat == pytest.approx(flat_r[worst_r].max(), rel=RTOL)
    assert verdict.min_ess_bulk == pytest.approx(flat_e[worst_e].min(), rel=RTOL)
    assert verdict.worst_r_hat == _label(rhat, worst_r, int(flat_r[worst_r].argmax())) == "mu_model[m2]"
    assert verdict.worst_ess_bulk == _label(ess, worst_e, int(flat_e[worst_e].argmin()))
    assert not verdict.passed and len(verdict.reasons) == 2
    # precomputed diagnostics give the identical verdict
    assert evaluate_gate(idata, GateThresholds(), dg.summarise(post)) == verdict
