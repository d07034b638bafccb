"""Engines: the same project built on DuckDB and on Spark (local[2]) in one run.

Two workloads: the demo project (a copy of this repository's project: CSV seeds, ~20k tier-2
rows) and a `tierpool synth --rows 1000000` warehouse (Parquet sources). Each is built cold on
the `dev` target (DuckDB) and on the `spark` target (the demo profile's Spark session mode,
local[2]) as subprocesses, one after the other, with the project's default sampler settings.
For each build: wall time, time per phase from target/run_results.json (staging SQL, fit,
SQL after the fit, data tests; 'overhead' = wall - engine elapsed: interpreter, imports, JVM
start, project load, compile checks) and peak memory of the process tree (the JVM included).
The Spark/DuckDB ratio is computed per phase in the same run.

Goal (issue 9): Spark within 3x DuckDB on the 1M build.

Usage:
    python benchmarks/engines/run.py [--rows 1000000] [--write] [--note TEXT]
        [--fit-tune N --fit-draws N --fit-chains N]   # smoke runs only
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py, _measure.py
from _common import cpu_model, write_section  # noqa: E402
from _measure import phases, run_measured, without_validation  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / "benchmarks" / "work" / "engines"
SECTION = "## engines"
PROJECT_PARTS = ("seeds", "sql", "python_models", "tests/data", "profiles.yml", "tierpool_project.yml")
PHASES = ("staging_sql_s", "fit_s", "after_fit_sql_s", "data_tests_s", "overhead_s")


def demo_project() -> Path:
    """A fresh copy of the repository's demo project."""
    project = WORK / "demo"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    for part in PROJECT_PARTS:
        src = ROOT / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, project / part)
    return without_validation(project)


def synth_project(rows: int, seed: int) -> Path:
    """A `tierpool synth` warehouse of ``rows`` tier-2 requests (Parquet sources)."""
    project = WORK / f"synth_{rows}"
    shutil.rmtree(project, ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "tierpool", "synth", "--rows", str(rows), "--seed", str(seed),
                    "--out", str(project)], check=True, capture_output=True)
    return without_validation(project)


def build(project: Path, target: str, env: dict[str, str], fit_args: list[str]) -> dict[str, Any]:
    """One cold build of ``project`` on ``target``: wall, phases, peak memory."""
    log = WORK / f"{project.name}_{target}.log"
    cmd = [sys.executable, "-m", "tierpool", "build", "--target", target, "--project-dir", str(project),
           "--no-progress", *fit_args]
    result = run_measured(cmd, env, log)
    result.update(phases(project))
    for key in ("series", "_timeline"):
        result.pop(key, None)
    result["overhead_s"] = round(result["wall_s"] - result["engine_elapsed_s"], 2)
    return result


def ratio(spark: float, duck: float) -> str:
    return f"{spark / duck:.2f}x" if duck > 0 else "n/a"


def table(results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    lines = ["| workload | engine | wall (s) | staging SQL | fit | SQL after fit | data tests | overhead "
             "| peak RSS (MB) | exit |", "|---|---|---|---|---|---|---|---|---|---|"]
    for workload, by_engine in results.items():
        for engine in ("duckdb", "spark"):
            r = by_engine[engine]
            cells = " | ".join(f"{r[p]:.1f}" for p in PHASES)
            lines.append(f"| {workload} | {engine} | **{r['wall_s']:.1f}** | {cells} | "
                         f"{r['peak_tree_rss_mb']:.0f} | {r['exit_code']} |")
        d, s = by_engine["duckdb"], by_engine["spark"]
        cells = " | ".join(ratio(s[p], d[p]) for p in PHASES)
        lines.append(f"| {workload} | Spark / DuckDB | **{ratio(s['wall_s'], d['wall_s'])}** | {cells} | "
                     f"{ratio(s['peak_tree_rss_mb'], d['peak_tree_rss_mb'])} | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="Write the section in benchmarks/RESULTS.md.")
    parser.add_argument("--note", default="", help="A line added under the table.")
    parser.add_argument("--threads", type=int, default=1, help="Nodes built at once (tierpool build --threads).")
    for opt in ("--fit-tune", "--fit-draws", "--fit-chains"):
        parser.add_argument(opt, type=int, default=None)
    args = parser.parse_args()
    fit_args = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k.startswith("fit_") and v]
    fit_args.append(f"--threads={args.threads}")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    projects = {"demo (20k CSV)": demo_project(), f"synth {args.rows:,}": synth_project(args.rows, args.seed)}
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for workload, project in projects.items():
        results[workload] = {}
        for engine, target in (("duckdb", "dev"), ("spark", "spark")):
            results[workload][engine] = r = build(project, target, env, fit_args)
            print(f"{workload} {engine}: exit {r['exit_code']}, {r['wall_s']} s, {r['fit_message']}", flush=True)
    floor = subprocess.run([sys.executable, str(HERE / "statement_floor.py")], env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    load = os.getloadavg()
    text = [
        SECTION, "",
        f"`python benchmarks/engines/run.py --threads {args.threads} --write` — the same project built cold on DuckDB (`dev`) and on "
        "Spark (`spark`: session mode, local[2], Derby metastore, 4 shuffle partitions) as subprocesses, "
        "one after the other; sampler: " + (" ".join(fit_args) or "project defaults (tune 2000, draws 4000, "
        "chains 4)") + "; hold-out validation off. Phases in seconds from run_results.json (sums of node "
        "times: with threads > 1 they overlap); 'overhead' = wall − engine elapsed "
        "(interpreter, imports, JVM start, project load, compile checks); peak RSS of the process tree, "
        "JVM included.", "",
        *table(results), "",
        f"Machine: {os.cpu_count()} CPUs, {cpu_model()}; Python {platform.python_version()}; "
        f"date {dt.date.today()}; code: commit {commit}; load average at the end {load[0]:.1f}.",
        "", "Fixed cost per operation (`benchmarks/engines/statement_floor.py`, same machine, right after; "
        "median of 7 after a warm-up):", "", floor,
    ]
    if args.note:
        text += ["", args.note]
    print("\n".join(text))
    if args.write:
        write_section(SECTION, "\n".join(text))


if __name__ == "__main__":
    main()
