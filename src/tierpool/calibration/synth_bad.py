"""Deliberately bad fact rows, one handful per kind of DESIGN §4, with their expected fate.

Every row built here must end up in ``rejected_rows`` with the reason recorded in
the ``expected`` frame (the staging SQL gives each row the FIRST reason that applies,
in the order documented in sql/staging/staging.yml). Duplicates are built by
copying valid rows of the first chunk, so the original row is rejected too (the
staging rejects every copy of a duplicated key: with two conflicting estimates
there is no telling which one is right).

Beyond row-level faults, :data:`CONSTANT_SERIES_ROWS` tier-3 rows of one cell (indicator ×
model × region) with one and the same measurement stand for a stuck meter: the staging
quarantines the whole series as 'constant_series' (docs/data-contract.md). Their tier-2
rows are valid and stay staged. The cell is one no valid tier-3 row reaches
(:data:`CONSTANT_SERIES_MODEL` is never measured), so the series is constant as a whole.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from tierpool.calibration.synth_facts import TIER2_SCHEMA, TIER3_SCHEMA

UNKNOWN_MODEL = "gpt-7-omega"
UNKNOWN_REGION = "moon-base-1"
UNKNOWN_INDICATOR = "water_l"  # not in the indicator catalogue (synth_catalogue.INDICATOR_CATALOGUE)
TOO_LARGE = 1e300  # finite and positive, far above every indicator's max_value
TOO_SMALL = 1e-300  # finite and positive, far below every indicator's min_value
CONSTANT_SERIES_MODEL = "llama-3.1-405b"  # TIER3_PLAN 'none': no valid tier-3 row shares its cells
CONSTANT_SERIES_ROWS = 10  # >= the staging's threshold of 3 identical measurements
T2, T3 = "tier2_estimates", "tier3_measurements"


def _row(table: pa.Table, i: int) -> dict:
    return {name: table.column(name)[i].as_py() for name in table.column_names}


def _keys(table: pa.Table) -> set[tuple[int, str]]:
    return set(zip(table.column("request_id").to_pylist(), table.column("indicator").to_pylist()))


def bad_rows(tier2: pa.Table, tier3: pa.Table, next_id: int) -> tuple[pa.Table, pa.Table, pd.DataFrame]:
    """Build the bad rows from the first chunk of valid facts.

    Args:
        tier2: the first chunk's tier-2 rows (source of duplicates and templates).
        tier3: the first chunk's tier-3 rows.
        next_id: first unused request_id.

    Returns:
        (tier2_bad, tier3_bad, expected) where ``expected`` has one row per input row
        that must be rejected: source, indicator, request_id, reason.
    """
    t2_rows, t3_rows, expected = [], [], []
    template = _row(tier2, 0)
    when = template["requested_at"]

    def add_t2(rid: int, reason: str, indicator: str = "energy_wh", **changes: object) -> None:
        t2_rows.append({**template, "request_id": rid, "indicator": indicator, **changes})
        expected.append((T2, indicator, rid, reason))

    def add_t3(rid: int, reason: str, indicator: str, measurement: float | None) -> None:
        t3_rows.append({"request_id": rid, "indicator": indicator, "measured_at": when,
                        "measurement": measurement})
        expected.append((T3, indicator, rid, reason))

    add_t2(next_id, "non_positive_value", estimate=0.0)
    add_t2(next_id + 1, "non_positive_value", "gco2e", estimate=-3.5)
    add_t2(next_id + 2, "non_finite_value", estimate=float("nan"))
    add_t2(next_id + 3, "non_finite_value", "gco2e", estimate=float("inf"))
    add_t2(next_id + 4, "missing_value", estimate=None)
    add_t2(next_id + 5, "unknown_model", model_id=UNKNOWN_MODEL)
    add_t2(next_id + 6, "unknown_model", "gco2e", model_id=UNKNOWN_MODEL)
    add_t2(next_id + 7, "unknown_region", region_id=UNKNOWN_REGION)
    add_t2(next_id + 8, "unknown_region", "gco2e", region_id=UNKNOWN_REGION)
    # the indicator catalogue: unknown indicator, value outside the plausible range
    add_t2(next_id + 9, "unknown_indicator", UNKNOWN_INDICATOR, estimate=2.0)
    add_t2(next_id + 10, "out_of_range", estimate=TOO_LARGE)
    add_t2(next_id + 11, "out_of_range", "gco2e", estimate=TOO_SMALL)
    add_t3(next_id + 9, "unknown_indicator", UNKNOWN_INDICATOR, 1.5)
    add_t3(next_id + 10, "tier2_rejected", "energy_wh", 1.0)  # its tier-2 row is out of range
    add_t3(next_id + 5, "tier2_rejected", "energy_wh", 1.0)  # its tier-2 row is rejected
    add_t3(next_id + 100, "no_tier2_match", "energy_wh", 1.0)
    add_t3(next_id + 101, "no_tier2_match", "gco2e", 2.0)

    measured = _keys(tier3)
    t2_ids = tier2.column("request_id").to_pylist()
    t2_ind = tier2.column("indicator").to_pylist()
    measured_idx = [i for i, key in enumerate(zip(t2_ids, t2_ind)) if key in measured]
    unmeasured_idx = [i for i, key in enumerate(zip(t2_ids, t2_ind)) if key not in measured]

    # tier-2 duplicates of measured requests: both copies rejected, their tier-3 row too
    dup2 = measured_idx[:2]
    for j, i in enumerate(dup2):
        row = _row(tier2, i)
        if j == 1:
            row["estimate"] *= 1.1  # a conflicting copy, not just a repeated line
        t2_rows.append(row)
        expected += [(T2, row["indicator"], row["request_id"], "duplicate_key")] * 2
        expected.append((T3, row["indicator"], row["request_id"], "tier2_rejected"))

    # bad tier-3 values for requests that have a valid tier-2 row and no tier-3 row
    for i, (value, reason) in zip(unmeasured_idx[:6], [
        (0.0, "non_positive_value"), (-1.0, "non_positive_value"),
        (float("nan"), "non_finite_value"), (float("-inf"), "non_finite_value"),
        (TOO_LARGE, "out_of_range"), (TOO_SMALL, "out_of_range"),
    ]):
        add_t3(t2_ids[i], reason, t2_ind[i], value)

    # tier-3 duplicates (of keys not already duplicated at tier 2)
    taken = {(t2_ids[i], t2_ind[i]) for i in dup2}
    picks = [i for i in range(tier3.num_rows) if
             (tier3.column("request_id")[i].as_py(), tier3.column("indicator")[i].as_py()) not in taken][:2]
    for i in picks:
        row = _row(tier3, i)
        t3_rows.append(row)
        expected += [(T3, row["indicator"], row["request_id"], "duplicate_key")] * 2

    # a stuck meter: one cell's measurements all identical (valid tier-2 rows, one estimate)
    for j in range(CONSTANT_SERIES_ROWS):
        rid = next_id + 200 + j
        t2_rows.append({**template, "request_id": rid, "indicator": "energy_wh",
                        "model_id": CONSTANT_SERIES_MODEL})
        add_t3(rid, "constant_series", "energy_wh", 0.25)

    frame = pd.DataFrame(expected, columns=["source", "indicator", "request_id", "reason"])
    return (pa.Table.from_pylist(t2_rows, schema=TIER2_SCHEMA),
            pa.Table.from_pylist(t3_rows, schema=TIER3_SCHEMA), frame)
