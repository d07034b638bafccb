"""Validate what is sold for new things: leave whole groups out of the fit and score their rows.

The random test fold splits requests, so every tested model was also fitted; the product for a new
model (its family's prior), a new region (its class's) or a new family is never tested there. Here
the groups of one level (``models``, ``regions`` or ``families``; or ``cells``, the (model, region)
pairs: a model and a region that are fitted, never measured together, the pair ``priors`` flags
``extrapolated``) are split into ``folds`` folds by a hash of their id; each fold is fitted without its groups' cells, which stay in the catalogue with
no data, so their posterior draws are exactly the new-member predictive the fit would publish
(``source_level = 'family'``, ``'class'`` or ``'global'`` in ``priors``). Every row of the held-out
groups (all request folds: none was fitted) is then scored:

* **elpd**: per held-out cell, the exact log predictive density of its rows (``compare.py``),
  summed; its standard error over cells;
* **coverage_90 / mean_width**: coverage of the 90% predictive interval of a new residual, counted
  on the rows, and the interval's mean width (log scale).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from tierpool.errors import FitError
from tierpool.fit.api import fit_hierarchical
from tierpool.fit.compare import _coverage, _Draws, cells_from_rows
from tierpool.fit.sample import FitSettings
from tierpool.fit.spec import FitSpec

MODES = ("models", "regions", "families")
CELLS = "cells"  # hold out (model, region) pairs: the never-measured pair of fitted groups
_CELL_KEY = "_cell"
COLUMNS = ["hierarchy", "mode", "elpd", "elpd_se", "elpd_diff", "elpd_diff_se", "coverage_90", "mean_width",
           "n_rows", "n_cells", "n_groups", "folds", "max_r_hat", "divergences"]


def group_column(spec: FitSpec, mode: str) -> str:
    """The id column whose groups ``mode`` holds out."""
    if mode == "models":
        return spec.main.leaf.column
    if mode == "families":
        return spec.main.levels[0].column
    if mode == "regions" and spec.additive is not None:
        return spec.additive.leaf.column
    if mode == CELLS and spec.additive is not None:
        return _CELL_KEY
    raise FitError(f"hold-out mode {mode!r}: use one of {[*MODES, CELLS]} (regions and cells need an additive side)")


def _with_cell_key(frame: pd.DataFrame, spec: FitSpec) -> pd.DataFrame:
    """``frame`` with the pair id ``model|region`` (the ``cells`` mode's groups)."""
    key = frame[spec.main.leaf.column].astype(str) + "|" + frame[spec.additive.leaf.column].astype(str)
    return frame.assign(**{_CELL_KEY: key})


def fold_of(ids: pd.Series, folds: int) -> pd.Series:
    """Deterministic fold of each group id (md5, as request_folds splits requests)."""
    return ids.astype(str).map(lambda i: int(hashlib.md5(i.encode()).hexdigest()[:8], 16) % folds)


def score_holdout(name: str, spec: FitSpec, fit_cells: pd.DataFrame, rows: pd.DataFrame, settings: FitSettings,
                  mode: str, folds: int = 5, value: str = "residual") -> tuple[dict[str, Any], np.ndarray]:
    """Leave-``mode``-out scores of one hierarchy (see the module docstring), and the elpd of each
    held-out cell (fold by fold, cells sorted: the same order for every hierarchy).

    Args:
        name: The hierarchy's name (for the row).
        spec: The hierarchy.
        fit_cells: Fit-fold cells (id columns + n, mean, S) of every group.
        rows: Rows (id columns + ``value``) to score: a held-out group's rows of every fold.
        settings: Sampler settings of each fit.
        mode: ``models``, ``regions`` or ``families``.
        folds: How many folds the groups are split into (each is one fit).
    """
    column = group_column(spec, mode)
    if column == _CELL_KEY:
        fit_cells, rows = _with_cell_key(fit_cells, spec), _with_cell_key(rows, spec)
    ids = spec.id_columns()
    keys = [spec.main.leaf.column] + ([spec.additive.leaf.column] if spec.additive else [])
    catalogue = pd.concat([fit_cells[ids], rows[ids]], ignore_index=True).astype(str).drop_duplicates()
    groups = pd.Series(sorted(set(fit_cells[column].astype(str)) | set(rows[column].astype(str))))
    fold = dict(zip(groups, fold_of(groups, folds)))
    pointwise, covered, widths, n_rows, n_cells, r_hat, divergences = [], 0.0, 0.0, 0, 0, 1.0, 0
    for k in range(folds):
        held = {g for g, f in fold.items() if f == k}
        test = rows[rows[column].astype(str).isin(held)]
        train = fit_cells[~fit_cells[column].astype(str).isin(held)]
        if test.empty or train.empty:
            continue
        result = fit_hierarchical(train, spec, settings, catalogue=catalogue)
        draws = _Draws(result)
        cells = cells_from_rows(test.drop(columns=[_CELL_KEY], errors="ignore"), ids, value)
        ll = draws.log_density(cells, spec)
        pointwise.append(logsumexp(ll, axis=0) - math.log(draws.B))
        coverage, width, _ = _coverage(draws, cells, test, keys, value, settings.seed, spec)
        covered += coverage * len(test)
        widths += width * len(test)
        n_rows += len(test)
        n_cells += len(cells)
        r_hat = max(r_hat, float(result.gate.max_r_hat))
        divergences += int(result.gate.divergences)
    if not pointwise:
        raise FitError(f"hold-out {mode}: no fold has both held-out rows and cells left to fit")
    point = np.concatenate(pointwise)
    row = {"hierarchy": name, "mode": mode, "elpd": float(point.sum()), "elpd_se": _se(point),
           "coverage_90": covered / n_rows, "mean_width": widths / n_rows, "n_rows": n_rows, "n_cells": n_cells,
           "n_groups": len(groups), "folds": folds, "max_r_hat": r_hat, "divergences": divergences}
    return row, point


def _se(point: np.ndarray) -> float:
    return float(math.sqrt(len(point)) * point.std(ddof=1)) if len(point) > 1 else float("nan")


def compare_holdout(specs: dict[str, FitSpec], fit_cells: pd.DataFrame, rows: pd.DataFrame,
                    settings: FitSettings, modes: tuple[str, ...] = MODES, folds: int = 5) -> pd.DataFrame:
    """Every hierarchy by every hold-out mode: one row each (:data:`COLUMNS`), best elpd first per mode.

    ``elpd_diff`` is the elpd minus the mode's best, ``elpd_diff_se`` its standard error paired over
    the held-out cells (the hierarchies score the same cells), as ArviZ's ``compare`` does.
    """
    out = []
    for mode in modes:
        scored = [score_holdout(name, spec, fit_cells, rows, settings, mode, folds) for name, spec in specs.items()]
        best = max(scored, key=lambda sc: sc[0]["elpd"])[1]
        for row, point in scored:
            same = len(point) == len(best)  # always, unless a fold had nothing to fit for one hierarchy
            row["elpd_diff"] = row["elpd"] - float(best.sum())
            row["elpd_diff_se"] = _se(point - best) if same and row["elpd_diff"] != 0 else 0.0
            out.append(row)
    frame = pd.DataFrame(out)[COLUMNS]
    return frame.sort_values(["mode", "elpd"], ascending=[True, False], ignore_index=True)
