"""Read everything the report shows from the warehouse, read-only, into pandas frames.

The report never writes to the database and never needs the project's Python models:
any warehouse built by ``tierpool build`` (or copied elsewhere) can be reported on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tierpool.adapters import Adapter
from tierpool.errors import TierpoolError

_POSTERIOR_TABLES = ("posterior_families", "posterior_models", "posterior_region_classes", "posterior_regions")


@dataclass
class ReportData:
    """The frames behind one report: one fit, all of its indicators, plus the fit history.

    Attributes:
        fit_id: The fit being reported.
        fit_status: ``published`` or ``rejected`` (from ``fit_runs``).
        indicators: Indicators of that fit, sorted.
        tables: Frames keyed by name; those for the fit are already filtered to ``fit_id``.
            Optional tables (``coverage_report``, ``coverage_release``) are absent when
            the warehouse has none.
    """

    fit_id: str
    fit_status: str
    indicators: list[str]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def get(self, name: str, indicator: str | None = None) -> pd.DataFrame | None:
        """A table, restricted to one indicator when it has that column; None if absent."""
        frame = self.tables.get(name)
        if frame is None or indicator is None or "indicator" not in frame.columns:
            return frame
        return frame[frame["indicator"] == indicator].reset_index(drop=True)


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _df(con: Adapter, sql: str) -> pd.DataFrame:
    return con.frame(sql)


def _choose_fit(con: Any, present: set[str], fit_id: str | None) -> tuple[str, str]:
    """The requested fit, else the latest published one, else the latest recorded one."""
    if "fit_runs" not in present:
        raise TierpoolError("no fit in this warehouse yet (no fit_runs table): run `tierpool build` first")
    runs = _df(con, "SELECT fit_id, status, finished_at FROM fit_runs ORDER BY finished_at DESC, fit_id DESC")
    if runs.empty:
        raise TierpoolError("no fit in this warehouse yet (fit_runs is empty): run `tierpool build` first")
    if fit_id is not None:
        match = runs[runs["fit_id"] == fit_id]
        if match.empty:
            known = ", ".join(dict.fromkeys(runs["fit_id"]))
            raise TierpoolError(f"no fit '{fit_id}' in fit_runs; known fits: {known}")
        return fit_id, str(match["status"].iloc[0])
    if "latest_fit" in present:
        latest = _df(con, "SELECT fit_id FROM latest_fit ORDER BY finished_at DESC")
        in_runs = runs[runs["fit_id"].isin(latest["fit_id"])]
        if not in_runs.empty:
            return str(in_runs["fit_id"].iloc[0]), str(in_runs["status"].iloc[0])
    published = runs[runs["status"] == "published"]
    row = (published if not published.empty else runs).iloc[0]
    return str(row["fit_id"]), str(row["status"])


def load_report_data(con: Adapter, fit_id: str | None = None) -> ReportData:
    """Read the report's tables for one fit from the warehouse, then close it.

    Args:
        con: A read-only adapter of the warehouse.
        fit_id: Fit to report; default the latest published fit (``latest_fit``), or the
            most recent recorded fit when none was published.

    Returns:
        The frames, with posterior tables filtered to the chosen fit.

    Raises:
        TierpoolError: No warehouse, no fit yet, or an unknown ``fit_id``.
    """
    try:
        present = set(con.relation_kinds())
        chosen, status = _choose_fit(con, present, fit_id)
        missing = [t for t in (*_POSTERIOR_TABLES, "posterior_predictive") if t not in present]
        if missing:
            raise TierpoolError(f"warehouse has fit_runs but not {', '.join(missing)}: rerun `tierpool build`")
        tables: dict[str, pd.DataFrame] = {}
        for name in (*_POSTERIOR_TABLES, "posterior_predictive"):
            tables[name] = _df(con, f"SELECT * FROM {name} WHERE fit_id = {_literal(chosen)}")
        tables["fit_runs"] = _df(con, "SELECT * FROM fit_runs ORDER BY started_at, fit_id, indicator")
        optional = {
            "residual_cells": "SELECT indicator, model_id, family_id, region_id, region_class_id, n, mean, S "
                              "FROM residual_cells",
            "methodology_releases": "SELECT * FROM methodology_releases ORDER BY released_at",
            "coverage_report": "SELECT * FROM coverage_report",
            "coverage_release": "SELECT * FROM coverage_release",
        }
        for name, sql in optional.items():
            if name in present:
                tables[name] = _df(con, sql)
    finally:
        con.close()
    runs = tables["fit_runs"]
    indicators = sorted(set(runs.loc[runs["fit_id"] == chosen, "indicator"]))
    return ReportData(fit_id=chosen, fit_status=status, indicators=indicators, tables=tables)
