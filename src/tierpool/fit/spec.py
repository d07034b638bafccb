"""Pure description of nested normal hierarchies, and its validation against a cells frame.

Nothing here imports PyMC: a :class:`FitSpec` is plain data that `build.py` turns into a model.

Generic prior rule, applied per level (DESIGN §5, the methodology verbatim):

* a node ``j`` whose parent is ``p``: ``σ_j ~ HalfNormal(σ_p)``, ``μ_j ~ Normal(μ_p, σ_p)``;
* a node of a side's top level: ``σ_j ~ HalfNormal(top_scale)`` (or ``HalfFlat``) and
  ``μ_j ~ Normal(0, σ_j)`` (its *own* scale), or ``Flat``;
* with a :class:`GlobalLevel` on the main side the top level's means are instead pooled around a
  learned global mean, ``μ_top ~ Normal(μ_global, τ_global)``, ``μ_global ~ Normal(0, 1)`` (or
  Flat), ``τ_global ~ HalfNormal(0.5)`` (or HalfFlat). Without it (the verbatim default) a family
  that was never seen has only its prior predictive; with it, it learns from the other families.

A level has a scale ``σ`` when some level hangs below it, when it is the main side's leaf and the
likelihood is ``cells_nms`` (the leaf's σ is then the residual sd), or when it is a top level whose
location prior is ``Normal(0, own σ)``.

The main side carries the overall level; the optional additive side (region class → region) is
added to the main leaf's mean. With ``sum_to_zero`` its leaf effects are conditioned on summing
to zero (an exact linear constraint on the Gaussian prior), which identifies the split.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

from tierpool.errors import FitError

Likelihood = Literal["cells_nms", "cells_se"]
ScalePrior = Literal["halfnormal", "halfflat"]
LocationPrior = Literal["normal", "flat"]


@dataclass(frozen=True)
class Level:
    """One level of a hierarchy, e.g. ``family`` identified by the column ``family_id``.

    Args:
        name: Short name, used for PyMC dims and result tables (``family``, ``model``, ...).
        column: Column of the cells frame holding each cell's group id at this level.
        top_scale: sd of the HalfNormal prior on the scales of a side's top level.
        scale_prior: ``halfnormal`` or ``halfflat`` (top level only).
        location_prior: ``normal`` (Normal(0, own σ)) or ``flat`` (top level only).
    """

    name: str
    column: str
    top_scale: float = 0.5
    scale_prior: ScalePrior = "halfnormal"
    location_prior: LocationPrior = "normal"


@dataclass(frozen=True)
class Side:
    """Levels from top to leaf; each level's groups nest in exactly one group of the level above."""

    levels: tuple[Level, ...]
    sum_to_zero: bool = False

    @property
    def leaf(self) -> Level:
        """The finest level (the one cells point at)."""
        return self.levels[-1]


@dataclass(frozen=True)
class GlobalLevel:
    """A learned global mean for the main side's top level (``μ_top ~ Normal(μ_global, τ)``)."""

    location_prior: LocationPrior = "normal"
    location_sd: float = 1.0
    scale_prior: ScalePrior = "halfnormal"
    scale_sd: float = 0.5


@dataclass(frozen=True)
class FitSpec:
    """What to fit: the hierarchy, its hyperpriors and the likelihood of the cells.

    Args:
        main: The side carrying the level (family → model); its leaf holds the residual sd.
        additive: Optional side added to the main leaf's mean (region class → region).
        global_level: Optional learned global mean above the main side's top level.
        likelihood: ``cells_nms`` (columns n, mean, S) or ``cells_se`` (columns mean, se).
        n_col / mean_col / s_col / se_col: column names of the sufficient statistics.
        student_t_families: Top-level (family) ids whose models get a Student-t likelihood over
            raw residual rows (``fit_hierarchical(rows=...)``) instead of the Gaussian cells; see
            ``student_t.py`` and docs/fit.md "Heavy tails". Empty: the exact Gaussian fit.
        nu_prior: ``(alpha, beta)`` of the Gamma prior on each t-family's ν (Juárez & Steel
            2010: Gamma(2, 0.1), mean 20, mode 10).
        row_col: Column of the rows frame holding the residual.
        resolution: Measurement resolution δ of a residual (``cells_nms`` only; same units as
            the residual, here the log scale). Each observed residual is the true one plus a
            rounding error uniform on ±δ/2, taken as Normal(0, δ²/12) (Sheppard), so the cell
            likelihood uses the sd ``√(σ² + δ²/12)``. 0 (default) is the verbatim model; δ > 0
            keeps the posterior proper when a model's residuals are all equal (S = 0, see
            docs/fit.md "Constant series and the resolution floor").
    """

    main: Side
    additive: Side | None = None
    global_level: GlobalLevel | None = None
    likelihood: Likelihood = "cells_nms"
    n_col: str = "n"
    mean_col: str = "mean"
    s_col: str = "S"
    se_col: str = "se"
    name: str = field(default="tier_calibration")
    student_t_families: tuple[str, ...] = ()
    nu_prior: tuple[float, float] = (2.0, 0.1)
    row_col: str = "residual"
    resolution: float = 0.0

    @property
    def resolution_var(self) -> float:
        """δ²/12: the variance a resolution-δ rounding adds to every observed residual."""
        return float(self.resolution) ** 2 / 12.0

    def all_levels(self) -> list[Level]:
        """Main-side levels then additive-side levels, top to leaf."""
        extra = list(self.additive.levels) if self.additive else []
        return list(self.main.levels) + extra

    def id_columns(self) -> list[str]:
        """The group-id columns the cells frame must carry."""
        return [lv.column for lv in self.all_levels()]

    def stat_columns(self) -> list[str]:
        """The sufficient-statistic columns the likelihood needs."""
        if self.likelihood == "cells_nms":
            return [self.n_col, self.mean_col, self.s_col]
        return [self.mean_col, self.se_col]

    def has_scale(self, side: Side, k: int) -> bool:
        """Whether level ``k`` of ``side`` carries a scale parameter σ (see module docstring)."""
        if k < len(side.levels) - 1:
            return True
        if side is self.main and self.likelihood == "cells_nms":
            return True
        return k == 0 and self._top_uses_own_scale(side)

    def _top_uses_own_scale(self, side: Side) -> bool:
        top = side.levels[0]
        pooled_by_global = side is self.main and self.global_level is not None
        return top.location_prior == "normal" and not pooled_by_global

    def with_global_level(self, global_level: GlobalLevel | None = None) -> FitSpec:
        """A copy with a learned global mean (defaults: μ ~ Normal(0, 1), τ ~ HalfNormal(0.5))."""
        return replace(self, global_level=global_level or GlobalLevel())


def default_spec(global_level: bool = False) -> FitSpec:
    """DESIGN §5: family → model (verbatim) plus sum-to-zero region class → region deviations."""
    spec = FitSpec(
        main=Side((Level("family", "family_id"), Level("model", "model_id"))),
        additive=Side(
            (Level("region_class", "region_class_id"), Level("region", "region_id")),
            sum_to_zero=True,
        ),
    )
    return spec.with_global_level() if global_level else spec


def three_level_spec(global_level: bool = False) -> FitSpec:
    """The family → architecture → model variant (column ``architecture_id``)."""
    base = default_spec(global_level)
    main = Side(
        (
            Level("family", "family_id"),
            Level("architecture", "architecture_id"),
            Level("model", "model_id"),
        )
    )
    return replace(base, main=main, name="tier_calibration_3level")


def eight_schools_spec() -> FitSpec:
    """BDA3 §5.5: one level (school) under a global level with flat priors on (μ, τ)."""
    return FitSpec(
        main=Side((Level("school", "school"),)),
        global_level=GlobalLevel(location_prior="flat", scale_prior="halfflat"),
        likelihood="cells_se",
        name="eight_schools",
    )


def validate_spec(spec: FitSpec) -> None:
    """Check the spec on its own (names unique, priors allowed where they are used).

    Raises:
        FitError: describing the first problem found.
    """
    if not spec.main.levels:
        raise FitError("fit spec: the main side needs at least one level")
    if spec.likelihood not in ("cells_nms", "cells_se"):
        raise FitError(f"fit spec: unknown likelihood {spec.likelihood!r}; use cells_nms or cells_se")
    levels = spec.all_levels()
    names = [lv.name for lv in levels]
    cols = [lv.column for lv in levels]
    for label, values in (("level names", names), ("level columns", cols)):
        if len(set(values)) != len(values):
            raise FitError(f"fit spec: {label} must be unique, got {values}")
    for side in (spec.main, spec.additive):
        if side is None:
            continue
        if not side.levels:
            raise FitError("fit spec: a side needs at least one level")
        for k, lv in enumerate(side.levels):
            if k > 0 and (lv.location_prior != "normal" or lv.scale_prior != "halfnormal"):
                raise FitError(f"fit spec: level {lv.name!r}: flat priors only on a top level")
            if lv.top_scale <= 0:
                raise FitError(f"fit spec: level {lv.name!r}: top_scale must be > 0")
    if spec.student_t_families:
        _validate_student_t(spec)
    if not (np.isfinite(spec.resolution) and spec.resolution >= 0):
        raise FitError(f"fit spec: resolution must be a finite number >= 0, got {spec.resolution!r}")
    if spec.resolution > 0 and spec.likelihood != "cells_nms":
        raise FitError("fit spec: resolution applies to the cells_nms likelihood (cells with a known se already carry their error)")
    if spec.main.sum_to_zero:
        raise FitError("fit spec: sum_to_zero belongs on the additive side; the main side carries the level")
    if spec.additive and spec.additive.sum_to_zero:
        if spec.additive.levels[0].location_prior == "flat":
            raise FitError("fit spec: a sum-to-zero additive side needs a proper (normal) top prior")


def _validate_student_t(spec: FitSpec) -> None:
    if spec.likelihood != "cells_nms":
        raise FitError("fit spec: student_t_families needs the cells_nms likelihood (a residual sd per model)")
    if len(spec.main.levels) < 2:
        raise FitError("fit spec: student_t_families needs a main side of at least two levels (family -> model)")
    if len(spec.nu_prior) != 2 or min(spec.nu_prior) <= 0:
        raise FitError(f"fit spec: nu_prior must be (alpha > 0, beta > 0), got {spec.nu_prior}")


def validate_cells(cells: pd.DataFrame, spec: FitSpec) -> pd.DataFrame:
    """Check a cells frame against a spec and return a clean copy (ids as str, stats as float).

    Raises:
        FitError: naming the column or group at fault and what to do about it.
    """
    validate_spec(spec)
    needed = spec.id_columns() + spec.stat_columns()
    missing = [c for c in needed if c not in cells.columns]
    if missing:
        raise FitError(
            f"cells frame is missing column(s) {missing} needed by fit spec {spec.name!r}; "
            f"it has {list(cells.columns)}"
        )
    if len(cells) == 0:
        raise FitError("cells frame is empty: nothing to fit")
    out = cells[needed].copy()
    for col in spec.id_columns():
        if out[col].isna().any():
            raise FitError(f"cells column {col!r} has missing ids ({int(out[col].isna().sum())} rows)")
        out[col] = out[col].astype(str)
    for col in spec.stat_columns():
        try:
            out[col] = pd.to_numeric(out[col]).astype(float)
        except (TypeError, ValueError) as exc:
            raise FitError(f"cells column {col!r} is not numeric: {exc}") from exc
        bad = ~np.isfinite(out[col].to_numpy())
        if bad.any():
            raise FitError(f"cells column {col!r} has {int(bad.sum())} NaN/infinite value(s)")
    _check_stats(out, spec)
    _check_nesting(out, spec)
    keys = [spec.main.leaf.column] + ([spec.additive.leaf.column] if spec.additive else [])
    dup = out.duplicated(keys)
    if dup.any():
        first = out.loc[dup, keys].iloc[0].to_dict()
        raise FitError(f"cells frame has duplicate cells for {keys}, e.g. {first}: reduce to one row per cell")
    return out.reset_index(drop=True)


def _check_stats(out: pd.DataFrame, spec: FitSpec) -> None:
    if spec.likelihood == "cells_nms":
        if (out[spec.n_col] <= 0).any():
            raise FitError(f"cells column {spec.n_col!r} must be positive (drop empty cells)")
        if (out[spec.s_col] < 0).any():
            raise FitError(f"cells column {spec.s_col!r} (sum of squared deviations) must be >= 0")
        if spec.resolution == 0:
            _check_constant_series(out, spec)
    elif (out[spec.se_col] <= 0).any():
        raise FitError(f"cells column {spec.se_col!r} (standard error) must be positive")


def _check_constant_series(out: pd.DataFrame, spec: FitSpec) -> None:
    """Without a resolution floor, a leaf whose residuals are all equal has an improper posterior.

    For such a leaf (S = 0 in every cell, more rows than cells) the marginal likelihood grows
    like σ^-(Σ(n_c - 1)) as σ → 0, which no proper prior on σ offsets. "All equal" allows for the
    rounding of S in SQL sums: a within-leaf sd below 1e-9 (relative to the cell means, if larger).
    """
    leaf = spec.main.leaf.column
    frame = out.assign(_abs=out[spec.mean_col].abs())
    per = frame.groupby(leaf).agg(S=(spec.s_col, "sum"), n=(spec.n_col, "sum"), cells=(spec.n_col, "size"),
                                  scale=("_abs", "max"))
    tiny = per["S"] <= per["n"] * (1e-9 * np.maximum(per["scale"], 1.0)) ** 2
    bad = per[tiny & (per["n"] > per["cells"])]
    if len(bad):
        shown = ", ".join(f"{gid} ({int(r.n)} rows in {int(r.cells)} cell(s))" for gid, r in bad.head(5).iterrows())
        raise FitError(
            f"{spec.main.leaf.name}(s) with constant residuals (S = 0): {shown}; their residual sd has an improper "
            "posterior at 0. Quarantine the series (a telemetry fault) or fit with a measurement resolution > 0 "
            "(FitSpec.resolution, vars.fit.resolution)"
        )


def _check_nesting(out: pd.DataFrame, spec: FitSpec) -> None:
    for side in (spec.main, spec.additive):
        if side is None:
            continue
        for upper, lower in zip(side.levels[:-1], side.levels[1:]):
            parents = out.groupby(lower.column)[upper.column].nunique()
            bad = parents[parents > 1]
            if len(bad):
                gid = bad.index[0]
                seen = sorted(out.loc[out[lower.column] == gid, upper.column].unique())
                raise FitError(
                    f"{lower.name} {gid!r} is mapped to {len(seen)} {upper.name} groups {seen}: "
                    f"each {lower.name} must belong to exactly one {upper.name}"
                )
