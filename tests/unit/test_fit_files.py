"""Fit draws follow the database (issue 10 item 8): pending folders are promoted only for fits
committed in fit_runs (same fit_id and started_at); everything else is an orphan and removed."""

from __future__ import annotations

import json

import pandas as pd

from tierpool.calibration.fit_files import MARKER, PENDING, draws_table, pending_dir, reconcile

T0 = pd.Timestamp("2026-11-21 10:00:00.123456")


def _runs(*pairs):
    return pd.DataFrame({"fit_id": [p[0] for p in pairs], "indicator": "energy_wh",
                         "started_at": [p[1] for p in pairs]})


def _pending(target, fit_id, started, payload=b"draws"):
    path = pending_dir(target, fit_id, started)
    (path / "energy_wh.nc").write_bytes(payload)
    return path


def test_committed_fit_is_promoted_and_orphans_removed(tmp_path):
    _pending(tmp_path, "2026Q3", T0)
    _pending(tmp_path, "2026Q3-r2", T0 + pd.Timedelta(seconds=5))  # killed before its commit
    done = reconcile(tmp_path, _runs(("2026Q3", T0)))
    assert done.promoted == ["2026Q3"] and done.removed == ["2026Q3-r2"]
    assert (tmp_path / "fits" / "2026Q3" / "energy_wh.nc").read_bytes() == b"draws"
    assert not (tmp_path / "fits" / "2026Q3" / MARKER).exists()
    assert not (tmp_path / "fits" / PENDING).exists() and not (tmp_path / "fits" / "2026Q3-r2").exists()
    assert draws_table(tmp_path, _runs(("2026Q3", T0))).present.tolist() == [True]


def test_killed_refit_of_a_recorded_fit_id_keeps_the_recorded_draws(tmp_path):
    _pending(tmp_path, "2026Q3", T0, b"old")
    reconcile(tmp_path, _runs(("2026Q3", T0)))
    _pending(tmp_path, "2026Q3", T0 + pd.Timedelta(hours=1), b"new")  # --refit --fit-id 2026Q3, killed
    done = reconcile(tmp_path, _runs(("2026Q3", T0)))
    assert done.removed == ["2026Q3"] and done.promoted == []
    assert (tmp_path / "fits" / "2026Q3" / "energy_wh.nc").read_bytes() == b"old"
    # ... and a committed refit replaces them
    _pending(tmp_path, "2026Q3", T0 + pd.Timedelta(hours=2), b"new")
    reconcile(tmp_path, _runs(("2026Q3", T0 + pd.Timedelta(hours=2))))
    assert (tmp_path / "fits" / "2026Q3" / "energy_wh.nc").read_bytes() == b"new"


def test_a_replace_killed_halfway_is_completed(tmp_path):
    _pending(tmp_path, "2026Q3", T0, b"old")
    reconcile(tmp_path, _runs(("2026Q3", T0)))
    t1 = T0 + pd.Timedelta(hours=1)
    _pending(tmp_path, "2026Q3", t1, b"new")
    (tmp_path / "fits" / "2026Q3").rename(tmp_path / "fits" / f"{PENDING}-old-2026Q3")  # killed after step 1
    reconcile(tmp_path, _runs(("2026Q3", t1)))
    assert (tmp_path / "fits" / "2026Q3" / "energy_wh.nc").read_bytes() == b"new"
    assert not list((tmp_path / "fits").glob(f"{PENDING}*"))


def test_unreadable_marker_and_no_fit_runs_mean_orphans(tmp_path):
    path = _pending(tmp_path, "2026Q3", T0)
    (path / MARKER).write_text("{not json")
    junk = tmp_path / "fits" / PENDING / "stray.nc"
    junk.write_bytes(b"x")
    assert sorted(reconcile(tmp_path, None).removed) == ["2026Q3", "stray.nc"]
    assert json.dumps({}) and not (tmp_path / "fits" / PENDING).exists()
