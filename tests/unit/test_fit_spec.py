"""Spec validation against a cells frame: clear FitErrors for every kind of bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tierpool.errors import FitError
from tierpool.fit.cells_check import validate_cells
from tierpool.fit.spec import (
    default_spec,
    eight_schools_spec,
    three_level_spec,
)
from tierpool.fit.structure import build_structure


def _cells() -> pd.DataFrame:
    return pd.DataFrame({
        "family_id": ["f1", "f1", "f2"], "model_id": ["a", "a", "b"],
        "region_class_id": ["c1", "c1", "c2"], "region_id": ["x", "y", "z"],
        "n": [3, 4, 5], "mean": [0.1, 0.2, -0.3], "S": [1.0, 2.0, 0.5],
    })


def test_valid_cells_pass_and_are_normalised():
    out = validate_cells(_cells(), default_spec())
    assert list(out.columns) == ["family_id", "model_id", "region_class_id", "region_id", "n", "mean", "S"]
    assert out["n"].dtype == float and all(isinstance(v, str) for v in out["model_id"])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.drop(columns=["S"]), "missing column"),
        (lambda d: d.assign(n=[0, 4, 5]), "must be positive"),
        (lambda d: d.assign(S=[-1.0, 2.0, 0.5]), "must be >= 0"),
        (lambda d: d.assign(mean=[np.nan, 0.2, 0.1]), "NaN"),
        (lambda d: d.assign(family_id=["f1", "f2", "f2"]), "mapped to 2 family"),
        (lambda d: d.assign(region_class_id=["c1", "c2", "c2"], region_id=["x", "x", "z"]), "mapped to 2 region_class"),
        (lambda d: d.assign(region_id=["x", "x", "z"]), "duplicate cells"),
        (lambda d: d.assign(model_id=[None, "a", "b"]), "missing ids"),
        (lambda d: d.iloc[0:0], "empty"),
        (lambda d: d.assign(mean=["a", "b", "c"]), "not numeric"),
    ],
)
def test_bad_cells_raise_clear_fit_errors(mutate, message):
    with pytest.raises(FitError, match=message):
        validate_cells(mutate(_cells()), default_spec())


def test_se_likelihood_needs_positive_se():
    cells = pd.DataFrame({"school": list("ab"), "mean": [1.0, 2.0], "se": [1.0, 0.0]})
    with pytest.raises(FitError, match="standard error"):
        validate_cells(cells, eight_schools_spec())


def test_three_level_needs_architecture_column():
    with pytest.raises(FitError, match="architecture_id"):
        validate_cells(_cells(), three_level_spec())


def test_catalogue_adds_groups_without_data():
    cat = pd.DataFrame({"family_id": ["f3"], "model_id": ["new"]})
    st = build_structure(validate_cells(_cells(), default_spec()), default_spec(), cat)
    assert list(st.ids["model"]) == ["a", "b", "new"]
    assert list(st.ids["family"]) == ["f1", "f2", "f3"]
    assert st.n_z == st.n_kept - 1  # one dimension lost to the sum-to-zero constraint


def test_default_spec_scales_follow_the_generic_rule():
    spec = default_spec()
    st = build_structure(validate_cells(_cells(), spec), spec)
    assert [b.name for b in st.scale_layout] == ["sigma_family", "sigma_model", "sigma_region_class"]
    with_global = default_spec(global_level=True)
    st2 = build_structure(validate_cells(_cells(), with_global), with_global)
    assert [b.name for b in st2.scale_layout][-1] == "tau_global"
    assert st2.kept_offset["global"] == 0
