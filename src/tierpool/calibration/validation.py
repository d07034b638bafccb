"""Validate what is sold for new things, in every build: leave-models/regions/families-out scores.

The random test fold splits requests, so every tested model was also fitted. What a new model
(or region, or family) gets is its family's (class's, the global) prior, and that is scored here:
for the fit in force per indicator (``latest_fit``), the groups of each mode are split into folds,
each fold is refitted without its groups (:func:`tierpool.fit.holdout.score_holdout`, the fit's own
hierarchy and window, fit-fold cells) and every in-window row of the held-out groups is scored
against the new-member predictive: coverage of its 90% interval, mean width, exact log predictive
density. ``coverage_report`` shows these beside the random and out-of-time folds.

Settings (``vars.validation``)::

    validation:
      holdout_modes: [models, regions, families]   # [] (default): no hold-out fits
      folds: 5
      chains: 2
      tune: 1000
      draws: 1000

The scores of a fit are computed once: a build whose fit in force and settings are unchanged
keeps the previous rows (the fits take ~10 s per fold and indicator on the demo).

The rows of one held-out group share its bias, so they are not independent draws: a mode's
coverage is about as uncertain as that of ``n_effective`` independent rows, Kish's effective
number of groups ``(Σ n_g)² / Σ n_g²`` (one model with half of the rows makes it about 4,
whatever the row count). ``coverage_report`` tests the coverage at that sample size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tierpool.errors import ConfigError

MODE_NAMES = {"models": "leave_models_out", "regions": "leave_regions_out", "families": "leave_families_out"}
# What a held-out group is scored against: the prior a new member gets (priors.source_level).
SOURCE_LEVEL = {"models": "family", "regions": "class", "families": "global"}
COLUMNS = ["fit_id", "indicator", "mode", "source_level", "n_rows", "n_effective", "n_covered", "coverage_90",
           "mean_width_log", "elpd", "elpd_se", "n_cells", "n_groups", "folds", "max_r_hat",
           "divergences", "settings", "computed_at"]
ROW_KEYS = ["family_id", "model_id", "region_class_id", "region_id"]


class ValidationSettings(BaseModel):
    """``vars.validation``: which hold-out modes every build scores, and the fits' sampler settings."""

    model_config = ConfigDict(extra="forbid")

    holdout_modes: list[Literal["models", "regions", "families"]] = Field(default_factory=list)
    folds: int = Field(5, ge=2, le=50)
    chains: int = Field(2, ge=1)
    tune: int = Field(1000, ge=50)
    draws: int = Field(1000, ge=50)
    seed: int = 20261206

    def key(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True)


def read_validation(vars_: dict[str, Any]) -> ValidationSettings:
    """``vars.validation`` checked by its schema (an unknown key names itself)."""
    try:
        return ValidationSettings.model_validate(vars_.get("validation") or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"vars.validation: {problems} (keys: holdout_modes, folds, chains, tune, draws, seed)") from exc


def holdout_scores(
    rows: pd.DataFrame, latest_fit: pd.DataFrame, previous: pd.DataFrame | None,
    settings: ValidationSettings, spec: Any, fit_settings: Any, log: Callable[[str], None] = lambda _: None,
) -> pd.DataFrame:
    """One row per fit in force, indicator and hold-out mode (:data:`COLUMNS`).

    Args:
        rows: ``holdout_rows``: residual rows (ids, indicator, measured_at, residual, weight)
            with their request's ``fold``; all of them, or a uniform sample of requests at scale.
        latest_fit: ``latest_fit``: the fit in force per indicator and its window_end.
        previous: This table's previous rows (reused when fit and settings are unchanged).
        settings: ``vars.validation``.
        spec: The hierarchy the fits use (the calibration's, ``CalibrationSettings.spec()``).
        fit_settings: Sampler settings (tune/draws/chains/seed are replaced by ``settings``'s).
        log: Progress lines.
    """
    from dataclasses import replace

    from tierpool.fit.compare import cells_from_rows
    from tierpool.fit.holdout import group_column, score_holdout

    if not settings.holdout_modes or latest_fit is None or latest_fit.empty:
        return pd.DataFrame(columns=COLUMNS)
    sampler = replace(fit_settings, tune=settings.tune, draws=settings.draws, chains=settings.chains,
                      seed=settings.seed, progress=False)
    key = hashlib.sha256(f"{settings.key()}|{spec!r}".encode()).hexdigest()[:16]
    out = []
    for fit in latest_fit.sort_values("indicator").itertuples(index=False):
        kept = _kept(previous, fit.fit_id, fit.indicator, key)
        if kept is not None and set(kept["mode"]) == {MODE_NAMES[m] for m in settings.holdout_modes}:
            out.append(kept)
            continue
        mine = rows[(rows["indicator"] == fit.indicator)
                    & (pd.to_datetime(rows["measured_at"]) < pd.Timestamp(fit.window_end))]
        ids = [c for c in spec.id_columns() if c in ROW_KEYS]
        weighted = "weight" in mine.columns and not (mine["weight"] == 1.0).all()  # rows that are averages
        scored = mine[ids + ["fold", "residual"] + (["weight"] if weighted else [])].astype({c: str for c in ids})
        fit_cells = cells_from_rows(scored[scored["fold"] == "fit"].drop(columns="fold"), ids)
        every = scored.drop(columns="fold")
        for mode in settings.holdout_modes:
            log(f"{fit.indicator}: leave {mode} out of fit {fit.fit_id}, {settings.folds} folds")
            row, _ = score_holdout("calibration", spec, fit_cells, every, sampler, mode, settings.folds)
            sizes = every.groupby(group_column(spec, mode)).size().to_numpy(float)
            out.append(pd.DataFrame([{
                "fit_id": fit.fit_id, "indicator": fit.indicator, "mode": MODE_NAMES[mode],
                "source_level": SOURCE_LEVEL[mode], "n_rows": row["n_rows"],
                "n_effective": float(sizes.sum() ** 2 / (sizes**2).sum()),
                "n_covered": int(round(row["coverage_90"] * row["n_rows"])), "coverage_90": row["coverage_90"],
                "mean_width_log": row["mean_width"], "elpd": row["elpd"], "elpd_se": row["elpd_se"],
                "n_cells": row["n_cells"], "n_groups": row["n_groups"], "folds": settings.folds,
                "max_r_hat": row["max_r_hat"], "divergences": row["divergences"], "settings": key,
                "computed_at": datetime.now(timezone.utc).replace(tzinfo=None),
            }]))
    return pd.concat(out, ignore_index=True)[COLUMNS] if out else pd.DataFrame(columns=COLUMNS)


def _kept(previous: pd.DataFrame | None, fit_id: str, indicator: str, key: str) -> pd.DataFrame | None:
    """The previous rows of this fit and indicator, when scored with the same settings."""
    if previous is None or previous.empty or not set(COLUMNS) <= set(previous.columns):
        return None  # nothing kept, or rows of an older schema: score again
    same = previous[(previous["fit_id"].astype(str) == str(fit_id)) & (previous["indicator"] == indicator)
                    & (previous["settings"] == key)]
    return same[COLUMNS].reset_index(drop=True) if len(same) else None
