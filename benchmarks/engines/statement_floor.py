"""The fixed cost of one adapter operation on each engine: what a build pays per statement.

A build issues a few statements per node (stage, count, publish) and one query per batch of
tests. On a tiny table the time of each is its floor: planning, scheduling and catalog work,
not rows. Both engines through tierpool's adapters, in this process: DuckDB on a fresh file,
Spark in the demo profile's session mode (local[2], Derby metastore) on a fresh database,
after a warm-up. Each operation is timed `--reps` times; the median is reported.

Usage:
    python benchmarks/engines/statement_floor.py [--reps 7]   # prints a markdown table
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tierpool.adapters import adapter_for
from tierpool.core.config import target_from_output

TESTS = [f"select * from floor_t where k = {-i}" for i in range(10)]  # ten passing tests


def operations(adapter: Any) -> dict[str, Callable[[], Any]]:
    """The operations a build repeats, each on a 3-row table."""
    select = "select * from (values (1, 'a'), (2, 'b'), (3, 'c')) t(k, v)"
    return {
        "query `select 1` (fetch)": lambda: adapter.fetch("select 1 as one"),
        "count(*) of a table": lambda: adapter.count("select * from floor_t"),
        "build a table (stage, count, swap)": lambda: adapter.build_table("floor_t", select, "table"),
        "create a view (analyse, replace)": lambda: adapter.create_view("floor_v", "select k from floor_t", "view"),
        "10 data tests, batched": lambda: adapter.count_each(TESTS),
        "10 data tests, one query each": lambda: [adapter.count(sql) for sql in TESTS],
    }


def measure(engine: str, output: dict[str, Any], root: Path, reps: int) -> dict[str, float]:
    adapter = adapter_for(target_from_output(engine, output, root, root / "profiles.yml"), root)
    started = time.perf_counter()
    adapter.open()
    adapter.build_table("floor_t", "select * from (values (1, 'a')) t(k, v)", None)
    adapter.create_view("floor_v", "select k from floor_t", None)
    times = {"connect + first table and view (cold)": time.perf_counter() - started}
    for name, op in operations(adapter).items():
        op()  # warm-up: the first run of a statement shape pays code generation
        runs = []
        for _ in range(reps):
            begun = time.perf_counter()
            op()
            runs.append(time.perf_counter() - begun)
        times[name] = statistics.median(runs)
    adapter.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        duck = measure("duckdb", {"type": "duckdb", "path": str(root / "w.duckdb")}, root, args.reps)
        spark = measure("spark", {"type": "spark", "method": "session", "master": "local[2]",
                                  "schema": "floor", "warehouse_dir": str(root / "spark" / "warehouse"),
                                  "metastore_dir": str(root / "spark" / "metastore"),
                                  "conf": {"spark.sql.shuffle.partitions": 4}}, root, args.reps)
    lines = ["| operation (3-row table) | DuckDB (ms) | Spark local[2] (ms) | Spark / DuckDB |",
             "|---|---|---|---|"]
    for name in duck:
        lines.append(f"| {name} | {duck[name] * 1e3:.1f} | {spark[name] * 1e3:.0f} | "
                     f"{spark[name] / duck[name]:.0f}x |")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
