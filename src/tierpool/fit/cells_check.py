"""A cells frame checked against a :class:`~tierpool.fit.spec.FitSpec` before anything is fit.

Every problem is a :class:`~tierpool.errors.FitError` naming the column or group at fault and
what to do about it: missing columns or ids, non-numeric or non-finite statistics, a leaf mapped
to two parents, duplicate cells, and a constant series whose residual sd would have an improper
posterior.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tierpool.errors import FitError
from tierpool.fit.spec import PER_LEAF, FitSpec, validate_spec


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
    weighted = spec.likelihood == "cells_nms" and spec.w_col in cells.columns
    out = cells[needed + ([spec.w_col] if weighted else [])].copy()
    for col in spec.id_columns():
        if out[col].isna().any():
            raise FitError(f"cells column {col!r} has missing ids ({int(out[col].isna().sum())} rows)")
        out[col] = out[col].astype(str)
    for col in spec.stat_columns() + ([spec.w_col] if weighted else []):
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
        if spec.w_col in out.columns and (out[spec.w_col] <= 0).any():
            raise FitError(f"cells column {spec.w_col!r} (sum of the rows' weights) must be positive")
        if spec.resolution == 0 and spec.residual_sd.pooling == PER_LEAF:  # a pooled σ sees other series
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
    weight = spec.w_col if spec.w_col in out.columns else spec.n_col  # S sums weighted squares
    frame = out.assign(_abs=out[spec.mean_col].abs(), _w=out[weight])
    per = frame.groupby(leaf).agg(S=(spec.s_col, "sum"), n=(spec.n_col, "sum"), cells=(spec.n_col, "size"),
                                  scale=("_abs", "max"), w=("_w", "sum"))
    tiny = per["S"] <= per["w"] * (1e-9 * np.maximum(per["scale"], 1.0)) ** 2
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
