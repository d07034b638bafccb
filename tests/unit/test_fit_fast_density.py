"""The numba kernel against the PyTensor model it replaces: same log density, same gradient.

The PyTensor model (build.py) is itself checked against dense-Gaussian and direct-integration
references in test_fit_gaussian.py; here the kernel must agree with it at random points of
every kind of spec, including points where a scale is tiny (numerically hard: a cell weight
n/σ² of 1e12).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tierpool.fit import DEFAULT_HIERARCHY, fast_density, spec_from_config
from tierpool.fit.build import build_model
from tierpool.fit.cells_check import validate_cells
from tierpool.fit.spec import (
    FitSpec,
    Side,
    default_spec,
    eight_schools_spec,
    three_level_spec,
)
from tierpool.fit.structure import build_structure
from tierpool.fit.synthetic import draw_synthetic

SIZES = {"family": 3, "architecture": 4, "model": 9, "region_class": 2, "region": 6}


def _unconstrained(spec: FitSpec) -> FitSpec:
    return FitSpec(main=spec.main, additive=Side(spec.additive.levels, sum_to_zero=False),
                   global_level=spec.global_level)


def _eight_schools_structure(halfcauchy: bool = False):
    cells = pd.DataFrame({"school": list("ABCDEFGH"), "mean": [28.0, 8, -3, 7, -1, 1, 18, 12],
                          "se": [15.0, 10, 16, 11, 9, 11, 10, 18]})
    spec = eight_schools_spec() if not halfcauchy else spec_from_config({
        "likelihood": "cells_se", "global": {"location": "normal(0, 5)", "scale": "halfcauchy(5)"},
        "levels": [{"name": "school", "column": "school"}]})
    return build_structure(validate_cells(cells, spec), spec, None)


def _synthetic_structure(spec: FitSpec):
    syn = draw_synthetic(11, rows=600, spec=spec, sizes=SIZES)
    return build_structure(validate_cells(syn.cells, spec), spec, syn.catalogue)


def _configured(**changes):
    """The default hierarchy (DEFAULT_HIERARCHY) with some keys changed, as a FitSpec."""
    mapping = {**DEFAULT_HIERARCHY, **changes}
    return spec_from_config(mapping)


def _with_top(**top):
    family = {**DEFAULT_HIERARCHY["levels"][0], **top}
    return [family, DEFAULT_HIERARCHY["levels"][1]]


def _single_level_structure(**changes):
    """Radon's shape: one level (county) under a global level, cells_nms."""
    spec = spec_from_config({"levels": [{"name": "model", "column": "model_id"}], **changes})
    syn = draw_synthetic(5, rows=400, spec=spec, sizes={"model": 7})
    return build_structure(validate_cells(syn.cells, spec), spec, syn.catalogue)


STRUCTURES = {
    # every prior family and pooling option of the configuration (issue: fit library)
    "global_studentt_halfcauchy": lambda: _synthetic_structure(
        _configured(**{"global": {"location": "studentt(4, 0.3, 1)", "scale": "halfcauchy(1)"}})),
    "top_halfstudentt_fixed_normal": lambda: _synthetic_structure(
        _configured(levels=_with_top(scale="halfstudentt(3, 0.5)", location="normal(0.2, 1)"))),
    "top_exponential_studentt": lambda: _synthetic_structure(
        _configured(levels=_with_top(scale="exponential(2)", location="studentt(5, -0.4, 0.7)"))),
    "residual_shared": lambda: _synthetic_structure(
        _configured(residual_sd={"pooling": "shared", "prior": "halfnormal(1)"})),
    "residual_per_family": lambda: _synthetic_structure(
        _configured(residual_sd={"pooling": "family", "prior": "exponential(1)"})),
    "radon_shape": lambda: _single_level_structure(
        **{"global": {"location": "normal(1, 10)", "scale": "halfnormal(5)"},
           "residual_sd": {"pooling": "shared", "prior": "halfnormal(5)"}}),
    "eight_schools_halfcauchy": lambda: _eight_schools_structure(halfcauchy=True),
    "default": lambda: _synthetic_structure(default_spec()),
    "global_level": lambda: _synthetic_structure(default_spec(global_level=True)),
    "three_level": lambda: _synthetic_structure(three_level_spec()),
    "no_sum_to_zero": lambda: _synthetic_structure(_unconstrained(default_spec())),
    "eight_schools": _eight_schools_structure,
}


def _pytensor_logp(st):
    model = build_model(st)
    fn = model.logp_dlogp_function(ravel_inputs=True)
    fn.set_extra_values({})
    return fn


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_kernel_matches_pytensor_value_and_gradient(name):
    st = STRUCTURES[name]()
    arrays = fast_density.density_arrays(st)
    reference = _pytensor_logp(st)
    n = len(arrays.prior_kind)
    rng = np.random.default_rng(7)
    offsets = []
    for _ in range(6):
        u = np.log(rng.uniform(0.05, 2.0, n))
        grad = np.empty(n)
        value = fast_density.logp_grad(u, *arrays.args(), grad)
        ref_value, ref_grad = reference(u)
        offsets.append(value - ref_value)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-8, atol=1e-8 * np.abs(ref_grad).max())
    # the two may differ by a constant (PyMC's rounding of the HalfNormal normaliser), never more
    assert np.ptp(offsets) < 1e-7
    assert abs(offsets[0]) < 1e-6


def test_kernel_is_stable_when_a_model_scale_is_tiny():
    st = STRUCTURES["default"]()
    arrays = fast_density.density_arrays(st)
    reference = _pytensor_logp(st)
    n = len(arrays.prior_kind)
    model_block = next(b for b in st.scale_layout if b.name == "sigma_model")
    # a model whose rows all sit in different cells (S = 0): its σ is bounded away from 0 only by
    # the exact cancellation of O(1/σ²) terms, where a careless formula blows up
    n_cells = (arrays.Wc != 0).sum(1)
    candidates = np.nonzero((arrays.S_sum == 0) & (n_cells >= 2))[0]
    assert len(candidates), "synthetic data should contain a model with single-row cells only"
    j = model_block.offset + int(candidates[0])
    values = {}
    for tiny in (1e-2, 1e-4, 1e-6, 2e-8):
        u = np.full(n, np.log(0.3))
        u[j] = np.log(tiny)
        values[tiny] = fast_density.logp_grad(u, *arrays.args(), np.empty(n))
        if tiny >= 1e-6:  # below that the PyTensor graph itself loses the digits
            assert values[tiny] == pytest.approx(reference(u)[0], rel=1e-9, abs=1e-3)
    # as σ → 0 the density of log σ tends to c·σ (flat prior and likelihood, times the Jacobian):
    # it falls, with slope 1 in log σ (a spurious +∞ mode there once trapped a chain)
    assert values[1e-2] > values[1e-4] > values[1e-6] > values[2e-8]
    # near the kernel's floor e^-18 the O(1/σ²) cancellation between the model's pinned region
    # differences and its leaf term costs about 0.1 nat (no spurious mode: that took ~1,000)
    assert values[2e-8] - values[1e-6] == pytest.approx(np.log(2e-8 / 1e-6), abs=0.25)


def test_kernel_reports_minus_infinity_not_an_exception_outside_its_range():
    st = STRUCTURES["default"]()
    arrays = fast_density.density_arrays(st)
    n = len(arrays.prior_kind)
    for u in (np.full(n, -800.0), np.full(n, -18.5), np.full(n, 14.5), np.full(n, np.nan)):
        assert fast_density.logp_grad(u, *arrays.args(), np.empty(n)) == -np.inf


def test_data_poor_scales_stay_exact_far_into_their_left_tail():
    """A model with no cell or one cell has an exponential left tail in log σ that sampling
    does visit; the kernel must follow it (slope 1: prior × Jacobian), not cut it off."""
    st = STRUCTURES["default"]()
    arrays = fast_density.density_arrays(st)
    n = len(arrays.prior_kind)
    model_block = next(b for b in st.scale_layout if b.name == "sigma_model")
    n_cells = (arrays.Wc != 0).sum(1)
    for leaf in (int(np.argmax(n_cells == 0)), int(np.argmax(n_cells == 1))):
        assert n_cells[leaf] <= 1
        j = model_block.offset + leaf
        values = []
        for u_j in (-10.0, -20.0, -30.0):
            u = np.full(n, np.log(0.3))
            u[j] = u_j
            values.append(fast_density.logp_grad(u, *arrays.args(), np.empty(n)))
        assert np.diff(values) == pytest.approx([-10.0, -10.0], abs=1e-3)
