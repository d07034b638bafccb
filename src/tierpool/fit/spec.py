"""Pure description of nested normal hierarchies (a cells frame is checked against one in
``cells_check.py``).

Nothing here imports PyMC: a :class:`FitSpec` is plain data that `build.py` turns into a model.

Generic prior rule, applied per level (DESIGN §5, the methodology verbatim):

* a node ``j`` whose parent is ``p``: ``σ_j ~ HalfNormal(σ_p)``, ``μ_j ~ Normal(μ_p, σ_p)``;
* a node of a side's top level: ``σ_j ~`` its level's ``scale`` prior (DESIGN §5: HalfNormal(0.5))
  and ``μ_j ~`` its ``location`` prior (DESIGN §5: ``Normal(0, σ_j)``, its *own* scale); the prior
  families are in ``priors.py``;
* with a :class:`GlobalLevel` on the main side the top level's means are instead pooled around a
  learned global mean, ``μ_top ~ Normal(μ_global, τ_global)`` with the global level's own location
  and scale priors (default ``Normal(0, 1)``, ``HalfNormal(0.5)``). Without it (the methodology
  verbatim) a family that was never seen has only its prior predictive; with it, it learns from the
  other families.

A level has a scale ``σ`` when some level hangs below it, when it is the main side's leaf, the
likelihood is ``cells_nms`` and the residual sd is per leaf (``ResidualSd``), or when it is a top
level whose location prior is ``normal(mu, scale)`` (its own σ).

The main side carries the overall level; the optional additive side (region class → region) is
added to the main leaf's mean. With ``sum_to_zero`` its leaf effects are conditioned on summing
to zero (an exact linear constraint on the Gaussian prior), which identifies the split.

With a ``cell_interaction`` prior every (main leaf, additive leaf) cell gets its own deviation
``γ_mr ~ Normal(0, σ_cell)`` (``σ_cell`` ~ that prior) added to the mean: a measured pair's bias is
``μ_model + μ_region + γ_mr``, a never-measured pair's carries ``σ_cell²`` more variance.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from tierpool.errors import FitError
from tierpool.fit.priors import Prior

Likelihood = Literal["cells_nms", "cells_se"]


_HALFNORMAL_05 = Prior("halfnormal", (0.5,))
_NORMAL_OWN = Prior("normal", (0.0,), own_scale=True)
PER_LEAF, SHARED = "per_leaf", "shared"


@dataclass(frozen=True)
class Level:
    """One level of a hierarchy, e.g. ``family`` identified by the column ``family_id``.

    Args:
        name: Short name, used for PyMC dims and result tables (``family``, ``model``, ...).
        column: Column of the cells frame holding each cell's group id at this level.
        scale: Prior of the scales σ of a side's top level (``halfnormal(0.5)``: DESIGN §5). Below
            the top, ``σ ~ HalfNormal(σ_parent)`` (the methodology's rule).
        location: Prior of the locations of a side's top level: ``normal(0, scale)`` (DESIGN §5:
            ``Normal(0, own σ)``), ``normal(mu, sigma)``, ``studentt(nu, mu, sigma)`` or ``flat``.
            Below the top, ``μ ~ Normal(μ_parent, σ_parent)``.
    """

    name: str
    column: str
    scale: Prior = _HALFNORMAL_05
    location: Prior = _NORMAL_OWN


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

    location: Prior = Prior("normal", (0.0, 1.0))
    scale: Prior = _HALFNORMAL_05


@dataclass(frozen=True)
class ResidualSd:
    """How the residual sd of ``cells_nms`` is pooled.

    Args:
        pooling: ``per_leaf`` (one σ per leaf group, ``σ_m ~ HalfNormal(σ_parent)``: DESIGN §5),
            ``shared`` (one σ for all cells) or the name of a main-side level (one σ per group of
            that level, e.g. ``family``).
        prior: Scale prior of the pooled σ (``shared`` or per level; default ``halfnormal(1)``).
    """

    pooling: str = PER_LEAF
    prior: Prior = Prior("halfnormal", (1.0,))


@dataclass(frozen=True)
class FitSpec:
    """What to fit: the hierarchy, its hyperpriors and the likelihood of the cells.

    Args:
        main: The side carrying the level (family → model); its leaf holds the residual sd.
        additive: Optional side added to the main leaf's mean (region class → region).
        global_level: Optional learned global mean above the main side's top level.
        likelihood: ``cells_nms`` (columns n, mean, S; optionally w) or ``cells_se`` (columns
            mean, se).
        n_col / mean_col / s_col / se_col: column names of the sufficient statistics.
        w_col: Optional column of ``cells_nms`` cells: the sum W of the rows' weights, when rows
            are averages (a row of weight w_i is a residual of variance σ²/w_i; ``mean`` is then
            the weighted mean and ``S`` = Σ w_i (y_i − mean)²). The cell's log-likelihood is
            ``−n ln σ − [S + W (mean − μ)²]/(2σ²)`` (+ the constant ½ Σ ln w_i, left out): W is
            the precision, n (the row count) the normaliser. Without the column W = n.
        student_t_families: Top-level (family) ids whose models get a Student-t likelihood over
            raw residual rows (``fit_hierarchical(rows=...)``) instead of the Gaussian cells; see
            ``student_t.py`` and docs/fit.md "Heavy tails". Empty: the exact Gaussian fit.
        nu_prior: ``(alpha, beta)`` of the Gamma prior on each t-family's ν (Juárez & Steel
            2010: Gamma(2, 0.1), mean 20, mode 10).
        row_col: Column of the rows frame holding the residual.
        cell_interaction: Prior of σ_cell, the sd of a model × region interaction
            ``γ_mr ~ Normal(0, σ_cell)`` (``cells_nms`` with an additive side; None: no
            interaction, the methodology's additive model). γ is integrated out exactly: a cell
            mean's variance becomes ``σ_m²/W + σ_cell²`` (docs/fit.md, "The cell interaction").
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
    w_col: str = "w"
    mean_col: str = "mean"
    s_col: str = "S"
    se_col: str = "se"
    name: str = field(default="tier_calibration")
    student_t_families: tuple[str, ...] = ()
    nu_prior: tuple[float, float] = (2.0, 0.1)
    row_col: str = "residual"
    resolution: float = 0.0
    residual_sd: ResidualSd = ResidualSd()
    cell_interaction: Prior | None = None

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
        if side is self.main and self.likelihood == "cells_nms" and self.residual_sd.pooling == PER_LEAF:
            return True
        top = self.top_location(side)
        return k == 0 and top is not None and top.own_scale

    def top_location(self, side: Side) -> Prior | None:
        """The location prior of a side's top level, or None when a global level pools it."""
        if side is self.main and self.global_level is not None:
            return None
        return side.levels[0].location

    @property
    def location_shift(self) -> float:
        """The main side's prior mean (global or top level): cells are centred on it for the fit."""
        prior = self.global_level.location if self.global_level else self.main.levels[0].location
        return prior.mean

    def residual_level(self) -> Level | None:
        """The main-side level whose groups share a residual sd (None: per leaf or shared)."""
        pooling = self.residual_sd.pooling
        return next((lv for lv in self.main.levels if lv.name == pooling), None)

    def with_global_level(self, global_level: GlobalLevel | None = None) -> FitSpec:
        """A copy with a learned global mean (defaults: μ ~ Normal(0, 1), τ ~ HalfNormal(0.5))."""
        return replace(self, global_level=global_level or GlobalLevel())


CELL_INTERACTION_PRIOR = Prior("halfnormal", (0.5,))  # σ_cell's default prior (as the top levels' scales)


def default_spec(global_level: bool = False, cell_interaction: bool = False) -> FitSpec:
    """DESIGN §5: family → model (verbatim) plus sum-to-zero region class → region deviations;
    optionally a learned global level and a model × region interaction (σ_cell ~ HalfNormal(0.5))."""
    spec = FitSpec(
        main=Side((Level("family", "family_id"), Level("model", "model_id"))),
        additive=Side(
            (Level("region_class", "region_class_id"), Level("region", "region_id")),
            sum_to_zero=True,
        ),
        cell_interaction=CELL_INTERACTION_PRIOR if cell_interaction else None,
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
        global_level=GlobalLevel(location=Prior("flat"), scale=Prior("halfflat")),
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
        _validate_priors(spec, side)
    _validate_residual_sd(spec)
    if spec.student_t_families:
        _validate_student_t(spec)
    if not (np.isfinite(spec.resolution) and spec.resolution >= 0):
        raise FitError(f"fit spec: resolution must be a finite number >= 0, got {spec.resolution!r}")
    if spec.resolution > 0 and spec.likelihood != "cells_nms":
        raise FitError("fit spec: resolution applies to the cells_nms likelihood (cells with a known se already carry their error)")
    if spec.main.sum_to_zero:
        raise FitError("fit spec: sum_to_zero belongs on the additive side; the main side carries the level")
    if spec.cell_interaction is not None:
        _validate_interaction(spec)
    if spec.additive and spec.additive.sum_to_zero:
        if spec.additive.levels[0].location.family == "flat":
            raise FitError("fit spec: a sum-to-zero additive side needs a proper (normal) top prior")


def _validate_priors(spec: FitSpec, side: Side) -> None:
    for k, lv in enumerate(side.levels):
        if lv.scale.entry.kind != "scale":
            raise FitError(f"fit spec: level {lv.name!r}: scale prior {lv.scale} is not a scale prior")
        if lv.location.entry.kind != "location":
            raise FitError(f"fit spec: level {lv.name!r}: location prior {lv.location} is not a location prior")
        if k > 0 and (lv.scale != _HALFNORMAL_05 or lv.location != _NORMAL_OWN):
            raise FitError(f"fit spec: level {lv.name!r}: priors are set on a side's top level only (below it "
                           "σ ~ HalfNormal(σ_parent), μ ~ Normal(μ_parent, σ_parent))")
    if side is spec.additive and side.levels[0].location.mean != 0.0:
        raise FitError(f"fit spec: level {side.levels[0].name!r}: the additive side holds deviations, its "
                       "location mean must be 0 (put a non-zero mean on the main side or the global level)")
    if side is spec.main and spec.global_level is not None:
        g = spec.global_level
        if g.location.own_scale:
            raise FitError("fit spec: the global location has no own scale: use normal(mu, sigma), studentt or flat")
        if g.scale.entry.kind != "scale" or g.location.entry.kind != "location":
            raise FitError("fit spec: global level: scale needs a scale prior and location a location prior")


def _validate_residual_sd(spec: FitSpec) -> None:
    pooling = spec.residual_sd.pooling
    names = [lv.name for lv in spec.main.levels]
    if pooling not in (PER_LEAF, SHARED, *names):
        raise FitError(f"fit spec: residual_sd pooling {pooling!r} is not one of {[PER_LEAF, SHARED, *names]}")
    if spec.residual_sd.prior.entry.kind != "scale":
        raise FitError(f"fit spec: residual_sd prior {spec.residual_sd.prior} is not a scale prior")
    if pooling != PER_LEAF and spec.likelihood != "cells_nms":
        raise FitError("fit spec: residual_sd pooling applies to the cells_nms likelihood (cells_se carries its error)")


def _validate_interaction(spec: FitSpec) -> None:
    if spec.cell_interaction.entry.kind != "scale":
        raise FitError(f"fit spec: cell_interaction prior {spec.cell_interaction} is not a scale prior")
    if spec.cell_interaction.family == "halfflat":
        raise FitError("fit spec: cell_interaction needs a proper scale prior (σ_cell of a never-measured cell is "
                       "drawn from its posterior, which a flat prior leaves improper when few cells are measured)")
    if spec.additive is None or spec.likelihood != "cells_nms":
        raise FitError("fit spec: cell_interaction needs an additive side (the cells are leaf × additive leaf) and the "
                       "cells_nms likelihood")
    if spec.student_t_families:
        raise FitError("fit spec: cell_interaction and student_t_families cannot be combined (the t rows' "
                       "locations are sampled without the interaction)")


def _validate_student_t(spec: FitSpec) -> None:
    if spec.residual_sd.pooling != PER_LEAF or spec.location_shift != 0.0:
        raise FitError("fit spec: student_t_families needs residual_sd pooling per_leaf and location means of 0")
    if spec.likelihood != "cells_nms":
        raise FitError("fit spec: student_t_families needs the cells_nms likelihood (a residual sd per model)")
    if len(spec.main.levels) < 2:
        raise FitError("fit spec: student_t_families needs a main side of at least two levels (family -> model)")
    if len(spec.nu_prior) != 2 or min(spec.nu_prior) <= 0:
        raise FitError(f"fit spec: nu_prior must be (alpha > 0, beta > 0), got {spec.nu_prior}")
