"""Hierarchical normal fits with every Gaussian location integrated out exactly (DESIGN §5).

Public API: :func:`fit_hierarchical`, :func:`fit_indicators`, :class:`FitSettings`,
:class:`FitResult`, the spec types and :func:`default_spec` / :func:`three_level_spec` /
:func:`eight_schools_spec`, :class:`GateVerdict` / :func:`evaluate_gate`, and
:func:`draw_synthetic` for synthetic cells; :func:`spec_from_config` turns a hierarchy mapping
(``vars.fit.hierarchy``) into a FitSpec, with priors written as strings (``fit/priors.py``).
"""

from __future__ import annotations

from tierpool.fit.api import (
    FitResult,
    fit_hierarchical,
    fit_indicators,
    package_versions,
)
from tierpool.fit.cells_check import validate_cells
from tierpool.fit.config import DEFAULT_HIERARCHY, spec_from_config
from tierpool.fit.gate import GateThresholds, GateVerdict, evaluate_gate
from tierpool.fit.sample import FitSettings, clear_compile_cache
from tierpool.fit.spec import (
    FitSpec,
    GlobalLevel,
    Level,
    ResidualSd,
    Side,
    default_spec,
    eight_schools_spec,
    three_level_spec,
)
from tierpool.fit.synthetic import SyntheticData, draw_synthetic

__all__ = [
    "DEFAULT_HIERARCHY", "ResidualSd", "spec_from_config",
    "FitResult", "FitSettings", "FitSpec", "GateThresholds", "GateVerdict", "GlobalLevel", "Level",
    "Side", "SyntheticData", "clear_compile_cache", "default_spec", "draw_synthetic",
    "eight_schools_spec", "evaluate_gate", "fit_hierarchical", "fit_indicators",
    "package_versions", "three_level_spec", "validate_cells",
]
