"""The publication gate (DESIGN §6): max r_hat ≤ 1.01, min bulk ESS ≥ 400, no divergences.

Judged over every parameter in the posterior group: the sampled scales and the locations drawn
from their exact conditional. Note the gate is meaningless for short runs: with ~300 parameters
even perfect draws give max r_hat > 1.01 at 2 × 300 draws; use ≥ 2 chains × 1,000 draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tierpool.fit.diagnostics import summarise


@dataclass(frozen=True)
class GateThresholds:
    """Limits of the gate (overridable per call)."""

    max_r_hat: float = 1.01
    min_ess_bulk: float = 400.0
    max_divergences: int = 0


@dataclass
class GateVerdict:
    """Whether a fit may be published, and why not."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    max_r_hat: float = float("nan")
    min_ess_bulk: float = float("nan")
    divergences: int = 0
    worst_r_hat: str = ""
    worst_ess_bulk: str = ""
    drivers: str = ""  # groups, models and cells behind a failure (gate_drivers.describe_drivers)


def _label(ds: Any, var: str, flat_index: int) -> str:
    arr = ds[var]
    if arr.ndim == 0:
        return var
    pos = np.unravel_index(flat_index, arr.shape)
    labels = [str(arr.coords[d].values[i]) if d in arr.coords else str(i) for d, i in zip(arr.dims, pos)]
    return f"{var}[{', '.join(labels)}]"


def _extreme(values: Mapping[str, Any], ds: Any, pick: str) -> tuple[float, str]:
    """The largest/smallest diagnostic over all variables; ``ds`` labels it (dims without chain/draw)."""
    best_val, best_name = (-np.inf if pick == "max" else np.inf), ""
    for var, diag in values.items():
        vals = np.atleast_1d(np.asarray(diag, dtype=float))
        if not vals.size:
            continue
        # a NaN diagnostic (e.g. a constant parameter) must fail the gate, not vanish
        vals = np.where(np.isnan(vals), np.inf if pick == "max" else -np.inf, vals)
        i = int(np.argmax(vals) if pick == "max" else np.argmin(vals))
        v = float(vals.ravel()[i])
        if (pick == "max" and v > best_val) or (pick == "min" and v < best_val):
            best_val, best_name = v, _label(ds, str(var), i)
    return best_val, best_name


def evaluate_gate(
    idata: Any,
    thresholds: GateThresholds | None = None,
    diagnostics: Mapping[str, Mapping[str, Any]] | None = None,
) -> GateVerdict:
    """Judge an InferenceData against the gate.

    Args:
        idata: With ``posterior`` and ``sample_stats.diverging``.
        thresholds: Limits; defaults to DESIGN §6.
        diagnostics: Precomputed ``{"r_hat" | "ess_bulk": {variable: array}}`` of this posterior
            (:func:`tierpool.fit.diagnostics.summarise`), so a fit computes them once for its
            tables and its gate; computed here if omitted.

    Returns:
        The verdict, with one reason per failed criterion naming the worst parameter.
    """
    t = thresholds or GateThresholds()
    post = idata.posterior
    if diagnostics is None:
        diagnostics = summarise(post, ("r_hat", "ess_bulk"))
    # the diagnostics have the variables' dims without chain/draw: label against one draw
    labels = post.isel(chain=0, draw=0, drop=True)
    max_rhat, worst_rhat = _extreme(diagnostics["r_hat"], labels, "max")
    min_ess, worst_ess = _extreme(diagnostics["ess_bulk"], labels, "min")
    div = int(np.asarray(idata.sample_stats["diverging"].values).sum()) if "sample_stats" in idata.groups() else 0
    reasons = []
    if not max_rhat <= t.max_r_hat:
        reasons.append(f"max r_hat {max_rhat:.4f} > {t.max_r_hat} (worst: {worst_rhat})")
    if not min_ess >= t.min_ess_bulk:
        reasons.append(f"min ess_bulk {min_ess:.0f} < {t.min_ess_bulk:.0f} (worst: {worst_ess})")
    if div > t.max_divergences:
        reasons.append(f"{div} divergent transition(s) > {t.max_divergences} allowed")
    return GateVerdict(not reasons, reasons, max_rhat, min_ess, div, worst_rhat, worst_ess)
