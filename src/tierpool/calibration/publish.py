"""Turn per-indicator fit results into the warehouse's append-only output tables (DESIGN §6)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd

from tierpool.calibration.lifecycle import sanitize_for_json

LEVEL_OUTPUTS = {
    "family": "posterior_families",
    "model": "posterior_models",
    "region_class": "posterior_region_classes",
    "region": "posterior_regions",
}
PREDICTIVE_COLUMNS = ["kind", "family_id", "model_id", "region_class_id", "region_id", "mean", "sd", "q05", "q95"]


def posterior_frames(fit_id: str, results: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """The four posterior_* tables and posterior_predictive, stacked over indicators."""
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in [*LEVEL_OUTPUTS.values(), "posterior_predictive"]}
    for indicator, result in results.items():
        for level, output in LEVEL_OUTPUTS.items():
            table = result.levels[level]
            frames[output].append(_keyed(table, fit_id, indicator))
        predictive = result.predictive.reindex(columns=PREDICTIVE_COLUMNS)
        frames["posterior_predictive"].append(_keyed(predictive, fit_id, indicator))
    return {name: pd.concat(parts, ignore_index=True) for name, parts in frames.items()}


def _keyed(table: pd.DataFrame, fit_id: str, indicator: str) -> pd.DataFrame:
    out = table.copy()
    out.insert(0, "indicator", indicator)
    out.insert(0, "fit_id", fit_id)
    return out


def fit_run_rows(
    fit_id: str,
    results: dict[str, Any],
    cells: pd.DataFrame,
    *,
    status: str,
    reason: str | None,
    started_at: datetime,
    finished_at: datetime,
    window_end: Any,
    fingerprint: str,
    settings: dict[str, Any],
    attempt: int = 1,
) -> pd.DataFrame:
    """One fit_runs row per indicator of one attempt; the status is the fit's (all indicators together).

    ``attempt`` counts the fit's attempts from 1 (ladder.py); a superseded attempt's status is
    'retried', the last one's 'published' or 'rejected'. ``settings`` are the ones this attempt
    sampled with (its target_accept).
    """
    rows = []
    for indicator, result in results.items():
        part = cells[cells["indicator"] == indicator]
        gate = result.gate
        rows.append({
            "fit_id": fit_id,
            "indicator": indicator,
            "attempt": int(attempt),
            "status": status,
            "reason": reason,
            "max_r_hat": gate.max_r_hat,
            "min_ess_bulk": gate.min_ess_bulk,
            "divergences": int(gate.divergences),
            "settings": json.dumps(sanitize_for_json(settings), sort_keys=True),
            "started_at": started_at,
            "finished_at": finished_at,
            "compile_seconds": float(result.timings.get("compile", 0.0)),
            "sampling_seconds": float(result.timings.get("sampling", 0.0)),
            "versions": json.dumps(result.versions, sort_keys=True),
            "window_end": pd.Timestamp(window_end),
            "n_cells": len(part),
            "n_obs": int(part["n"].sum()),
            "fingerprint": fingerprint,
        })
    return pd.DataFrame(rows)


def gate_reason(results: dict[str, Any]) -> str | None:
    """Why the fit is rejected (every failing indicator's reasons), or None if all pass."""
    reasons = [f"{indicator}: {'; '.join(r.gate.reasons)}" + (f"; {r.gate.drivers}" if r.gate.drivers else "")
               for indicator, r in results.items() if not r.gate.passed]
    return " | ".join(reasons) if reasons else None
