"""Running data tests: each test's SQL selects failing rows; zero rows is a pass.

A failure reports how many rows failed, on which relation, by which rule, and up
to five example rows. ``warn`` severity turns a failure into a warning (exit 0).
"""

from __future__ import annotations

import datetime as dt
import decimal
import time
from collections import Counter
from collections.abc import Collection
from typing import Any

from tierpool.adapters import Adapter
from tierpool.core.nodes import DataTest
from tierpool.core.results import NodeResult
from tierpool.core.sql import read_from

MAX_EXAMPLES = 5


def _jsonable(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime, dt.time, decimal.Decimal)):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN is not valid JSON
        return None
    return value


def describe_rule(test: DataTest) -> str:
    """A short description of what the test checks, e.g. ``not_null(model_id)``."""
    spec = test.spec
    if spec is None:
        return f"singular test {test.path.name if test.path else test.name}"
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(spec.args.items()))
    target = spec.column or spec.relation
    rule = f"{spec.kind}({target}{', ' + args if args else ''})"
    return f"{rule} where {spec.where}" if spec.where else rule


def run_data_tests(
    adapter: Adapter, tests: list[DataTest], staged: dict[str, str] | None = None,
    views: Collection[str] = (),
) -> list[NodeResult]:
    """Run several data tests; engines with a high per-query cost count them in one query.

    If the combined query fails, each test runs alone so the one that cannot run is named.
    Each test's execution_time is its share of the combined count plus its own examples.

    Args:
        views: Relations that are views: where the engine asks for it, a view many of the
            tests read is read from a snapshot of its rows (see ``Adapter.test_snapshots``).
    """
    if len(tests) < 2 or not adapter.batches_tests:
        return [run_data_test(adapter, t, staged) for t in tests]
    started = time.perf_counter()
    with adapter.test_snapshots(_snapshotted(adapter, tests, views), staged or {}) as visible:
        return _counted_together(adapter, tests, visible, started)


def _snapshotted(adapter: Adapter, tests: list[DataTest], views: Collection[str]) -> list[str]:
    """The views at least ``adapter.snapshot_min_tests`` of ``tests`` read."""
    least = adapter.snapshot_min_tests
    if least is None:
        return []
    readers = Counter(rel for t in tests for rel in {*t.depends_on, *t.attached_to} if rel in views)
    return sorted(view for view, n in readers.items() if n >= least)


def _counted_together(
    adapter: Adapter, tests: list[DataTest], visible: dict[str, str], started: float
) -> list[NodeResult]:
    sqls = [read_from(t.sql, visible) for t in tests]
    try:
        counts = adapter.count_each(sqls)
    except Exception:
        return [run_data_test(adapter, t, visible) for t in tests]
    share = (time.perf_counter() - started) / len(tests)
    results = []
    for test, sql, failures in zip(tests, sqls, counts, strict=True):
        result = _result(test)
        begun = time.perf_counter()
        try:
            _record_failures(adapter, test, sql, failures, result)
        except Exception as exc:
            _record_error(result, exc)
        result.execution_time = share + time.perf_counter() - begun
        results.append(result)
    return results


def _result(test: DataTest) -> NodeResult:
    relation = ", ".join(test.attached_to) or ", ".join(test.depends_on)
    return NodeResult(name=test.name, kind="test", status="pass", relation=relation)


def _record_failures(adapter: Adapter, test: DataTest, sql: str, failures: int, result: NodeResult) -> None:
    result.failures = failures
    if failures:
        examples = adapter.fetch(sql, limit=MAX_EXAMPLES)
        result.examples = [
            {c: _jsonable(v) for c, v in zip(examples.columns, row)} for row in examples.rows
        ]
        result.status = "warn" if test.severity == "warn" else "fail"
        result.message = f"{failures} failing row(s) in {result.relation}: {describe_rule(test)}"


def _record_error(result: NodeResult, exc: Exception) -> None:
    result.status = "error"
    result.message = f"test SQL failed: {str(exc).splitlines()[0]}"


def run_data_test(adapter: Adapter, test: DataTest, staged: dict[str, str] | None = None) -> NodeResult:
    """Run one data test and return its result (never raises for SQL errors).

    Args:
        staged: Relations to read under another name (new versions not yet published).

    Returns:
        A NodeResult with status pass, fail (error severity), warn or error.
    """
    started = time.perf_counter()
    result = _result(test)
    try:
        sql = read_from(test.sql, staged or {})
        _record_failures(adapter, test, sql, adapter.count(sql), result)
    except Exception as exc:  # a test that cannot run is an error, not a crash
        _record_error(result, exc)
    result.execution_time = time.perf_counter() - started
    return result
