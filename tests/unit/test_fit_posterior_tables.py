"""Summary tables must leave the draws they summarise untouched and equal numpy's statistics."""

from __future__ import annotations

import numpy as np
import xarray as xr

from tierpool.fit.posterior import _summaries


def test_summaries_match_numpy_and_do_not_modify_the_draws():
    rng = np.random.default_rng(4)
    ds = xr.Dataset({
        "tau_global": (("chain", "draw"), rng.gamma(2.0, 1.0, (4, 500))),  # one group: a (B,) view
        "mu_family": (("chain", "draw", "family"), rng.normal(size=(4, 500, 3))),
    })
    before = {v: ds[v].values.copy() for v in ds.data_vars}
    out = _summaries(ds)
    for var, draws in before.items():
        np.testing.assert_array_equal(ds[var].values, draws)  # a sort in place once scrambled these
        flat = draws.reshape(-1, 1) if draws.ndim == 2 else draws.reshape(-1, draws.shape[-1])
        np.testing.assert_allclose(out[var]["mean"], flat.mean(0), rtol=1e-12)
        np.testing.assert_array_equal(out[var]["q05"], np.quantile(flat, 0.05, axis=0))
        np.testing.assert_array_equal(out[var]["q95"], np.quantile(flat, 0.95, axis=0))
