"""Incremental models: one more day of tier-2 estimates into an incremental `tier2_calibrated`.

`tierpool synth --rows N` writes a warehouse (Parquet facts; synth time excluded) and a cold
`tierpool build` builds it with a small sampler (the fit is not what is measured: only its
priors must be published). Then, for each of ``--days`` repetitions:

1. one more day of tier-2 estimates is written as a new Parquet file next to the others
   (data/tier2/day-K.parquet): requests drawn as synth draws them (same catalogue, popularity,
   regions and estimate model, request ids above every id in the data; no tier-3 row, so the
   fit and its priors stay as they are), ``requested_at`` uniform over the day after
   the latest one in the data, about N / 273 rows (synth spreads N rows over 273 days);
2. `tierpool build --exclude tier2_calibrated` brings everything upstream up to date
   (tier2_checked is a table over all the facts; this is reported, not compared);
3. `tierpool build --select tier2_calibrated` — the incremental build (its message must say
   "incremental: K new rows");
4. `tierpool build --select tier2_calibrated --full-refresh` — the full rebuild of the same node
   on the same data (the next day's incremental build starts from its table).

Reported per repetition, from target/run_results.json and the subprocess: the node's time
(execution_time: the write, without its data tests), its data tests' time (the error tests
audit the whole 10M-row table before it is published, in both builds), and the command's wall
time. The ratio incremental / full is taken within each repetition. Afterwards the filtered
query is EXPLAINed against the warehouse to check that the requested_at filter reaches the
scan of tier2_checked (the table under the stg_tier2 view).

Goal (issue 13, item 4): the incremental build of tier2_calibrated at most 10% of a full rebuild
on a 10M-row warehouse.

Usage:
    python benchmarks/incremental/run.py [--rows 10000000] [--days 3] [--seed 1] [--write]
        [--reuse-synth] [--target dev] [--template DIR] [--note TEXT]
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
import time
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import cpu_model, write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / "benchmarks" / "work" / "incremental"
SECTION = "## incremental"
NODE = "tier2_calibrated"
# A small sampler: the fit only has to publish priors (gate: r_hat, ESS >= 400, no divergences).
FIT_VARS = {"tune": 500, "draws": 1000, "chains": 2}
DAY_US = 86_400_000_000


def tierpool(project: Path, *args: str, log: Path) -> dict[str, Any]:
    """Run ``tierpool <args>`` as a subprocess; wall seconds, exit code and run_results.json."""
    cmd = [sys.executable, "-m", "tierpool", *args, "--project-dir", str(project), "--no-progress"] \
        if args[0] == "build" else [sys.executable, "-m", "tierpool", *args, "--project-dir", str(project)]
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    results = json.loads((project / "target" / "run_results.json").read_text())["results"]
    return {"exit_code": code, "wall_s": wall, "results": results, "log": str(log.relative_to(ROOT))}


def node_times(run: dict[str, Any]) -> dict[str, Any]:
    """The node's result and the time of its data tests."""
    node = next(r for r in run["results"] if r["name"] == NODE)
    tests = sum(float(r.get("execution_time") or 0) for r in run["results"] if r["resource_type"] == "test")
    return {"node_s": float(node["execution_time"]), "tests_s": tests, "wall_s": run["wall_s"],
            "rows": node.get("rows"), "message": node.get("message", ""), "status": node["status"]}


def synth_project(rows: int, seed: int, reuse: bool, template: Path) -> tuple[Path, float]:
    """A synth project (reused with ``reuse`` when made with the same rows and seed), with the
    SQL, Python models, singular tests and vars of ``template`` (default: this repository)."""
    import yaml

    project = WORK / f"rows_{rows}"
    marker = project / ".benchmark_synth"
    if reuse and marker.is_file() and json.loads(marker.read_text()) == {"rows": rows, "seed": seed}:
        print(f"reusing {project}", flush=True)
        for day in (project / "data" / "tier2").glob("day-*.parquet"):
            day.unlink()
        shutil.rmtree(project / "target", ignore_errors=True)
        for rel in ("sql", "python_models", "tests/data"):  # the code under test, refreshed
            shutil.rmtree(project / rel / "__pycache__", ignore_errors=True)
        synth_s = float("nan")
    else:
        shutil.rmtree(project, ignore_errors=True)
        WORK.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tierpool", "synth", "--rows", str(rows), "--seed", str(seed),
                        "--out", str(project)], check=True, stdout=subprocess.DEVNULL)
        synth_s = time.perf_counter() - started
        marker.write_text(json.dumps({"rows": rows, "seed": seed}))
    from tierpool.calibration import synth

    sources = (project / synth.SOURCES_YML).read_text()
    for rel in ("sql", "python_models", "tests/data"):
        shutil.rmtree(project / rel, ignore_errors=True)
        shutil.copytree(template / rel, project / rel, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (project / synth.SOURCES_YML).write_text(sources)
    config = yaml.safe_load((template / "tierpool_project.yml").read_text())
    config.setdefault("vars", {}).setdefault("fit", {}).update(FIT_VARS)
    config["vars"].pop("validation", None)  # hold-out refits: not what is measured here
    (project / "tierpool_project.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return project, synth_s


def one_more_day(project: Path, seed: int, day: int) -> int:
    """Write data/tier2/day-<day>.parquet: one more day of tier-2 estimates; returns its rows."""
    import duckdb
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tierpool.calibration import synth
    from tierpool.calibration.synth_facts import SPAN_US, build_catalogue, request_chunk

    con = duckdb.connect()
    glob = str(project / "data" / "tier2" / "*.parquet")
    max_at = con.execute(f"select max(requested_at) from read_parquet('{glob}')").fetchone()[0]
    # new requests: ids above every tier-2 AND tier-3 id (synth's orphan tier-3 rows have ids
    # no tier-2 row has; reusing one would give that measurement a tier-2 row, new residuals
    # and a refit)
    max_id = con.execute(
        f"select max(request_id) from (select request_id from read_parquet('{glob}') union all "
        f"select request_id from read_parquet('{project / 'data' / 'tier3' / '*.parquet'}'))").fetchone()[0]
    con.close()
    truths = synth._truths(seed)
    base_rows = json.loads((project / ".benchmark_synth").read_text())["rows"]
    n_requests = max(1, round(base_rows / len(truths) * DAY_US / SPAN_US))
    tier2, _ = request_chunk(100_000 + day, int(max_id) + 1, n_requests, seed, truths, build_catalogue(seed))
    start = np.datetime64(max_at.date() + dt.timedelta(days=1), "us")
    rng = np.random.default_rng([seed, 13, day])
    at = start + rng.integers(0, DAY_US, n_requests).astype("timedelta64[us]")
    column = tier2.schema.get_field_index("requested_at")
    tier2 = tier2.set_column(column, "requested_at", pa.array(np.tile(at, len(truths)), pa.timestamp("us")))
    pq.write_table(tier2, project / "data" / "tier2" / f"day-{day}.parquet")
    return tier2.num_rows


def explain_pushdown(project: Path) -> str:
    """EXPLAIN the incremental query against the warehouse: the filter on the scan of tier2_checked."""
    import duckdb

    from tierpool.core import incremental as inc
    from tierpool.core.project import load_project

    node = load_project(project).nodes[NODE]
    con = duckdb.connect(str(project / "target" / "warehouse.duckdb"), read_only=True)
    try:
        text, type_name = con.execute(f"select max(requested_at)::varchar, typeof(max(requested_at)) from {NODE}").fetchone()
        since = f"CAST('{text}' AS {type_name})"
        sql = inc.filter_reads(node.sql, ["stg_tier2"], inc.predicate("requested_at", since))
        plan = json.loads(con.execute(f"EXPLAIN (FORMAT json) {sql}").fetchall()[0][1])
    finally:
        con.close()

    def scans(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found = []
        for n in nodes:
            if n.get("name") == "SEQ_SCAN":
                found.append(n.get("extra_info", {}))
            found += scans(n.get("children", []))
        return found

    for info in scans(plan):
        filters = info.get("Filters", "")
        filters = " AND ".join(filters) if isinstance(filters, list) else str(filters)
        if str(info.get("Table", "")).endswith(".tier2_checked"):
            if "requested_at >=" in filters:
                return f"yes, the scan of tier2_checked filters {filters.strip()}"
            return f"NO: the scan of tier2_checked filters only {filters or 'nothing'}"
    return "NO: no scan of tier2_checked in the plan"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target", default="dev", help="dev (DuckDB) or spark (the demo profile's target)")
    parser.add_argument("--reuse-synth", action="store_true")
    parser.add_argument("--write", action="store_true", help="write the section of benchmarks/RESULTS.md")
    parser.add_argument("--template", type=Path, default=ROOT,
                        help="project whose sql/, python_models/, tests/data/ and vars are used "
                             "(default: this repository)")
    parser.add_argument("--note", default="")
    args = parser.parse_args()

    project, synth_s = synth_project(args.rows, args.seed, args.reuse_synth, args.template.resolve())
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    target = ["--target", args.target]
    print(f"cold build of {project} ...", flush=True)
    cold = tierpool(project, "build", *target, log=logs / "cold.log")
    if cold["exit_code"] != 0:
        raise SystemExit(f"cold build failed (exit {cold['exit_code']}), see {cold['log']}")
    cold_node = node_times(cold)
    print(f"cold build {cold['wall_s']:.1f} s; {NODE}: {cold_node['node_s']:.2f} s ({cold_node['message']})",
          flush=True)
    reps = []
    for day in range(1, args.days + 1):
        new = one_more_day(project, args.seed, day)
        upstream = tierpool(project, "build", *target, "--exclude", NODE, log=logs / f"day{day}_upstream.log")
        incremental = tierpool(project, "build", *target, "--select", NODE, log=logs / f"day{day}_incremental.log")
        full = tierpool(project, "build", *target, "--select", NODE, "--full-refresh",
                        log=logs / f"day{day}_full.log")
        for run in (upstream, incremental, full):
            if run["exit_code"] != 0:
                raise SystemExit(f"a build failed (exit {run['exit_code']}), see {run['log']}")
        fit = next((r.get("message", "") for r in upstream["results"] if r["name"] == "hierarchical_fit"), "")
        rep = {"day": day, "new_rows": new, "upstream_wall_s": upstream["wall_s"], "fit": fit,
               "incremental": node_times(incremental), "full": node_times(full)}
        if not rep["incremental"]["message"].startswith("incremental:"):
            # e.g. the fit was redone upstream (its code changed meanwhile) and published new
            # priors: the full rebuild is then what must happen; reported, not in the ratio
            print(f"day {day}: not incremental: {rep['incremental']['message']} (fit: {fit})", flush=True)
        reps.append(rep)
        i, f = rep["incremental"], rep["full"]
        print(f"day {day}: {new:,} new rows; upstream {upstream['wall_s']:.1f} s; {NODE} incremental "
              f"{i['node_s']:.2f} s ({i['message']}) vs full {f['node_s']:.2f} s ({f['message']}): "
              f"{i['node_s'] / f['node_s']:.1%}; wall {i['wall_s']:.1f} vs {f['wall_s']:.1f} s", flush=True)
    pushdown = explain_pushdown(project) if args.target == "dev" else "not checked (Spark)"
    print(f"filter pushdown: {pushdown}", flush=True)
    meta = {
        "date": dt.date.today().isoformat(), "cpu": cpu_model(), "nproc": os.cpu_count(),
        "python": platform.python_version(), "load": os.getloadavg(), "target": args.target,
        "command": "python benchmarks/incremental/run.py " + " ".join(sys.argv[1:]),
    }
    text = markdown(args, reps, cold, cold_node, synth_s, pushdown, meta)
    print("\n" + text)
    (WORK / f"results_{args.target}_{args.rows}.json").write_text(json.dumps(
        {"meta": meta, "cold": cold_node, "reps": reps, "pushdown": pushdown}, indent=1, default=str))
    if args.write:
        write_section(SECTION if args.target == "dev" else f"{SECTION} (spark)", text)


def _code_state() -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout

    dirty = [line[3:] for line in git("status", "--porcelain", "--", "src", "sql").splitlines() if line.strip()]
    return f"commit {git('rev-parse', '--short', 'HEAD').strip()}" + (
        f", uncommitted edits in {', '.join(dirty)}" if dirty else "")


def markdown(args: argparse.Namespace, reps: list[dict[str, Any]], cold: dict[str, Any],
             cold_node: dict[str, Any], synth_s: float, pushdown: str, meta: dict[str, Any]) -> str:
    engine = "DuckDB" if args.target == "dev" else f"target {args.target}"
    lines = [
        SECTION if args.target == "dev" else f"{SECTION} (spark)", "",
        f"`{meta['command']}` — {engine}. `tierpool synth --rows {args.rows:,} --seed {args.seed}`, a cold",
        f"`tierpool build` (sampler {FIT_VARS}; {cold['wall_s']:.1f} s, {NODE} {cold_node['node_s']:.2f} s,",
        f"{cold_node['rows']:,} rows), then per day: one more day of tier-2 estimates as a new Parquet file,",
        f"`tierpool build --exclude {NODE}` (upstream), `tierpool build --select {NODE}` (incremental) and",
        f"`tierpool build --select {NODE} --full-refresh` (full rebuild, same data). Node = the node's",
        "execution_time in run_results.json (the write; its error tests audit the whole table before",
        "publishing in both builds and are reported apart); wall = the whole command (interpreter,",
        "project load, lock, tests, artifacts).",
        "",
        "| day | new tier-2 rows | incremental: node (s) | full rebuild: node (s) | **node ratio** | tests incr / full (s) | wall incr / full (s) | wall ratio | message |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reps:
        i, f = r["incremental"], r["full"]
        lines.append(
            f"| {r['day']} | {r['new_rows']:,} | {i['node_s']:.2f} | {f['node_s']:.2f} | "
            f"**{i['node_s'] / f['node_s']:.1%}** | {i['tests_s']:.2f} / {f['tests_s']:.2f} | "
            f"{i['wall_s']:.1f} / {f['wall_s']:.1f} | {i['wall_s'] / f['wall_s']:.1%} | "
            f"{i['message']}; {f['message']} ({f['rows']:,} rows)"
            + ("" if i["message"].startswith("incremental:") else f"; upstream fit: {r['fit']}") + " |")
    incremental = [r for r in reps if r["incremental"]["message"].startswith("incremental:")]
    node_ratio = median(r["incremental"]["node_s"] / r["full"]["node_s"] for r in incremental)
    wall_ratio = median(r["incremental"]["wall_s"] / r["full"]["wall_s"] for r in incremental)
    goal = "met" if node_ratio <= 0.10 else "NOT met"
    lines += [
        "",
        f"Median node ratio over the {len(incremental)} incremental days **{node_ratio:.1%}** "
        f"(goal <= 10%: {goal}); median wall ratio {wall_ratio:.1%}. "
        f"Filter pushed down to the big table's scan (EXPLAIN of the filtered query): {pushdown}.",
        "",
        f"Machine: {meta['nproc']} CPUs (`nproc`), {meta['cpu']}; Python {meta['python']}; date {meta['date']}; "
        f"code: {_code_state()}; 1-minute load average at the end {meta['load'][0]:.1f}"
        + (f"; synth {synth_s:.0f} s" if synth_s == synth_s else "; synth reused") + ".",
    ]
    if args.note:
        lines += ["", args.note]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
