"""Which hierarchies the calibration warehouse can fit: its SQL reads fixed levels.

``vars.fit.hierarchy`` may change every prior, add a learned global level or the model × region
interaction (``interaction:``) and say how the residual sd is pooled, but the levels must stay DESIGN §5's (family → model, region class → region, with
their columns): the posterior_* tables and the prior SQL are written for them. Any other
hierarchy is for a Python model of its own (``tierpool.fit.spec_from_config``, as in
examples/eight_schools).
"""

from __future__ import annotations

from typing import Any

from tierpool.errors import FitError
from tierpool.fit.config import spec_from_config
from tierpool.fit.spec import PER_LEAF, FitSpec, default_spec

WHERE = "vars.fit.hierarchy"


def _levels(spec: FitSpec) -> list[tuple[str, str]]:
    return [(lv.name, lv.column) for lv in spec.all_levels()]


def check_calibration_hierarchy(mapping: Any) -> FitSpec:
    """The FitSpec of ``vars.fit.hierarchy``, refused where the warehouse's SQL cannot read its results.

    Raises:
        FitError: naming the key and what the calibration warehouse needs.
    """
    spec = spec_from_config(mapping, WHERE)
    want = default_spec()
    if _levels(spec) != _levels(want) or spec.additive is None or not spec.additive.sum_to_zero:
        shown = ", ".join(f"{n} ({c})" for n, c in _levels(want))
        raise FitError(f"{WHERE}: the calibration warehouse fits the levels {shown}, the region side with "
                       "sum_to_zero: true; change their priors, not the levels (another hierarchy belongs in a "
                       "Python model of its own: tierpool.fit.spec_from_config)")
    if spec.likelihood != "cells_nms":
        raise FitError(f"{WHERE}.likelihood: the calibration warehouse's cells are cells_nms")
    if spec.residual_sd.pooling != PER_LEAF:
        raise FitError(f"{WHERE}.residual_sd.pooling: the calibration warehouse publishes a residual sd per model "
                       "(posterior_models, parameter sigma): use per_leaf")
    return spec
