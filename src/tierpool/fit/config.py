"""A hierarchy from configuration: ``vars.fit.hierarchy`` in tierpool_project.yml, or a dict in Python.

One contract for both (:func:`spec_from_config`), checked by a pydantic schema: an unknown key, a
wrong type or a prior string that does not parse is a :class:`FitError` naming the key and the
allowed values. :data:`DEFAULT_HIERARCHY` is DESIGN §5 and builds exactly :func:`default_spec`::

    hierarchy:
      likelihood: cells_nms
      levels:                       # main side, top to leaf
        - {name: family, column: family_id, scale: halfnormal(0.5), location: normal(0, scale)}
        - {name: model, column: model_id}
      additive:                     # optional side added to the leaf's mean
        sum_to_zero: true
        levels: [{name: region_class, column: region_class_id}, {name: region, column: region_id}]
      global: {location: normal(0, 1), scale: halfnormal(0.5)}   # optional learned global level
      residual_sd: {pooling: per_leaf}                          # or shared, or a level's name
      interaction: {prior: halfnormal(0.5)}    # optional model × region term γ ~ Normal(0, σ_cell)
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tierpool.errors import FitError
from tierpool.fit.priors import parse_prior
from tierpool.fit.spec import FitSpec, GlobalLevel, Level, Likelihood, ResidualSd, Side, validate_spec

DEFAULT_HIERARCHY: dict[str, Any] = {
    "likelihood": "cells_nms",
    "levels": [
        {"name": "family", "column": "family_id", "scale": "halfnormal(0.5)", "location": "normal(0, scale)"},
        {"name": "model", "column": "model_id"},
    ],
    "additive": {
        "sum_to_zero": True,
        "levels": [
            {"name": "region_class", "column": "region_class_id", "scale": "halfnormal(0.5)",
             "location": "normal(0, scale)"},
            {"name": "region", "column": "region_id"},
        ],
    },
    "residual_sd": {"pooling": "per_leaf"},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LevelConfig(_Strict):
    name: str
    column: str
    scale: str | None = None  # top level only
    location: str | None = None  # top level only


class SideConfig(_Strict):
    levels: list[LevelConfig]
    sum_to_zero: bool = False


class GlobalConfig(_Strict):
    location: str = "normal(0, 1)"
    scale: str = "halfnormal(0.5)"


class ResidualConfig(_Strict):
    pooling: str = "per_leaf"
    prior: str | None = None


class InteractionConfig(_Strict):
    prior: str = "halfnormal(0.5)"


class HierarchyConfig(_Strict):
    likelihood: Likelihood = "cells_nms"
    levels: list[LevelConfig]
    additive: SideConfig | None = None
    global_: GlobalConfig | None = Field(default=None, alias="global")
    residual_sd: ResidualConfig = ResidualConfig()
    interaction: InteractionConfig | None = None
    name: str = "tier_calibration"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


_ALLOWED = {
    "root": "likelihood, levels, additive, global, residual_sd, interaction, name",
    "levels": "name, column, scale, location",
    "additive": "levels, sum_to_zero",
    "global": "location, scale",
    "residual_sd": "pooling, prior",
    "interaction": "prior",
}


def _schema_error(exc: ValidationError, where: str) -> FitError:
    problems = []
    for err in exc.errors():
        path = [p for p in err["loc"] if p != "__root__"]
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        parent = next((str(p) for p in reversed(path[:-1]) if str(p) in _ALLOWED), "root")
        if err["type"] == "extra_forbidden":
            allowed = _ALLOWED.get(parent, "").split(", ")
            close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"{where}.{key}: unknown key; {hint}allowed here: {', '.join(allowed)}")
        elif err["type"] == "missing":
            problems.append(f"{where}.{key}: required")
        elif err["type"] == "literal_error":
            problems.append(f"{where}.{key}: {err['input']!r} is not allowed; use cells_nms or cells_se")
        else:
            problems.append(f"{where}.{key}: {err['msg']} (got {err.get('input')!r})")
    return FitError("; ".join(problems))


def _level(cfg: LevelConfig, k: int, where: str) -> Level:
    here = f"{where}[{k}]"
    if k > 0 and (cfg.scale is not None or cfg.location is not None):
        raise FitError(f"{here} ({cfg.name}): scale and location priors are set on the top level only "
                       "(below it σ ~ HalfNormal(σ_parent), μ ~ Normal(μ_parent, σ_parent))")
    extra: dict[str, Any] = {}
    if cfg.scale is not None:
        extra["scale"] = parse_prior(cfg.scale, "scale", f"{here}.scale")
    if cfg.location is not None:
        extra["location"] = parse_prior(cfg.location, "location", f"{here}.location")
    return Level(cfg.name, cfg.column, **extra)


def spec_from_config(mapping: Mapping[str, Any], where: str = "hierarchy") -> FitSpec:
    """Turn a hierarchy mapping (yml or Python) into a validated :class:`FitSpec`.

    Args:
        mapping: See the module docstring; :data:`DEFAULT_HIERARCHY` is DESIGN §5.
        where: Name of the mapping in error messages (``vars.fit.hierarchy``).

    Raises:
        FitError: naming the key at fault and the allowed values.
    """
    if not isinstance(mapping, Mapping):
        raise FitError(f"{where}: expected a mapping (likelihood, levels, ...), got {type(mapping).__name__}")
    try:
        cfg = HierarchyConfig.model_validate(dict(mapping))
    except ValidationError as exc:
        raise _schema_error(exc, where) from None
    if not cfg.levels:
        raise FitError(f"{where}.levels: at least one level is needed")
    main = Side(tuple(_level(lv, k, f"{where}.levels") for k, lv in enumerate(cfg.levels)))
    additive = None
    if cfg.additive is not None:
        if not cfg.additive.levels:
            raise FitError(f"{where}.additive.levels: at least one level is needed")
        additive = Side(tuple(_level(lv, k, f"{where}.additive.levels") for k, lv in enumerate(cfg.additive.levels)),
                        sum_to_zero=cfg.additive.sum_to_zero)
    global_level = None
    if cfg.global_ is not None:
        global_level = GlobalLevel(
            location=parse_prior(cfg.global_.location, "location", f"{where}.global.location"),
            scale=parse_prior(cfg.global_.scale, "scale", f"{where}.global.scale"),
        )
    residual = ResidualSd(cfg.residual_sd.pooling)
    if cfg.residual_sd.prior is not None:
        residual = ResidualSd(cfg.residual_sd.pooling,
                              parse_prior(cfg.residual_sd.prior, "scale", f"{where}.residual_sd.prior"))
    interaction = None
    if cfg.interaction is not None:
        interaction = parse_prior(cfg.interaction.prior, "scale", f"{where}.interaction.prior")
    spec = FitSpec(main=main, additive=additive, global_level=global_level, likelihood=cfg.likelihood,
                   residual_sd=residual, name=cfg.name, cell_interaction=interaction)
    try:
        validate_spec(spec)
    except FitError as exc:
        raise FitError(f"{where}: {str(exc).removeprefix('fit spec: ')}") from None
    return spec
