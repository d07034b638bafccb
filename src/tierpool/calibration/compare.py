"""``tierpool compare-hierarchies``: two-level vs three-level hierarchy on the warehouse's folds.

Reads the fit-fold cells and the test-fold rows (residuals × request_folds × models) read-only,
closes the database, fits both hierarchies per indicator (``tierpool.fit.compare``), then opens
the warehouse once more for one short write transaction into ``hierarchy_comparison``. The
database is never held while sampling, so a build or a query can run meanwhile.

The architecture level's id is ``<family_id>/<architecture>``: "dense" in two families are two
groups, as the nesting (each architecture in exactly one family) requires.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from tierpool.adapters import Adapter, FrameOutput
from tierpool.errors import TierpoolError
from tierpool.fit.compare import cells_from_rows, compare_hierarchies
from tierpool.fit.sample import FitSettings
from tierpool.fit.spec import default_spec, three_level_spec

TABLE = "hierarchy_comparison"
KEYS = ["family_id", "architecture_id", "model_id", "region_class_id", "region_id"]
_NEEDED = ("residuals", "request_folds", "models")


@dataclass
class ComparisonInputs:
    """Fit-fold cells and test-fold rows, both with ``indicator`` and the :data:`KEYS`."""

    fit_cells: pd.DataFrame
    test_rows: pd.DataFrame


def hierarchies() -> dict[str, Any]:
    """The two hierarchies compared: DESIGN §5's default and the family → architecture → model one."""
    return {"two_level": default_spec(), "three_level": three_level_spec()}


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def load_inputs(reader: Adapter, indicators: list[str] | None = None) -> ComparisonInputs:
    """Read the fit-fold cells and the test-fold rows from the warehouse, then close it.

    Args:
        reader: A read-only adapter of the warehouse.
        indicators: Indicators to read (default: all with residuals).

    Raises:
        TierpoolError: No warehouse, tables missing, no ``architecture`` column in ``models``,
            an unknown indicator, or an empty fit or test fold.
    """
    try:
        present = set(reader.relation_kinds())
        missing = [t for t in _NEEDED if t not in present]
        if missing:
            raise TierpoolError(f"{reader.description} has no {', '.join(missing)}: run `tierpool build` first")
        model_cols = {c.lower() for c in reader.fetch("SELECT * FROM models", limit=0).columns}
        if "architecture" not in model_cols:
            raise TierpoolError("the models seed has no `architecture` column ('dense' | 'moe'): the three-level "
                                "hierarchy needs it; add it to seeds/models.csv and rebuild")
        known = [r[0] for r in reader.fetch("SELECT DISTINCT indicator FROM residuals ORDER BY 1").rows]
        if not known:
            raise TierpoolError("the residuals table is empty: load tier-3 measurements and rebuild")
        wanted = list(indicators) if indicators else known
        unknown = sorted(set(wanted) - set(known))
        if unknown:
            raise TierpoolError(f"no residuals for indicator(s) {unknown}; known: {known}")
        base = f"""
            SELECT r.indicator, r.family_id,
                   r.family_id || '/' || coalesce(m.architecture, 'unknown') AS architecture_id,
                   r.model_id, r.region_class_id, r.region_id, f.fold, r.residual
            FROM residuals AS r
            JOIN request_folds AS f ON f.request_id = r.request_id
            JOIN models AS m ON m.model_id = r.model_id
            WHERE r.indicator IN ({', '.join(_literal(i) for i in wanted)})"""
        # var_pop·n is DuckDB's streaming, numerically stable S (as residual_cells_by_quarter)
        fit_cells = reader.frame(
            f"SELECT indicator, {', '.join(KEYS)}, count(*) AS n, avg(residual) AS mean, "
            f"var_pop(residual) * count(*) AS S FROM ({base}) AS b WHERE fold = 'fit' GROUP BY ALL")
        test_rows = reader.frame(f"SELECT * FROM ({base}) AS b WHERE fold = 'test'")
    finally:
        reader.close()
    for fold, frame in (("fit", fit_cells), ("test", test_rows)):
        empty = sorted(set(wanted) - set(frame["indicator"]))
        if empty:
            raise TierpoolError(f"the {fold} fold has no residuals for {empty}: too few measured requests to compare")
    return ComparisonInputs(fit_cells, test_rows)


def compare_warehouse(reader: Adapter, writer: Adapter, settings: FitSettings,
                      indicators: list[str] | None = None, run_id: str | None = None) -> pd.DataFrame:
    """Fit both hierarchies per indicator on the fit fold, score them on the test fold, record it.

    Args:
        reader: A read-only adapter of the warehouse (built by ``tierpool build``).
        writer: A read-write adapter of the same warehouse, opened only to write the rows.
        settings: Sampler settings for every fit.
        indicators: Indicators to compare (default: all with residuals).
        run_id: Id of this run; rows of an earlier run with the same id are replaced
            (default: the UTC start time, ``YYYYmmddTHHMMSSZ``).

    Returns:
        The rows written to ``hierarchy_comparison``.

    Raises:
        TierpoolError: See :func:`load_inputs`; DatabaseError if the warehouse stays locked.
    """
    started = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    run_id = run_id or started.strftime("%Y%m%dT%H%M%SZ")
    inputs = load_inputs(reader, indicators)  # the connection is closed again before sampling
    frames = []
    for indicator in sorted(inputs.test_rows["indicator"].unique()):
        fit = inputs.fit_cells[inputs.fit_cells["indicator"] == indicator].drop(columns="indicator")
        rows = inputs.test_rows[inputs.test_rows["indicator"] == indicator].drop(columns=["indicator", "fold"])
        table = compare_hierarchies(fit, cells_from_rows(rows, KEYS), hierarchies(), settings, test_rows=rows)
        table.insert(0, "indicator", indicator)
        frames.append(table)
    out = pd.concat(frames, ignore_index=True)
    recorded = ("tune", "draws", "chains", "target_accept", "seed", "sampler")
    sampler = {k: v for k, v in asdict(settings).items() if k in recorded}
    out.insert(0, "run_id", run_id)
    out.insert(1, "run_at", started)
    out["settings"] = json.dumps(sampler, sort_keys=True)
    write_comparison(writer, out)
    return out


def write_comparison(writer: Adapter, rows: pd.DataFrame) -> None:
    """Replace this run's rows of ``hierarchy_comparison`` (keyed by run_id) in one short write."""
    writer.open(wait_s=30.0)
    try:
        writer.write_frames([FrameOutput(TABLE, rows, (), "append", ("run_id",))])
    finally:
        writer.close()


def summary_lines(rows: pd.DataFrame) -> list[str]:
    """The terminal view: one table per run, then the verdict and any Pareto-k warning."""
    from tierpool.cli.console import render_table

    cols = ["indicator", "hierarchy", "elpd_test", "elpd_test_se", "elpd_diff", "elpd_diff_se", "loo_elpd",
            "loo_se", "p_loo", "n_pareto_k_high", "coverage_90", "mean_width", "n_test_rows", "n_test_cells",
            "fit_seconds", "max_r_hat", "divergences"]
    shown = rows[cols].copy()
    for c in shown.columns:
        if shown[c].dtype.kind == "f":
            shown[c] = shown[c].round(3)
    lines = [f"hierarchy_comparison run {rows['run_id'].iloc[0]} ({rows['settings'].iloc[0]})",
             render_table(cols, list(shown.itertuples(index=False, name=None)))]
    for indicator, part in rows.groupby("indicator", sort=True):
        best, other = part.iloc[0], part.iloc[-1]
        margin = -other["elpd_diff"]
        clear = margin > 2 * other["elpd_diff_se"]
        lines.append(f"{indicator}: {best['hierarchy']} predicts the test fold best by {margin:.1f} nats "
                     f"(se {other['elpd_diff_se']:.1f}){'' if clear else ': within 2 se, not a clear difference'}")
        for _, r in part.iterrows():
            if r["loo_warning"]:
                lines.append(f"{indicator} {r['hierarchy']}: {r['loo_warning']}")
            if r["max_r_hat"] > 1.01 or r["divergences"] > 0:
                lines.append(f"{indicator} {r['hierarchy']}: sampler not converged (max r_hat "
                             f"{r['max_r_hat']:.3f}, {int(r['divergences'])} divergences): use more draws")
    return lines
