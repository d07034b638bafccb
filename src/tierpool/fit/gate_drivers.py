"""Which groups and cells drive a gate rejection (issue 10 item 6).

The gate's reasons name the single worst parameter, which may be a bystander: a chain stuck at a
degenerate model's σ ≈ 0 also ruins the r_hat of every region and model that shares its cells.
:func:`describe_drivers` names, per level, the groups with the worst diagnostics, where divergent
transitions concentrate (the standardised shift of each log scale between divergent and all
draws: the numeric form of a pair plot), and the data that make a posterior ill-posed (series of
constant residuals). Every model it names comes with its cells (region, n, S).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

TOP = 3


def _groups(values: Mapping[str, Any], post: Any, worst: str) -> list[tuple[float, str, str, str]]:
    """(diagnostic, level, group id, variable) per parameter element, worst first."""
    out = []
    for var, diag in values.items():
        vals = np.atleast_1d(np.asarray(diag, dtype=float)).ravel()
        if var not in post or not vals.size:
            continue
        arr = post[var]
        dims = [d for d in arr.dims if d not in ("chain", "draw")]
        level = str(var).split("_", 1)[1] if "_" in str(var) else str(var)
        ids = [str(v) for v in arr.coords[dims[0]].values] if len(dims) == 1 and dims[0] in arr.coords else None
        for i, v in enumerate(vals):
            v = (np.inf if worst == "max" else -np.inf) if np.isnan(v) else float(v)
            out.append((v, level, ids[i] if ids and i < len(ids) else str(var), str(var)))
    out.sort(key=lambda t: -t[0] if worst == "max" else t[0])
    return out


def _worst_per_group(rows: list[tuple[float, str, str, str]], failing: Any) -> list[tuple[float, str, str]]:
    seen, picked = set(), []
    for v, level, gid, _var in rows:
        if not failing(v) or (level, gid) in seen:
            continue
        seen.add((level, gid))
        picked.append((v, level, gid))
        if len(picked) == TOP:
            break
    return picked


def divergence_shifts(idata: Any) -> list[tuple[float, str, str]]:
    """Standardised shift of each sampled log scale in divergent draws, largest first."""
    if "sample_stats" not in idata.groups() or "diverging" not in idata.sample_stats:
        return []
    div = np.asarray(idata.sample_stats["diverging"].values, dtype=bool).ravel()
    if not div.any():
        return []
    out = []
    for var in idata.posterior.data_vars:
        if not str(var).startswith("sigma_"):
            continue
        arr = idata.posterior[var]
        x = np.log(np.maximum(np.asarray(arr.values, dtype=float), 1e-300))
        x = x.reshape(div.size, -1)
        dims = [d for d in arr.dims if d not in ("chain", "draw")]
        ids = [str(v) for v in arr.coords[dims[0]].values] if dims else [str(var)]
        sd = x.std(axis=0)
        shift = np.abs(x[div].mean(axis=0) - x.mean(axis=0)) / np.where(sd > 0, sd, np.inf)
        level = str(var).split("_", 1)[1]
        out += [(float(s), level, ids[j] if j < len(ids) else str(var)) for j, s in enumerate(shift)]
    out.sort(key=lambda t: -t[0])
    return out[:TOP]


def constant_series(cells: Any, leaf: str, n_col: str = "n", s_col: str = "S", mean_col: str = "mean") -> list[str]:
    """Leaves whose residuals are all equal (S ≈ 0 with more rows than cells)."""
    if cells is None or n_col not in cells or s_col not in cells:
        return []
    per = cells.assign(_abs=cells[mean_col].abs()).groupby(leaf).agg(
        S=(s_col, "sum"), n=(n_col, "sum"), c=(n_col, "size"), scale=("_abs", "max"))
    flat = per[(per["S"] <= per["n"] * (1e-9 * np.maximum(per["scale"], 1.0)) ** 2) & (per["n"] > per["c"])]
    return [str(g) for g in flat.index]


def _cells_of(st: Any, model: str) -> str:
    spec = st.spec
    cells = st.cells[st.cells[spec.main.leaf.column] == model]
    if cells.empty:
        return ""
    add = spec.additive.leaf.column if spec.additive else None
    parts = []
    for row in cells.head(TOP).itertuples(index=False):
        rec = row._asdict()
        where = f"@{rec[add]}" if add else ""
        stat = f"n={int(rec[spec.n_col])} S={float(rec[spec.s_col]):.3g}" if spec.likelihood == "cells_nms" else ""
        parts.append(f"{model}{where} {stat}".strip())
    more = f" +{len(cells) - TOP} more" if len(cells) > TOP else ""
    return "; cells " + ", ".join(parts) + more


def describe_drivers(idata: Any, st: Any, diagnostics: Mapping[str, Mapping[str, Any]], thresholds: Any) -> str:
    """One line naming the groups, models and cells behind a failed gate ('' if nothing stands out)."""
    post = idata.posterior
    leaf = st.spec.main.leaf.name
    named: dict[tuple[str, str], list[str]] = {}
    for v, level, gid in _worst_per_group(_groups(diagnostics.get("r_hat", {}), post, "max"),
                                          lambda v: not v <= thresholds.max_r_hat):
        named.setdefault((level, gid), []).append(f"r_hat {v:.3g}")
    for v, level, gid in _worst_per_group(_groups(diagnostics.get("ess_bulk", {}), post, "min"),
                                          lambda v: not v >= thresholds.min_ess_bulk):
        named.setdefault((level, gid), []).append(f"ess_bulk {v:.0f}")
    for s, level, gid in divergence_shifts(idata):
        if s >= 0.5:
            named.setdefault((level, gid), []).append(f"divergences shift its log sd by {s:.2g} sd")
    flat = constant_series(st.cells, st.spec.main.leaf.column, st.spec.n_col, st.spec.s_col, st.spec.mean_col) \
        if st.spec.likelihood == "cells_nms" else []
    for gid in flat:
        named.setdefault((leaf, gid), []).append("constant residuals (S = 0)")
    parts = []
    for (level, gid), what in named.items():
        cells = _cells_of(st, gid) if level == leaf else ""
        parts.append(f"{level} {gid} [{', '.join(what)}{cells}]")
    return ("driven by: " + "; ".join(parts)) if parts else ""
