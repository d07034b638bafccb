"""Warehouse build: a whole `tierpool build` of synth warehouses (Parquet sources) at the default sampler.

For each size, `tierpool synth --rows N` writes a project under benchmarks/work/warehouse_build/
(synth time is reported but excluded from the build), then two `tierpool build` subprocesses run:
a cold build that fits (settings from the project: tune 2000, draws 4000, chains 4 by default)
and a rebuild that must reuse the fit. For each build: wall time, time per phase from
target/run_results.json, the fit's compile/sampling seconds from fit_runs, and peak memory
(sum of the RSS of the build's process tree, polled from /proc every 50 ms, and the kernel's
ru_maxrss of the build process from os.wait4).

Goals (issue 4, item 9): 10M rows under 5 minutes on 2 cores with peak memory under 4 GB; a
reuse rebuild under 5 s at 10M.

Usage:
    python benchmarks/warehouse_build/run.py [--rows 1000000 10000000] [--write] [--note TEXT]
        [--fit-tune N --fit-draws N --fit-chains N]   # smoke runs only; results use the defaults
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import cpu_model, write_section  # noqa: E402
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / "benchmarks" / "work" / "warehouse_build"
SECTION = "## warehouse_build"
FIT_NODE = "hierarchical_fit"
PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss(root_pid: int) -> int:
    """Resident bytes of ``root_pid`` and all its descendants (0 for vanished processes)."""
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run_measured(cmd: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``cmd``, return exit code, wall seconds and peak memory (tree RSS and ru_maxrss)."""
    peak = 0
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        done = threading.Event()

        def poll() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss(proc.pid))
                done.wait(0.05)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        poller.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "exit_code": proc.returncode,
        "wall_s": round(wall, 2),
        "peak_tree_rss_mb": round(peak / 2**20, 1),
        "ru_maxrss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "log": str(log.relative_to(ROOT)),
    }


def phases(project: Path) -> dict[str, float]:
    """Seconds per phase from run_results.json (execution order: staging, fit, priors, tests)."""
    data = json.loads((project / "target" / "run_results.json").read_text())
    acc = {"staging_sql_s": 0.0, "fit_s": 0.0, "after_fit_sql_s": 0.0, "data_tests_s": 0.0}
    seen_fit = False
    for r in data["results"]:
        t = float(r.get("execution_time") or 0.0)
        if r["name"] == FIT_NODE:
            acc["fit_s"] += t
            seen_fit = True
        elif r["resource_type"] == "test":
            acc["data_tests_s"] += t
        else:
            acc["after_fit_sql_s" if seen_fit else "staging_sql_s"] += t
    out = {k: round(v, 2) for k, v in acc.items()}
    out["engine_elapsed_s"] = round(float(data.get("elapsed") or 0.0), 2)
    fit = next((r for r in data["results"] if r["name"] == FIT_NODE), {})
    out["fit_message"] = str(fit.get("message", ""))[:200]
    return out


def fit_run_stats(project: Path) -> dict[str, Any]:
    """The latest fit's settings, compile/sampling seconds, gate numbers (from fit_runs)."""
    import duckdb

    con = duckdb.connect(str(project / "target" / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.sql(
            "select fit_id, indicator, status, settings, compile_seconds, sampling_seconds, max_r_hat, "
            "min_ess_bulk, divergences, n_cells, n_obs from fit_runs "
            "where fit_id = (select fit_id from fit_runs order by finished_at desc limit 1) order by indicator"
        ).df()
        counts = {}
        for table in ("residuals", "rejected_rows", "priors"):
            try:
                counts[table] = con.execute(f"select count(*) from {table}").fetchall()[0][0]
            except duckdb.Error:  # e.g. priors not built when the gate rejected the first fit
                counts[table] = None
    finally:
        con.close()
    return {"fit_runs": json.loads(rows.to_json(orient="records")), "rows": counts}


def bench(rows: int, env: dict[str, str], fit_args: list[str], seed: int) -> dict[str, Any]:
    """Synth, cold build, reuse rebuild for one warehouse size."""
    project = WORK / f"rows_{rows}"
    shutil.rmtree(project, ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    tierpool = [sys.executable, "-m", "tierpool"]
    synth = run_measured([*tierpool, "synth", "--rows", str(rows), "--seed", str(seed), "--out", str(project)],
                         env, WORK / f"synth_{rows}.log")
    if synth["exit_code"] != 0:
        raise SystemExit(f"synth failed, see {synth['log']}")
    size_mb = sum(p.stat().st_size for p in (project / "data").rglob("*.parquet")) / 2**20
    build_cmd = [*tierpool, "build", "--project-dir", str(project), "--no-progress", *fit_args]
    result: dict[str, Any] = {"rows": rows, "synth_s": synth["wall_s"], "parquet_mb": round(size_mb, 1)}
    print(f"[{rows:,} rows] synth {synth['wall_s']} s; building (cold) ...", flush=True)
    cold = run_measured(build_cmd, env, WORK / f"build_cold_{rows}.log")
    cold.update(phases(project))
    cold.update(fit_run_stats(project))
    result["cold"] = cold
    print(f"[{rows:,} rows] cold build {cold['wall_s']} s (exit {cold['exit_code']}); rebuilding ...", flush=True)
    reuse = run_measured(build_cmd, env, WORK / f"build_reuse_{rows}.log")
    reuse.update(phases(project))
    result["reuse"] = reuse
    print(f"[{rows:,} rows] reuse rebuild {reuse['wall_s']} s: {reuse['fit_message']}", flush=True)
    return result


def _code_state() -> str:
    """HEAD commit and the src/ files modified in the working tree (the tree is shared)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    dirty = [line[3:] for line in git("status", "--porcelain", "--", "src").splitlines() if line.strip()]
    return f"commit {git('rev-parse', '--short', 'HEAD').strip()}" + (f", uncommitted edits in {', '.join(dirty)}" if dirty else "")


def markdown(results: list[dict[str, Any]], meta: dict[str, Any], note: str) -> str:
    """The '## warehouse_build' section of RESULTS.md."""
    lines = [
        SECTION, "",
        "`python benchmarks/warehouse_build/run.py` — `tierpool synth --rows N` (Parquet facts; synth time",
        "excluded), then `tierpool build` as a subprocess twice: a cold build that fits, and a rebuild that",
        f"reuses the fit. Sampler: {meta['sampler']}. Phases from target/run_results.json (node execution",
        "times; 'overhead' = wall - phases: interpreter start, imports, project load, compile checks,",
        "artifacts); compile/sampling from fit_runs (both indicators). Peak memory: RSS of the build's",
        "process tree polled every 50 ms (ru_maxrss of the build process in brackets).",
        "",
        "| rows | build | wall (s) | staging SQL | fit (compile + sampling) | priors etc. SQL | data tests | overhead | peak RSS (MB) | exit | fit node |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for kind in ("cold", "reuse"):
            b = r[kind]
            runs = b.get("fit_runs") or []
            comp = sum(float(x.get("compile_seconds") or 0) for x in runs)
            samp = sum(float(x.get("sampling_seconds") or 0) for x in runs)
            fit = f"{b['fit_s']:.1f}" + (f" ({comp:.1f} + {samp:.1f})" if runs else "")
            overhead = b["wall_s"] - b["staging_sql_s"] - b["fit_s"] - b["after_fit_sql_s"] - b["data_tests_s"]
            lines.append(
                f"| {r['rows']:,} | {kind} | **{b['wall_s']:.1f}** | {b['staging_sql_s']:.1f} | {fit} | "
                f"{b['after_fit_sql_s']:.1f} | {b['data_tests_s']:.1f} | {overhead:.1f} | "
                f"**{b['peak_tree_rss_mb']:.0f}** [{b['ru_maxrss_mb']:.0f}] | {b['exit_code']} | {b['fit_message'][:90]} |"
            )
    lines += ["", "Fit diagnostics of the cold builds (gate: max r_hat <= 1.01, min ess_bulk >= 400, 0 divergences):", ""]
    for r in results:
        for x in r["cold"].get("fit_runs") or []:
            lines.append(
                f"- {r['rows']:,} rows, {x['fit_id']} {x['indicator']}: {x['status']}, max r_hat {x['max_r_hat']:.4f}, "
                f"min ess_bulk {x['min_ess_bulk']:.0f}, divergences {x['divergences']}, {x['n_cells']} cells / "
                f"{x['n_obs']:,} residuals; synth {r['synth_s']:.0f} s, Parquet {r['parquet_mb']:.0f} MB"
            )
    lines += ["", f"Machine: {meta['machine']}; date {meta['date']}; code: {meta['code']}.", ""]
    if note:
        lines += [note.strip(), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fit-tune", type=int)
    parser.add_argument("--fit-draws", type=int)
    parser.add_argument("--fit-chains", type=int)
    parser.add_argument("--write", action="store_true", help="write the section into benchmarks/RESULTS.md")
    parser.add_argument("--note", default="", help="extra text for the section (e.g. machine load)")
    args = parser.parse_args()
    fit_args = [f"--fit-{k}={v}" for k, v in (("tune", args.fit_tune), ("draws", args.fit_draws),
                                              ("chains", args.fit_chains)) if v is not None]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    results = [bench(rows, env, fit_args, args.seed) for rows in args.rows]
    sampler = "project defaults (tune 2000, draws 4000, chains 4, target_accept 0.99, nutpie)" if not fit_args else " ".join(fit_args)
    cpu = cpu_model()
    meta = {"sampler": sampler, "date": dt.date.today().isoformat(), "code": _code_state(),
            "machine": f"{os.cpu_count()} CPUs (`nproc`), {cpu}; Python {platform.python_version()}"}
    (WORK / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str))
    text = markdown(results, meta, args.note)
    print(text)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
