"""The publication gate (DESIGN §6): max r_hat ≤ 1.01, min bulk ESS ≥ 400, no divergences.

Judged over every parameter in the posterior group: the sampled scales and the locations drawn
from their exact conditional. Note the gate is meaningless for short runs: with ~300 parameters
even perfect draws give max r_hat > 1.01 at 2 × 300 draws; use ≥ 2 chains × 1,000 draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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


def _label(ds: Any, var: str, flat_index: int) -> str:
    arr = ds[var]
    if arr.ndim == 0:
        return var
    pos = np.unravel_index(flat_index, arr.shape)
    labels = [str(arr.coords[d].values[i]) if d in arr.coords else str(i) for d, i in zip(arr.dims, pos)]
    return f"{var}[{', '.join(labels)}]"


def _extreme(ds: Any, pick: str) -> tuple[float, str]:
    best_val, best_name = (-np.inf if pick == "max" else np.inf), ""
    for var in ds.data_vars:
        vals = np.atleast_1d(np.asarray(ds[var].values, dtype=float))
        if not vals.size:
            continue
        # a NaN diagnostic (e.g. a constant parameter) must fail the gate, not vanish
        vals = np.where(np.isnan(vals), np.inf if pick == "max" else -np.inf, vals)
        i = int(np.argmax(vals) if pick == "max" else np.argmin(vals))
        v = float(vals.ravel()[i])
        if (pick == "max" and v > best_val) or (pick == "min" and v < best_val):
            best_val, best_name = v, _label(ds, str(var), i)
    return best_val, best_name


def evaluate_gate(idata: Any, thresholds: GateThresholds | None = None) -> GateVerdict:
    """Judge an InferenceData against the gate.

    Args:
        idata: With ``posterior`` and ``sample_stats.diverging``.
        thresholds: Limits; defaults to DESIGN §6.

    Returns:
        The verdict, with one reason per failed criterion naming the worst parameter.
    """
    import arviz as az

    t = thresholds or GateThresholds()
    post = idata.posterior
    max_rhat, worst_rhat = _extreme(az.rhat(post), "max")
    min_ess, worst_ess = _extreme(az.ess(post, method="bulk"), "min")
    div = int(np.asarray(idata.sample_stats["diverging"].values).sum()) if "sample_stats" in idata.groups() else 0
    reasons = []
    if not max_rhat <= t.max_r_hat:
        reasons.append(f"max r_hat {max_rhat:.4f} > {t.max_r_hat} (worst: {worst_rhat})")
    if not min_ess >= t.min_ess_bulk:
        reasons.append(f"min ess_bulk {min_ess:.0f} < {t.min_ess_bulk:.0f} (worst: {worst_ess})")
    if div > t.max_divergences:
        reasons.append(f"{div} divergent transition(s) > {t.max_divergences} allowed")
    return GateVerdict(not reasons, reasons, max_rhat, min_ess, div, worst_rhat, worst_ess)
