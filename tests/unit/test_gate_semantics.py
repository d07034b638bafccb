"""Gate semantics (issue 10 item 7) on the demo SQL, without the engine.

fit_gate.sql fails only the build whose fit node MADE a rejected fit (or a build with nothing to
serve); later builds serve the previous published fit and pass, warned by
fit_gate_rejected_fits.sql naming the rejected fit. decide_fit prefers the published fit of the
same inputs over a later rejected one.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

import _warehouse_sql as w
from tierpool.calibration.lifecycle import decide_fit
from tierpool.calibration.quarters import Quarter

K = "energy_wh"


def _insert(con, table: str, rows: list[dict]) -> None:
    con.register("_rows", pd.DataFrame(rows))
    con.execute(f"insert into {table} by name select * from _rows")
    con.unregister("_rows")


def _warehouse(runs: list[tuple[str, str, str]], decision: tuple[str, str] | None) -> duckdb.DuckDBPyConnection:
    """fit_runs from (fit_id, status, finished), fit_decision = (fit_id, action); gate views built."""
    con = duckdb.connect()
    w.create_fit_outputs(con)
    for fit_id, status, finished in runs:
        _insert(con, "fit_runs", [{"fit_id": fit_id, "indicator": K, "status": status, "finished_at": pd.Timestamp(finished),
                                   "reason": None if status == "published" else f"{K}: max r_hat 1.2 > 1.01; driven by: model m"}])
    if decision is not None:
        status = {f: s for f, s, _ in runs}[decision[0]]
        reason = None if status == "published" else f"{K}: max r_hat 1.2 > 1.01; driven by: model m"
        _insert(con, "fit_decision", [{"indicator": K, "fit_id": decision[0], "action": decision[1], "status": status,
                                       "reason": reason, "decided_at": pd.Timestamp("2026-12-01")}])
    w.build(con, only={"latest_fit", "fit_gate_status"})
    return con


HISTORY = [("2026Q3", "published", "2026-10-02"), ("2026Q3-r2", "rejected", "2026-10-05")]


def test_the_build_that_made_a_rejected_fit_fails_with_its_reason():
    con = _warehouse(HISTORY, ("2026Q3-r2", "fitted"))
    failing = w.singular_test(con, "fit_gate")
    assert list(failing.fit_id) == ["2026Q3-r2"] and list(failing.served_fit_id) == ["2026Q3"]
    assert "rejected by the gate" in failing.problem[0] and "driven by: model m" in failing.problem[0]
    assert w.singular_test(con, "fit_gate_rejected_fits").empty  # no double report


def test_later_builds_serving_the_published_fit_pass_with_a_warning():
    for decision in (("2026Q3-r2", "reused"), ("2026Q3", "reused")):
        con = _warehouse(HISTORY, decision)
        assert w.singular_test(con, "fit_gate").empty, decision
        warned = w.singular_test(con, "fit_gate_rejected_fits")
        assert list(warned.rejected_fit_id) == ["2026Q3-r2"] and list(warned.served_fit_id) == ["2026Q3"]


def test_a_newer_published_fit_ends_the_warning():
    con = _warehouse([*HISTORY, ("2026Q3-r3", "published", "2026-10-09")], ("2026Q3-r3", "fitted"))
    assert w.singular_test(con, "fit_gate").empty
    assert w.singular_test(con, "fit_gate_rejected_fits").empty


def test_nothing_to_serve_fails_every_build():
    con = _warehouse([("2026Q3", "rejected", "2026-10-02")], ("2026Q3", "reused"))
    failing = w.singular_test(con, "fit_gate")
    assert list(failing.problem) == ["no published fit to serve"]


def test_the_warning_test_is_warn_severity():
    first = (w.REPO / "tests" / "data" / "fit_gate_rejected_fits.sql").read_text().splitlines()[0]
    assert first.strip() == "-- severity: warn"


@pytest.mark.parametrize("statuses, expected", [
    (("published", "rejected"), "2026Q3"),  # the published fit of the same inputs wins
    (("rejected", "rejected"), "2026Q3-r2"),
])
def test_reuse_prefers_the_published_fit_of_the_same_inputs(statuses, expected):
    runs = pd.DataFrame({"fit_id": ["2026Q3", "2026Q3-r2"], "fingerprint": ["f", "f"], "status": list(statuses),
                         "finished_at": pd.to_datetime(["2026-10-02", "2026-10-05"])})
    decision = decide_fit(runs, "f", Quarter.parse("2026Q3"))
    assert decision.reuse and decision.fit_id == expected


class _Ctx:
    """The slice of the Python model context the fit node reads."""

    def __init__(self, tmp_path, fit_vars):
        self.vars, self.options, self.progress = {"fit": fit_vars}, {}, False
        self.project_dir, self.path, self.target_dir = str(tmp_path), None, str(tmp_path / "target")
        self.message, self.logs = "", []

    def previous(self, name):
        return None

    def log(self, text):
        self.logs.append(text)


def test_a_fit_error_names_its_indicator_and_model(tmp_path):
    from tierpool.calibration.fit_node import run_calibration_fit
    from tierpool.errors import ModelError

    cells = pd.DataFrame({"indicator": ["water_l"], "model_id": ["flat"], "family_id": ["f"], "region_id": ["r"],
                          "region_class_id": ["c"], "quarter_start": [pd.Timestamp("2026-07-01")], "n": [10],
                          "mean": [0.3], "S": [0.0]})
    ctx = _Ctx(tmp_path, {"as_of": "2026-11-21", "resolution": 0})
    with pytest.raises(ModelError, match=r"indicator 'water_l' \(1 cells, 10 residuals\): model\(s\) with constant "
                                         r"residuals \(S = 0\): flat"):
        run_calibration_fit(ctx, cells, ("fit_runs", "fit_decision"))
    # the pending draws of the failed run are an orphan: the next run removes them
    from tierpool.calibration.fit_files import reconcile

    assert reconcile(ctx.target_dir, None).removed == ["2026Q3"]
