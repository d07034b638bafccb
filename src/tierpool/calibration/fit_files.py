"""Fit draws follow the database (issue 10 item 8).

A fit writes its ArviZ files under ``target/fits/.pending/<fit_id>/`` with a marker
``fit_run.json`` naming the fit (fit_id, started_at). The fit's rows are committed by the engine
after the Python model returns; only then may the files appear under ``target/fits/<fit_id>/``.
:func:`reconcile` does that: a pending folder whose fit is committed in ``fit_runs`` (same fit_id
*and* same started_at, so a killed ``--refit`` of a recorded fit_id never passes its draws off as
the recorded fit's) is renamed into place; every other pending folder is an orphan of a killed or
failed run and is removed. It runs in the ``fit_draws`` Python model, right after the fit's rows
are committed in the same build, and again at the start of the fit node, so a build killed
between the two steps is repaired by the next build.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

PENDING = ".pending"
MARKER = "fit_run.json"


def fits_dir(target_dir: str | Path) -> Path:
    """``target/fits``: one folder per committed fit."""
    return Path(target_dir) / "fits"


def pending_dir(target_dir: str | Path, fit_id: str, started_at: Any) -> Path:
    """A fresh pending folder for this run of ``fit_id`` (an older pending copy is discarded)."""
    path = fits_dir(target_dir) / PENDING / fit_id
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text(json.dumps({"fit_id": fit_id, "started_at": _stamp(started_at)}))
    return path


def _stamp(value: Any) -> str:
    return pd.Timestamp(value).isoformat(timespec="microseconds")


@dataclass
class Reconciled:
    """What :func:`reconcile` did."""

    promoted: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def reconcile(target_dir: str | Path, fit_runs: pd.DataFrame | None) -> Reconciled:
    """Promote committed pending fits, remove orphans (see the module docstring).

    Args:
        target_dir: The project's target folder.
        fit_runs: The committed ``fit_runs`` rows (fit_id, started_at); None or empty: none.
    """
    done = Reconciled()
    for leftover in fits_dir(target_dir).glob(f"{PENDING}-old-*"):
        _remove(leftover)
    root = fits_dir(target_dir) / PENDING
    if not root.is_dir():
        return done
    committed: set[tuple[str, str]] = set()
    if fit_runs is not None and not fit_runs.empty:
        committed = {(str(f), _stamp(s)) for f, s in zip(fit_runs["fit_id"], fit_runs["started_at"])}
    for path in sorted(p for p in root.iterdir()):
        key = _marker_key(path)
        if key is not None and key in committed:
            _replace(path, fits_dir(target_dir) / key[0])
            done.promoted.append(key[0])
        else:
            _remove(path)
            done.removed.append(path.name)
    if not any(root.iterdir()):
        root.rmdir()
    return done


def _marker_key(path: Path) -> tuple[str, str] | None:
    try:
        meta = json.loads((path / MARKER).read_text())
        return str(meta["fit_id"]), str(meta["started_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _replace(src: Path, dest: Path) -> None:
    """Move ``src`` to ``dest``; an existing ``dest`` (an earlier run of the fit_id) is replaced.

    Each step is a rename: killed at any point, the pending folder (with its marker) is still
    there or already in place, and a ``.pending-old-*`` leftover is removed by the next call.
    """
    old = dest.with_name(f"{PENDING}-old-{dest.name}")
    _remove(old)
    if dest.exists():
        dest.rename(old)
    src.rename(dest)
    (dest / MARKER).unlink(missing_ok=True)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def draws_table(target_dir: str | Path, fit_runs: pd.DataFrame | None) -> pd.DataFrame:
    """One row per committed fit × indicator: the path of its draws and whether the file exists."""
    cols = ["fit_id", "indicator", "path", "present"]
    if fit_runs is None or fit_runs.empty:
        return pd.DataFrame(columns=cols)
    base = fits_dir(target_dir)
    rows = []
    for fit_id, indicator in sorted(set(zip(fit_runs["fit_id"].astype(str), fit_runs["indicator"].astype(str)))):
        path = base / fit_id / f"{indicator}.nc"
        rows.append({"fit_id": fit_id, "indicator": indicator, "path": f"fits/{fit_id}/{indicator}.nc",
                     "present": path.is_file()})
    return pd.DataFrame(rows, columns=cols)
