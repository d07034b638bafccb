"""Fit settings for the calibration warehouse: project vars (``vars.fit``) plus CLI options.

Precedence: ``tierpool build --fit-tune/--fit-draws/--fit-chains/--fit-id/--refit`` over
``tierpool_project.yml`` ``vars: fit:`` over the DESIGN §5 defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from tierpool.calibration.quarters import Quarter, last_complete_quarter, parse_as_of
from tierpool.errors import ConfigError

_SAMPLER_KEYS = ("tune", "draws", "chains", "target_accept", "seed", "sampler")
_OTHER_KEYS = ("gate", "methodology_base_version", "as_of", "quarter", "global_level", "student_t_families", "resolution",
               "hierarchy", "target_accept_ladder", "cell_interaction")
# Measurement resolution δ of a residual (log scale): each observed residual carries a rounding
# error of variance δ²/12 (docs/fit.md, "Constant series and the resolution floor"). 1e-3 is the
# rounding of a measurement recorded to 4 significant digits, at worst.
DEFAULT_RESOLUTION = 1e-3
# The families' means are pooled around a learned global mean by default: it wins leave-models-out
# and leave-families-out clearly on the real case and ties on synthetic data without a common bias
# (docs/fit.md, "The default hierarchy"); `global_level: false` is the methodology's verbatim model.
DEFAULT_GLOBAL_LEVEL = True
# The model × region interaction γ_mr ~ Normal(0, σ_cell), σ_cell ~ HalfNormal(0.5) (docs/fit.md, "The default
# hierarchy"): off by default. It wins clearly on the real case's never-measured pairs but loses a little on
# additive data, and its σ_cell mixes too slowly there for the gate at reduced draws; `true` turns it on.
DEFAULT_CELL_INTERACTION = False


@dataclass(frozen=True)
class CalibrationSettings:
    """Everything the fit node needs to decide and run a fit."""

    sampler: dict[str, Any]
    gate: dict[str, float]
    base_version: str = "1.4.2"
    as_of: date | None = None
    quarter: Quarter | None = None
    fit_id: str | None = None
    refit: bool = False
    global_level: bool = True  # the learned mean above the families (docs/fit.md, "The default hierarchy")
    cell_interaction: bool = DEFAULT_CELL_INTERACTION  # the model × region term (vars.fit.cell_interaction)
    student_t_families: tuple[str, ...] = ()
    resolution: float = DEFAULT_RESOLUTION
    hierarchy: dict[str, Any] | None = None  # vars.fit.hierarchy (None: DESIGN §5, default_spec)
    # vars.fit.target_accept_ladder (None: ladder.DEFAULT_TARGET_ACCEPT_LADDER; docs/fit.md, "The target_accept ladder")
    target_accept_ladder: tuple[float, ...] | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def fit_quarter(self) -> Quarter:
        """The quarter being fitted: from --fit-id, ``fit.quarter``, or the last complete one."""
        if self.fit_id:
            return Quarter.parse(self.fit_id.split("-")[0])
        return self.quarter or last_complete_quarter(self.as_of)

    def fingerprint_settings(self) -> dict[str, Any]:
        """Settings that change the fit's result (progress bars and gate thresholds do not)."""
        out = {**self.sampler, "global_level": self.global_level, "resolution": self.resolution}
        if self.cell_interaction != DEFAULT_CELL_INTERACTION:  # only when not the default: fingerprints kept
            out["cell_interaction"] = self.cell_interaction
        if self.student_t_families:  # only when set, so existing fingerprints are unchanged
            out["student_t_families"] = list(self.student_t_families)
        if self.hierarchy is not None:
            out["hierarchy"] = self.hierarchy
        if self.target_accept_ladder is not None:  # only when set (the default is in the code fingerprint)
            out["target_accept_ladder"] = list(self.target_accept_ladder)
        return out

    def ladder(self) -> tuple[float, ...]:
        """The target_accept values a fit failing only on a few divergences is retried at (ladder.py)."""
        from tierpool.calibration.ladder import DEFAULT_TARGET_ACCEPT_LADDER

        return DEFAULT_TARGET_ACCEPT_LADDER if self.target_accept_ladder is None else self.target_accept_ladder

    def spec(self) -> Any:
        """The FitSpec of the calibration fit: ``vars.fit.hierarchy`` or DESIGN §5."""
        from dataclasses import replace

        from tierpool.fit import default_spec, spec_from_config

        spec = spec_from_config(self.hierarchy, "vars.fit.hierarchy") if self.hierarchy else \
            default_spec(global_level=self.global_level, cell_interaction=self.cell_interaction)
        spec = replace(spec, resolution=self.resolution)
        if self.student_t_families:
            spec = replace(spec, student_t_families=self.student_t_families)
        return spec


def read_settings(vars_: dict[str, Any], options: dict[str, Any], progress: bool = True) -> CalibrationSettings:
    """Merge ``vars.fit`` with CLI options into :class:`CalibrationSettings`."""
    fit = dict(vars_.get("fit") or {})
    unknown = set(fit) - {*_SAMPLER_KEYS, *_OTHER_KEYS}
    if unknown:
        raise ConfigError(f"tierpool_project.yml vars.fit: unknown key(s) {sorted(unknown)}; valid: {sorted({*_SAMPLER_KEYS, *_OTHER_KEYS})}")
    resolution = fit.get("resolution", DEFAULT_RESOLUTION)
    if isinstance(resolution, bool) or not isinstance(resolution, (int, float)) or not 0 <= resolution < 1:
        raise ConfigError(f"tierpool_project.yml vars.fit.resolution must be a number in [0, 1) (log-scale measurement resolution), got {resolution!r}")
    t_fams = fit.get("student_t_families") or []
    if isinstance(t_fams, str) or not all(isinstance(f, str) for f in t_fams):
        raise ConfigError(f"tierpool_project.yml vars.fit.student_t_families must be a list of family ids, got {t_fams!r}")
    sampler = {"tune": 2000, "draws": 4000, "chains": 4, "target_accept": 0.97, "seed": 20261121, "sampler": "nutpie"}
    sampler.update({k: fit[k] for k in _SAMPLER_KEYS if k in fit})
    for key in ("tune", "draws", "chains"):
        if options.get(f"fit_{key}") is not None:
            sampler[key] = int(options[f"fit_{key}"])
    gate = {"max_r_hat": 1.01, "min_ess_bulk": 400.0, "max_divergences": 0}
    gate.update(fit.get("gate") or {})
    quarter = Quarter.parse(str(fit["quarter"])) if fit.get("quarter") else None
    hierarchy = _hierarchy(fit)
    ladder = None
    if "target_accept_ladder" in fit:
        from tierpool.calibration.ladder import check_ladder

        ladder = check_ladder(fit["target_accept_ladder"])
    return CalibrationSettings(
        sampler=sampler,
        gate=gate,
        base_version=str(fit.get("methodology_base_version", "1.4.2")),
        as_of=parse_as_of(fit.get("as_of")),
        quarter=quarter,
        fit_id=options.get("fit_id") or None,
        refit=bool(options.get("refit")),
        global_level=bool(fit.get("global_level", DEFAULT_GLOBAL_LEVEL)),
        cell_interaction=_cell_interaction(fit),
        student_t_families=tuple(sorted(t_fams)),
        resolution=float(resolution),
        hierarchy=hierarchy,
        target_accept_ladder=ladder,
        progress=progress and options.get("progress", True) is not False,
    )


def _cell_interaction(fit: dict[str, Any]) -> bool:
    """``vars.fit.cell_interaction`` (a boolean; the prior is set through ``hierarchy.interaction``)."""
    value = fit.get("cell_interaction", DEFAULT_CELL_INTERACTION)
    if not isinstance(value, bool):
        raise ConfigError(f"tierpool_project.yml vars.fit.cell_interaction must be true or false, got {value!r} "
                          "(its prior is set with vars.fit.hierarchy: interaction: {prior: ...})")
    if "cell_interaction" in fit and "hierarchy" in fit:
        raise ConfigError("tierpool_project.yml vars.fit: set either cell_interaction or hierarchy (its `interaction:` "
                          "key), not both")
    return value


def _hierarchy(fit: dict[str, Any]) -> dict[str, Any] | None:
    """``vars.fit.hierarchy``, checked now (a bad mapping fails before any SQL runs)."""
    from tierpool.calibration.hierarchy import check_calibration_hierarchy
    from tierpool.errors import FitError

    hierarchy = fit.get("hierarchy")
    if hierarchy is None:
        return None
    if "global_level" in fit:
        raise ConfigError("tierpool_project.yml vars.fit: set either global_level or hierarchy (its `global:` key), "
                          "not both")
    try:
        check_calibration_hierarchy(hierarchy)
    except FitError as exc:
        raise ConfigError(f"tierpool_project.yml {exc}") from None
    return dict(hierarchy)
