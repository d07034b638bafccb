"""The body of the ``hierarchical_fit`` Python model: decide, fit, gate, publish.

The node always records what it did: a new fit appends its posterior tables and one
``fit_runs`` row per indicator and attempt (published or rejected; a fit failing the gate only on
a few divergences is refitted up the target_accept ladder first, and its superseded attempts are
'retried': ladder.py); a reused fit appends nothing and says "reused fit X". Either way
``fit_decision`` (a table, replaced every run) says what this run did.
Rejected fits are recorded but never released: the gate data test (tests/data/fit_gate.sql, on
the view fit_gate_status) fails the build that made the rejected fit; later builds serve the
previous published fit and pass with a warning naming it (tests/data/fit_gate_rejected_fits.sql).
Draws are written under target/fits/.pending/ and moved into place once the rows are committed
(``fit_files.py``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from tierpool.calibration.fit_files import pending_dir, reconcile
from tierpool.calibration.ladder import decide, describe_attempts
from tierpool.calibration.lifecycle import (
    cells_in_window,
    code_fingerprint,
    data_fingerprint,
    decide_fit,
    next_methodology_version,
)
from tierpool.calibration.publish import fit_run_rows, gate_reason, posterior_frames
from tierpool.calibration.settings import CalibrationSettings, read_settings
from tierpool.errors import ModelError


def run_calibration_fit(ctx: Any, quarterly_cells: pd.DataFrame, outputs: tuple[str, ...],
                        heavy_tail_rows: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Fit every indicator's cells inside the fit quarter's window, or reuse the recorded fit.

    Args:
        ctx: The Python model context (vars, options, previous outputs, target_dir).
        quarterly_cells: ``residual_cells_by_quarter``.
        outputs: The model's declared outputs (all are returned; empty frames add nothing).
        heavy_tail_rows: ``residual_rows_heavy_tail``: raw fit-fold rows, needed only for the
            families in ``vars.fit.student_t_families`` (docs/fit.md, "Heavy tails").

    Returns:
        Output name -> rows to append.

    Raises:
        ModelError: No residuals inside the window.
    """
    settings = read_settings(ctx.vars, ctx.options, ctx.progress)
    previous_runs = ctx.previous("fit_runs")
    reconcile(ctx.target_dir, previous_runs)  # draws of a run killed after its commit, orphans
    quarter = settings.fit_quarter()
    cells = cells_in_window(quarterly_cells, quarter.window_end)
    if cells.empty:
        raise ModelError(
            f"hierarchical_fit: no residuals measured before {quarter.window_end} (fit quarter {quarter}); "
            "load tier-3 measurements or set vars.fit.quarter / --fit-id to a quarter that has data"
        )
    # ctx.path is the display path, relative to the project: resolve it, as the build may run elsewhere.
    code = code_fingerprint([Path(ctx.project_dir) / ctx.path] if ctx.path else [])
    fingerprint = data_fingerprint(cells, settings.fingerprint_settings(), code)
    decision = decide_fit(previous_runs, fingerprint, quarter, refit=settings.refit, fit_id=settings.fit_id)
    ctx.message = decision.message
    if decision.reuse:
        frames = {"fit_decision": _decision_rows(previous_runs, decision.fit_id)}
        if (frames["fit_decision"]["status"] == "rejected").any():
            ctx.message += "; the gate rejected it, so the previous published fit stays in force (refit with --refit)"
        return {name: frames.get(name, pd.DataFrame()) for name in outputs}
    ctx.log(f"fitting {decision.fit_id}: {len(cells)} cells, {int(cells['n'].sum())} residuals measured before {quarter.window_end}")
    rows = _student_t_rows(heavy_tail_rows, settings, quarter.window_end)
    frames = _fit_and_publish(ctx, cells, settings, decision.fit_id, fingerprint, quarter.window_end, rows)
    frames["fit_decision"] = _decision_rows(frames["fit_runs"], decision.fit_id, action="fitted")
    return {name: frames.get(name, pd.DataFrame()) for name in outputs}


def _decision_rows(runs: pd.DataFrame | None, fit_id: str, action: str = "reused") -> pd.DataFrame:
    """``fit_decision``: per indicator, the fit this run made or reused and its status."""
    cols = ["indicator", "fit_id", "action", "status", "reason", "decided_at"]
    if runs is None or runs.empty:
        return pd.DataFrame(columns=cols)
    mine = runs[runs["fit_id"].astype(str) == fit_id]
    if "status" in mine:  # the fit's final attempt per indicator (ladder.py: earlier ones are 'retried')
        mine = mine[mine["status"].astype(str) != "retried"]
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return pd.DataFrame({
        "indicator": mine["indicator"].astype(str).to_numpy(), "fit_id": fit_id, "action": action,
        "status": mine["status"].astype(str).to_numpy(), "reason": mine["reason"].to_numpy(), "decided_at": now,
    }, columns=cols)


def _student_t_rows(rows: pd.DataFrame | None, settings: CalibrationSettings, window_end: Any) -> pd.DataFrame | None:
    """The t-families' rows inside the window; a configured family without rows is an error."""
    if not settings.student_t_families:
        return None
    if rows is None:
        raise ModelError("vars.fit.student_t_families is set but the fit got no residual rows (ctx.ref('residual_rows_heavy_tail'))")
    rows = rows[rows["family_id"].isin(settings.student_t_families)]
    rows = rows[pd.to_datetime(rows["measured_at"]) < pd.Timestamp(window_end)]
    missing = sorted(set(settings.student_t_families) - set(rows["family_id"]))
    if missing:
        raise ModelError(
            f"vars.fit.student_t_families {missing}: no fit-fold rows in residual_rows_heavy_tail, which holds the "
            "families residual_normality flags heavy_tailed; use the Student-t only for flagged families"
        )
    return rows


def _fit_and_publish(ctx: Any, cells: pd.DataFrame, settings: CalibrationSettings, fit_id: str, fingerprint: str, window_end: Any,
                     rows: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Fit every indicator; refit them all up the target_accept ladder while only a few divergences fail the gate."""
    from tierpool.fit import GateThresholds

    spec = settings.spec()
    thresholds = GateThresholds(**settings.gate)
    transitions = int(settings.sampler["chains"]) * int(settings.sampler["draws"])
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    draws = pending_dir(ctx.target_dir, fit_id, started)  # its marker carries attempt 1's started_at
    tried = [float(settings.sampler["target_accept"])]
    attempt_rows = []
    attempt_started = started
    while True:
        results = _fit_indicators(ctx, cells, spec, settings, thresholds, fit_id, tried[-1], rows)
        finished = datetime.now(timezone.utc).replace(tzinfo=None)
        step = decide({k: r.gate for k, r in results.items()}, thresholds, transitions, tried, settings.ladder())
        reason = gate_reason(results)
        if step.retry_at is not None:
            status, reason = "retried", f"{reason}; retried at target_accept {step.retry_at:g} (divergences only)"
        elif reason:
            status = "rejected"
            reason = "; ".join(p for p in (reason, describe_attempts(tried), step.advice) if p)
        else:
            status = "published"
        attempt_rows.append(fit_run_rows(
            fit_id, results, cells, status=status, reason=reason, started_at=attempt_started, finished_at=finished,
            window_end=window_end, fingerprint=fingerprint, attempt=len(tried),
            settings={**settings.fingerprint_settings(), "target_accept": tried[-1]},
        ))
        if step.retry_at is None:
            break
        ctx.log(f"fit {fit_id} attempt {len(tried)} failed the gate on divergences only: refitting every indicator "
                f"at target_accept {step.retry_at:g}")
        tried.append(step.retry_at)
        attempt_started = datetime.now(timezone.utc).replace(tzinfo=None)
    for indicator, result in results.items():  # the draws of the final attempt only
        result.save(draws / f"{indicator}.nc")
    frames = posterior_frames(fit_id, results)
    frames["fit_runs"] = pd.concat(attempt_rows, ignore_index=True)
    at = f" (attempt {len(tried)}, target_accept {tried[-1]:g})" if len(tried) > 1 else ""
    if status == "published":
        version = next_methodology_version(ctx.previous("methodology_releases"), settings.base_version)
        frames["methodology_releases"] = pd.DataFrame({"version": [version], "fit_id": [fit_id], "released_at": [finished]})
        ctx.message = f"published fit {fit_id} as methodology {version}{at}"
    else:
        ctx.message = f"fit {fit_id} REJECTED by the gate: {reason}"
    return frames


def _fit_indicators(ctx: Any, cells: pd.DataFrame, spec: Any, settings: CalibrationSettings, thresholds: Any, fit_id: str,
                    target_accept: float, rows: pd.DataFrame | None) -> dict[str, Any]:
    """One attempt: every indicator fitted at ``target_accept`` (the fit is gated as a whole)."""
    from tierpool.fit import FitSettings, fit_hierarchical

    fit_settings = FitSettings(progress=settings.progress, **{**settings.sampler, "target_accept": target_accept})
    results = {}
    for indicator in sorted(cells["indicator"].unique()):
        part = cells[cells["indicator"] == indicator].drop(columns=["indicator"])
        part_rows = None if rows is None else rows[rows["indicator"] == indicator]
        try:
            result = fit_hierarchical(part, spec, fit_settings, thresholds=thresholds, rows=part_rows)
        except Exception as exc:  # every fit error names its indicator (FitError, numerical failures)
            raise ModelError(f"hierarchical_fit: fit {fit_id}, indicator {indicator!r} "
                             f"({len(part)} cells, {int(part['n'].sum())} residuals): {exc}") from exc
        ctx.log(f"{indicator}: max r_hat {result.gate.max_r_hat:.4f}, min ess_bulk {result.gate.min_ess_bulk:.0f}, "
                f"divergences {result.gate.divergences} (target_accept {target_accept:g})")
        results[indicator] = result
    return results
