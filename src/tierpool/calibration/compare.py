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


HOLDOUT_TABLE = "hierarchy_holdout"


@dataclass
class ComparisonInputs:
    """Fit-fold cells, test-fold rows and rows of every fold, with ``indicator``, :data:`KEYS` and fold."""

    fit_cells: pd.DataFrame
    test_rows: pd.DataFrame
    all_rows: pd.DataFrame


CANDIDATES = {
    "two_level": lambda: default_spec(),
    "three_level": lambda: three_level_spec(),
    "global_level": lambda: default_spec(global_level=True),  # a learned mean above the families
    # global level + the model × region interaction γ ~ Normal(0, σ_cell) (docs/fit.md, "The cell interaction")
    "interaction": lambda: default_spec(global_level=True, cell_interaction=True),
}


def hierarchies(names: tuple[str, ...] = ("two_level", "three_level")) -> dict[str, Any]:
    """The hierarchies compared (default: DESIGN §5's and the family → architecture → model one)."""
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        raise TierpoolError(f"unknown hierarchy {unknown}; choose from {sorted(CANDIDATES)}")
    return {name: CANDIDATES[name]() for name in names}


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
                   r.model_id, r.region_class_id, r.region_id, f.fold, r.residual, r.weight
            FROM residuals AS r
            JOIN request_folds AS f ON f.request_id = r.request_id
            JOIN models AS m ON m.model_id = r.model_id
            WHERE r.indicator IN ({', '.join(_literal(i) for i in wanted)})"""
        all_rows = reader.frame(f"SELECT * FROM ({base}) AS b")
        if (all_rows["weight"] == 1.0).all():
            all_rows = all_rows.drop(columns="weight")  # single requests: unweighted cells, as before
            # var_pop·n is DuckDB's streaming, numerically stable S (as residual_cells_by_quarter)
            fit_cells = reader.frame(
                f"SELECT indicator, {', '.join(KEYS)}, count(*) AS n, avg(residual) AS mean, "
                f"var_pop(residual) * count(*) AS S FROM ({base}) AS b WHERE fold = 'fit' GROUP BY ALL")
        else:  # rows that average several requests: weighted cells (n, w, mean, S), two-pass
            fit_cells = cells_from_rows(all_rows[all_rows["fold"] == "fit"], ["indicator", *KEYS])
        test_rows = all_rows[all_rows["fold"] == "test"].reset_index(drop=True)
    finally:
        reader.close()
    for fold, frame in (("fit", fit_cells), ("test", test_rows)):
        empty = sorted(set(wanted) - set(frame["indicator"]))
        if empty:
            raise TierpoolError(f"the {fold} fold has no residuals for {empty}: too few measured requests to compare")
    return ComparisonInputs(fit_cells, test_rows, all_rows)


def compare_warehouse(reader: Adapter, writer: Adapter, settings: FitSettings,
                      indicators: list[str] | None = None, run_id: str | None = None,
                      names: tuple[str, ...] = ("two_level", "three_level"), modes: tuple[str, ...] = (),
                      folds: int = 5) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Fit the hierarchies per indicator on the fit fold, score them on the test fold, record it.

    Args:
        reader: A read-only adapter of the warehouse (built by ``tierpool build``).
        writer: A read-write adapter of the same warehouse, opened only to write the rows.
        settings: Sampler settings for every fit.
        indicators: Indicators to compare (default: all with residuals).
        run_id: Id of this run; rows of an earlier run with the same id are replaced
            (default: the UTC start time, ``YYYYmmddTHHMMSSZ``).
        names: Hierarchies to compare (:data:`CANDIDATES`).
        modes: Also score them leaving whole groups out (``models``, ``regions``, ``families``;
            ``tierpool.fit.holdout``: ``folds`` fits per mode and hierarchy), into hierarchy_holdout.

    Returns:
        The rows written to ``hierarchy_comparison``, and those of ``hierarchy_holdout`` (or None).

    Raises:
        TierpoolError: See :func:`load_inputs`; DatabaseError if the warehouse stays locked.
    """
    from tierpool.fit.holdout import compare_holdout

    started = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    run_id = run_id or started.strftime("%Y%m%dT%H%M%SZ")
    specs = hierarchies(names)
    inputs = load_inputs(reader, indicators)  # the connection is closed again before sampling
    frames, holdout = [], []
    for indicator in sorted(inputs.test_rows["indicator"].unique()):
        fit = inputs.fit_cells[inputs.fit_cells["indicator"] == indicator].drop(columns="indicator")
        rows = inputs.test_rows[inputs.test_rows["indicator"] == indicator].drop(columns=["indicator", "fold"])
        table = compare_hierarchies(fit, cells_from_rows(rows, KEYS), specs, settings, test_rows=rows)
        table.insert(0, "indicator", indicator)
        frames.append(table)
        if modes:
            every = inputs.all_rows[inputs.all_rows["indicator"] == indicator].drop(columns=["indicator", "fold"])
            scores = compare_holdout(specs, fit, every, settings, modes, folds)
            scores.insert(0, "indicator", indicator)
            holdout.append(scores)
    recorded = ("tune", "draws", "chains", "target_accept", "seed", "sampler")
    sampler = json.dumps({k: v for k, v in asdict(settings).items() if k in recorded}, sort_keys=True)
    out = _stamped(pd.concat(frames, ignore_index=True), run_id, started, sampler)
    held = _stamped(pd.concat(holdout, ignore_index=True), run_id, started, sampler) if holdout else None
    write_comparison(writer, out, held)
    return out, held


def _stamped(frame: pd.DataFrame, run_id: str, started: datetime, sampler: str) -> pd.DataFrame:
    frame.insert(0, "run_id", run_id)
    frame.insert(1, "run_at", started)
    frame["settings"] = sampler
    return frame


def write_comparison(writer: Adapter, rows: pd.DataFrame, holdout: pd.DataFrame | None = None) -> None:
    """Replace this run's rows of ``hierarchy_comparison`` (and ``hierarchy_holdout``) in one short write."""
    outputs = [FrameOutput(TABLE, rows, (), "append", ("run_id",))]
    if holdout is not None:
        outputs.append(FrameOutput(HOLDOUT_TABLE, holdout, (), "append", ("run_id",)))
    writer.open(wait_s=30.0)
    try:
        writer.write_frames(outputs)
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


def holdout_lines(rows: pd.DataFrame) -> list[str]:
    """The terminal view of the leave-groups-out scores: a table, then the best per mode."""
    from tierpool.cli.console import render_table

    cols = ["indicator", "mode", "hierarchy", "elpd", "elpd_se", "elpd_diff", "elpd_diff_se", "coverage_90",
            "mean_width", "n_rows", "n_groups", "folds", "max_r_hat", "divergences"]
    shown = rows[cols].copy()
    for c in shown.columns:
        if shown[c].dtype.kind == "f":
            shown[c] = shown[c].round(3)
    lines = ["hierarchy_holdout (whole groups left out of the fit, scored against the new-member prior)",
             render_table(cols, list(shown.itertuples(index=False, name=None)))]
    for (indicator, mode), part in rows.groupby(["indicator", "mode"], sort=True):
        best, worst = part.iloc[0], part.iloc[-1]
        margin, se = -worst["elpd_diff"], worst["elpd_diff_se"]
        clear = margin > 2 * se
        lines.append(f"{indicator}, new {mode}: {best['hierarchy']} best by {margin:.1f} nats (paired se {se:.1f})"
                     f"{'' if clear else ': within 2 se, not a clear difference'}")
    return lines
