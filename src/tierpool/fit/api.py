"""``fit_hierarchical``: validated cells → sampled scales → exact locations → tables and gate."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tierpool.errors import FitError
from tierpool.fit.cells_check import validate_cells
from tierpool.fit.diagnostics import summarise
from tierpool.fit.gate import GateThresholds, GateVerdict, evaluate_gate
from tierpool.fit.posterior import add_locations, level_tables, tidy_posterior
from tierpool.fit.predictive import predictive_table
from tierpool.fit.sample import FitSettings, sample_scales
from tierpool.fit.spec import FitSpec, default_spec
from tierpool.fit.structure import Structure, build_structure


@dataclass
class FitResult:
    """Everything a fit produces (see DESIGN §6 for how the tables are published)."""

    idata: Any
    levels: dict[str, pd.DataFrame]
    predictive: pd.DataFrame
    gate: GateVerdict
    timings: dict[str, float]
    settings: FitSettings
    versions: dict[str, str]
    spec: FitSpec
    structure: Structure = field(repr=False)
    student_t: Any = field(default=None, repr=False)  # student_t.TLayout of a t fit, else None

    def save(self, path: str | Path) -> Path:
        """Write the InferenceData (posterior incl. drawn locations, sample_stats) to ``.nc``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.idata.to_netcdf(str(path))
        return path


def package_versions() -> dict[str, str]:
    """Versions of the statistical stack, recorded with every fit."""
    import arviz
    import nutpie
    import pymc
    import pytensor

    return {"pymc": pymc.__version__, "pytensor": pytensor.__version__,
            "nutpie": nutpie.__version__, "arviz": arviz.__version__, "numpy": np.__version__}


def fit_hierarchical(
    cells: pd.DataFrame,
    spec: FitSpec | None = None,
    settings: FitSettings | None = None,
    catalogue: pd.DataFrame | None = None,
    thresholds: GateThresholds | None = None,
    rows: pd.DataFrame | None = None,
) -> FitResult:
    """Fit one indicator's cells.

    Args:
        cells: One row per (model, region) cell with the spec's id and statistic columns.
        spec: The hierarchy (default: DESIGN §5, :func:`default_spec`).
        settings: Sampler settings (default: DESIGN §5 defaults).
        catalogue: Optional rows of group ids without data (e.g. new models) to include.
        thresholds: Gate limits (default: DESIGN §6).
        rows: Raw residual rows (model id, region id, ``spec.row_col``) of the families in
            ``spec.student_t_families``; needed only then (see ``student_t.py``).

    Returns:
        The fit result; ``result.gate.passed`` says whether it may be published.

    Raises:
        FitError: If the cells do not match the spec or the settings are invalid.
    """
    spec = spec or default_spec()
    settings = settings or FitSettings()
    settings.validate()
    clean = validate_cells(cells, spec)
    st = build_structure(clean, spec, catalogue)
    if spec.student_t_families:
        return _fit_student_t(st, rows, settings, thresholds)
    out = sample_scales(st, settings)
    start = time.perf_counter()
    idata = out.idata
    tidy_posterior(idata, st)
    pooling = add_locations(idata, st, settings.seed)
    diagnostics = summarise(idata.posterior)  # once, for the tables and the gate
    levels = level_tables(idata, st, pooling, diagnostics)
    predictive = predictive_table(idata, st, settings.seed)
    gate = _judge(idata, st, thresholds, diagnostics)
    timings = {**out.timings, "posterior": time.perf_counter() - start, "cache_hit": float(out.cache_hit)}
    return FitResult(idata, levels, predictive, gate, timings, settings, package_versions(), spec, st)


def _judge(idata: Any, st: Structure, thresholds: GateThresholds | None, diagnostics: Any) -> GateVerdict:
    """The gate's verdict; a failed one also names the groups, models and cells driving it."""
    gate = evaluate_gate(idata, thresholds, diagnostics)
    if not gate.passed:
        from tierpool.fit.gate_drivers import describe_drivers

        gate.drivers = describe_drivers(idata, st, diagnostics, thresholds or GateThresholds())
    return gate


def _fit_student_t(st: Structure, rows: pd.DataFrame | None, settings: FitSettings, thresholds: GateThresholds | None) -> FitResult:
    """The same steps with explicit t-family locations (``student_t.py``)."""
    from tierpool.fit import student_t

    tl = student_t.prepare(st, rows)
    out = student_t.sample(st, tl, settings)
    start = time.perf_counter()
    idata = out.idata
    tidy_posterior(idata, st)
    pooling = student_t.add_locations_t(idata, st, tl, settings.seed)
    diagnostics = summarise(idata.posterior)  # once, for the tables and the gate
    levels = level_tables(idata, st, pooling, diagnostics)
    predictive = predictive_table(idata, st, settings.seed, student_t.predictive_nu(idata, st, tl))
    gate = _judge(idata, st, thresholds, diagnostics)
    timings = {**out.timings, "posterior": time.perf_counter() - start, "cache_hit": float(out.cache_hit)}
    return FitResult(idata, levels, predictive, gate, timings, settings, package_versions(), st.spec, st, tl)


def fit_indicators(
    cells: pd.DataFrame,
    spec: FitSpec | None = None,
    settings: FitSettings | None = None,
    indicator_col: str = "indicator",
    catalogue: pd.DataFrame | None = None,
    thresholds: GateThresholds | None = None,
) -> dict[str, FitResult]:
    """Fit each indicator separately (same structure → the compiled model is reused).

    Raises:
        FitError: If ``indicator_col`` is missing.
    """
    if indicator_col not in cells.columns:
        raise FitError(f"cells frame has no indicator column {indicator_col!r}; columns: {list(cells.columns)}")
    results = {}
    for k, (name, part) in enumerate(sorted(cells.groupby(indicator_col), key=lambda kv: str(kv[0]))):
        s = settings or FitSettings()
        results[str(name)] = fit_hierarchical(part.drop(columns=[indicator_col]), spec, s, catalogue, thresholds)
        del k
    return results
