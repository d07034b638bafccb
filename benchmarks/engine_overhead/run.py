"""Engine overhead: `tierpool build` vs a plain Python script running the same SQL in DuckDB.

Generates a project with 2 seeds and 50 chained SQL models (table materialization)
under benchmarks/work/engine_overhead, times both as subprocesses (median of 5
after one warm-up each) and appends the result to benchmarks/RESULTS.md under
"## engine_overhead".

Usage:
    python benchmarks/engine_overhead/run.py [--models 50] [--repeats 5] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import cpu_model, write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / "benchmarks" / "work" / "engine_overhead"
SEED_ROWS = 2000

PLAIN_SCRIPT = '''"""Plain DuckDB: load the two seeds and run the 50 model SELECTs as tables, in order."""
import sys
from pathlib import Path

import duckdb

root = Path(sys.argv[1])
con = duckdb.connect(str(root / "target" / "plain.duckdb"))
for seed in ("regions", "requests"):
    con.execute(
        f"create or replace table {seed} as select * from read_csv('{root}/seeds/{seed}.csv', header=true)"
    )
for line in (root / "order.txt").read_text().split():
    sql = (root / "sql" / f"{line}.sql").read_text()
    con.execute("begin")
    con.execute(f"create or replace table {line} as {sql}")
    con.execute("commit")
con.close()
'''


def model_sql(i: int) -> str:
    """Model i reads model i-1 (model 1 joins the two seeds)."""
    if i == 1:
        return (
            "select r.request_id, r.region_id, g.region_class, r.energy_wh as value\n"
            "from requests as r join regions as g on g.region_id = r.region_id\n"
        )
    prev = f"m{i - 1:02d}"
    return (
        "select request_id, region_id, region_class, value * 1.01 + 0.5 as value\n"
        f"from {prev}\nwhere value is not null\n"
    )


def generate(models: int) -> Path:
    """Write the benchmark project and return its directory."""
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "seeds").mkdir(parents=True)
    (WORK / "sql").mkdir()
    regions = ["region_id,region_class"] + [f"r{i},c{i % 4}" for i in range(50)]
    (WORK / "seeds" / "regions.csv").write_text("\n".join(regions) + "\n")
    requests = ["request_id,region_id,energy_wh"] + [
        f"q{i},r{i % 50},{1 + (i * 7919) % 1000 / 10}" for i in range(SEED_ROWS)
    ]
    (WORK / "seeds" / "requests.csv").write_text("\n".join(requests) + "\n")
    names = [f"m{i:02d}" for i in range(1, models + 1)]
    for i, name in enumerate(names, start=1):
        (WORK / "sql" / f"{name}.sql").write_text(model_sql(i))
    config = "\n".join(f"  - name: {n}\n    config: {{materialized: table}}" for n in names)
    (WORK / "sql" / "models.yml").write_text(f"models:\n{config}\n")
    (WORK / "order.txt").write_text("\n".join(names) + "\n")
    (WORK / "plain.py").write_text(PLAIN_SCRIPT)
    (WORK / "target").mkdir()
    return WORK


def tierpool_command(project: Path, *extra: str) -> list[str]:
    """The real console script when installed, else `python -m tierpool`."""
    exe = shutil.which("tierpool")
    base = [exe] if exe else [sys.executable, "-m", "tierpool"]
    return [*base, "build", "--project-dir", str(project), *extra]


def time_command(cmd: list[str], repeats: int, before: tuple[Path, ...] = ()) -> list[float]:
    """Wall-clock seconds of each run (after one untimed warm-up); fails loudly on error.

    ``before``: files deleted before each run (the caches, for cold runs).
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    times = []
    for i in range(repeats + 1):
        for path in before:
            path.unlink(missing_ok=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
        if i:
            times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    load_before = os.getloadavg()
    project = generate(args.models)
    plain = time_command([sys.executable, str(project / "plain.py"), str(project)], args.repeats)
    # --full-refresh: every run executes all 50 models, the same work as the plain script
    # (without it, unchanged nodes are skipped: reported separately below)
    tier = time_command(tierpool_command(project, "--full-refresh"), args.repeats)
    cold = time_command(tierpool_command(project, "--full-refresh"), args.repeats,
                        before=(project / "target" / "compile_ok.json",))
    uncached = time_command(tierpool_command(project, "--full-refresh"), args.repeats,
                            before=(project / "target" / "compile_ok.json",
                                    project / "target" / "project_cache.pkl"))
    unchanged = time_command(tierpool_command(project), args.repeats)
    ratio = statistics.median(tier) / statistics.median(plain)
    load_after = os.getloadavg()
    fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    text = f"""## engine_overhead

`python benchmarks/engine_overhead/run.py` — 2 seeds ({SEED_ROWS} + 50 rows) and {args.models}
chained SQL models (table materialization). `tierpool build` (the real CLI, subprocess,
including project loading, compile checks, the lock and artifacts) against a plain Python
script running the same SQL through DuckDB (subprocess). Median of {args.repeats} runs after
one warm-up each.

| | median (s) | runs (s) |
|---|---|---|
| plain DuckDB script | {statistics.median(plain):.2f} | {fmt(plain)} |
| `tierpool build --full-refresh` (all 50 models run) | {statistics.median(tier):.2f} | {fmt(tier)} |
| same, compile checks forced (compile_ok.json deleted) | {statistics.median(cold):.2f} | {fmt(cold)} |
| same, nothing cached (compile_ok.json and project_cache.pkl deleted) | {statistics.median(uncached):.2f} | {fmt(uncached)} |
| `tierpool build`, nothing changed (state-based skipping) | {statistics.median(unchanged):.2f} | {fmt(unchanged)} |

Ratio tierpool / plain for the same work: **{ratio:.2f}x** (goal <= 1.3x); with compile checks re-run every
time: {statistics.median(cold) / statistics.median(plain):.2f}x; with nothing cached (the first build
after any edit): {statistics.median(uncached) / statistics.median(plain):.2f}x. The compile checks (sqlglot
`qualify` over every model, ~5 ms each) are skipped when no project file changed since they
last passed (fingerprint of paths, sizes and mtimes in target/compile_ok.json), and the loaded
project is unpickled from target/project_cache.pkl under the same fingerprint (plus the project
dir, version, resolved target and expanded tierpool_project.yml), which is the steady state of
repeated builds; any edit re-runs both.

Where tierpool's extra time goes (profiled in-process on this project, 2026-11-21, not
re-measured by this script): importing duckdb ~0.05-0.08 s (the plain script pays it too);
with the project cache, importing click, yaml and tierpool's modules plus unpickling the
project ~0.06 s, and sqlglot is not imported at all (before the cache: `load_project`
~0.2 s, of which sqlglot parsing the 50 files ~0.14 s, plus ~0.06 s importing sqlglot).
This environment sets PYTHONDONTWRITEBYTECODE=1, so tierpool's ~25 modules are compiled
from source on every run (~0.02-0.03 s) where an ordinary install would read .pyc files.
Compile checks ~0.25 s (skipped when cached). Node execution is one transaction per node,
as in the plain script, after reading the catalog once per build; the rest of the gap is
per-node bookkeeping (relation-kind lookups, state fingerprints) and the artifacts
(manifest.json, run_results.json, state.json).
pymc/arviz/nutpie/pandas are not imported by `build` unless a Python model needs them.
Adapter seam (tierpool.adapters, which replaced engine.py/seeds.py): node execution goes through
`DuckDBAdapter` with the same statements per node as before (one transaction, the catalog read
once per build). Its first version validated every profiles.yml output with pydantic, and
importing pydantic plus building the models cost ~0.1 s of CPU per command (~+0.25x on this
ratio); a plain DuckDB output is now validated without pydantic (`config._plain_duckdb`), the
pydantic models (`tierpool.core.profile_schema`) load only for a Spark output or to report an error,
and neither pydantic, sqlglot nor pyspark is imported by a DuckDB `build` with the project cache.
Machine: {os.cpu_count()} CPUs (`nproc`), {cpu_model()}; Python {platform.python_version()};
date {dt.date.today().isoformat()}. The machine was shared with other work while measuring
(1-minute load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; 2 CPUs).
"""
    print(text)
    if not args.no_write:
        write_section("## engine_overhead", text)


if __name__ == "__main__":
    main()
