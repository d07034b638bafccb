"""The fit lifecycle: data window, fingerprint, reuse-or-refit, methodology versions.

The fit is the only expensive node. It re-runs only when the cells inside its window, the fit
code or its settings change (or on ``--refit``); otherwise the build reuses the fit already
recorded in ``fit_runs`` and takes seconds. A new catalogue model never changes the cells, so it
never triggers a fit: it gets its priors from the family level of the latest published fit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tierpool.calibration.quarters import Quarter, next_fit_id
from tierpool.errors import ConfigError

CELL_KEYS = ["indicator", "model_id", "family_id", "region_id", "region_class_id"]


def cells_in_window(quarterly: pd.DataFrame, window_end: date) -> pd.DataFrame:
    """Merge per-quarter cells (n, w, mean, S) measured before ``window_end`` into one cell each.

    Uses the pairwise (Chan et al.) combination, which is exact and stable, weighted by each
    quarter's summed row weights ``w_q`` (= ``n_q`` for single requests; a frame without a ``w``
    column is read as unweighted): ``mean = Σ w_q mean_q / Σ w_q``,
    ``S = Σ S_q + Σ w_q (mean_q − mean)²``. ``n`` counts the rows, ``w`` sums their weights.
    """
    inside = quarterly[pd.to_datetime(quarterly["quarter_start"]) < pd.Timestamp(window_end)]
    if inside.empty:
        return pd.DataFrame(columns=[*CELL_KEYS, "n", "w", "mean", "S"])
    n = inside["n"].astype("float64")
    w = inside["w"].astype("float64") if "w" in inside.columns else n
    frame = inside.assign(n=n, w=w, weighted=w * inside["mean"])
    grouped = frame.groupby(CELL_KEYS, sort=True, dropna=False)
    totals = grouped[["n", "w", "weighted", "S"]].sum().reset_index()
    totals["mean"] = totals["weighted"] / totals["w"]
    merged = frame.merge(totals[[*CELL_KEYS, "mean"]], on=CELL_KEYS, suffixes=("", "_all"))
    merged["between"] = merged["w"] * (merged["mean"] - merged["mean_all"]) ** 2
    between = merged.groupby(CELL_KEYS, sort=True, dropna=False)["between"].sum().to_numpy()
    totals["S"] = totals["S"].to_numpy() + between
    totals["n"] = totals["n"].round().astype("int64")
    return totals[[*CELL_KEYS, "n", "w", "mean", "S"]]


def code_fingerprint(extra_files: list[Path] = ()) -> str:
    """Hash of the fit library and calibration glue sources (and e.g. the Python model file)."""
    package = Path(__file__).resolve().parent.parent
    glue = [p for p in sorted(package.joinpath("calibration").rglob("*.py")) if not p.name.startswith("synth")]
    files = sorted(package.joinpath("fit").rglob("*.py")) + glue  # synth* writes data, never fits
    digest = hashlib.sha256()
    for path in [*files, *extra_files]:
        digest.update(path.name.encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def data_fingerprint(cells: pd.DataFrame, settings: dict[str, Any], code: str) -> str:
    """Hash of the cells inside the window, the sampler settings and the code.

    Floats are written with 10 significant digits: DuckDB's parallel sums may differ in the last
    bits between runs, and such noise must not trigger a refit. A cell's summed row weight ``w``
    is hashed only where it differs from its row count (so unweighted cells hash as before).
    """
    ordered = cells.sort_values(CELL_KEYS).reset_index(drop=True)
    digest = hashlib.sha256()
    weighted = "w" in ordered.columns
    for row in ordered.itertuples(index=False):
        ids = "|".join(str(getattr(row, key)) for key in CELL_KEYS)
        w = f"|w={row.w:.10g}" if weighted and f"{row.w:.10g}" != f"{int(row.n)}" else ""
        digest.update(f"{ids}|{int(row.n)}{w}|{row.mean:.10g}|{row.S:.10g}\n".encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(code.encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class FitDecision:
    """What the fit node does this build: reuse a recorded fit or run a new one."""

    reuse: bool
    fit_id: str
    message: str


def decide_fit(
    previous_runs: pd.DataFrame | None,
    fingerprint: str,
    quarter: Quarter,
    *,
    refit: bool = False,
    fit_id: str | None = None,
) -> FitDecision:
    """Reuse the latest recorded fit with the same fingerprint unless asked to refit."""
    runs = previous_runs if previous_runs is not None else pd.DataFrame(columns=["fit_id", "fingerprint"])
    existing = set(runs["fit_id"].astype(str))
    if fit_id is not None and fit_id in existing and not refit:
        raise ConfigError(f"fit_id '{fit_id}' is already recorded in fit_runs: pass --refit to replace it, or choose another --fit-id")
    same = runs[runs["fingerprint"] == fingerprint]
    if "status" in same:  # a fit's superseded attempts (ladder.py) are not fits of their own
        same = same[same["status"] != "retried"]
    if not refit and fit_id is None and not same.empty:
        # a published fit of the same inputs wins over a later rejected one (e.g. a refit judged
        # by a stricter gate): it is the fit in force, and later builds keep serving it
        published = (same["status"] == "published") if "status" in same else pd.Series(True, index=same.index)
        latest = same.assign(_pub=published.astype(int)).sort_values(["_pub", "finished_at"]).iloc[-1]
        status = latest.get("status", "published")
        return FitDecision(True, str(latest["fit_id"]), f"reused fit {latest['fit_id']} ({status}); inputs, code and settings unchanged")
    chosen = fit_id or next_fit_id(quarter, existing)
    return FitDecision(False, chosen, f"new fit {chosen}")


def next_methodology_version(releases: pd.DataFrame | None, base_version: str) -> str:
    """Each published fit is a patch release after the latest one (or after the base version).

    >>> next_methodology_version(None, "1.4.2")
    '1.4.3'
    >>> next_methodology_version(pd.DataFrame({"version": ["1.4.3", "1.4.10"]}), "1.4.2")
    '1.4.11'
    >>> next_methodology_version(pd.DataFrame({"version": ["1.4.3"]}), "1.5.0")
    '1.5.1'
    """
    candidates = [_parse_version(base_version)]
    if releases is not None and not releases.empty:
        candidates += [_parse_version(v) for v in releases["version"].astype(str)]
    major, minor, patch = max(candidates)
    return f"{major}.{minor}.{patch + 1}"


def _parse_version(text: str) -> tuple[int, int, int]:
    parts = text.strip().split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ConfigError(f"methodology version '{text}' is not MAJOR.MINOR.PATCH (e.g. 1.4.2): fix vars.fit.methodology_base_version")
    return int(parts[0]), int(parts[1]), int(parts[2])


def sanitize_for_json(value: Any) -> Any:
    """Make numpy scalars JSON-serialisable for the settings/versions columns."""
    if isinstance(value, dict):
        return {k: sanitize_for_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize_for_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
