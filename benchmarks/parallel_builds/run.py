"""Parallel builds: the same projects built with threads 1 and threads N, in one run.

Three projects, each built through the CLI (``tierpool build --full-refresh --threads T``)
with T alternating between 1 and N for ``--repeats`` rounds, so the machine's load affects
both alike; the median wall time of each and their ratio go to RESULTS.md:

- ``waits``: four independent Python models that each wait one second for an "external
  service" (goal: under 2 s with threads 4);
- ``wide_sql``: ``--models`` independent SQL table models, each an aggregation with a
  quantile over one 2M-row table, two tests each;
- ``demo``: the demo warehouse after a first build, so the fit is reused by its fingerprint
  and what is measured is the warehouse around it.

Usage::

    python benchmarks/parallel_builds/run.py [--threads 4] [--repeats 3] [--models 40] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import cpu_model, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "benchmarks" / "work" / "parallel_builds"
PROFILE = "tierpool:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: target/warehouse.duckdb\n"
WAIT_MODEL = (
    "import time\n\nimport pandas as pd\n\n\ndef model(ctx):\n"
    "    time.sleep(1.0)  # an external service answering\n"
    "    return pd.DataFrame({{'name': ['{name}'], 'answered_at': [time.time()]}})\n"
)


def waits_project(path: Path) -> Path:
    (path / "python_models").mkdir(parents=True)
    (path / "profiles.yml").write_text(PROFILE)
    (path / "tierpool_project.yml").write_text("name: waits\n")
    for name in ("wait_a", "wait_b", "wait_c", "wait_d"):
        (path / "python_models" / f"{name}.py").write_text(WAIT_MODEL.format(name=name))
        (path / "python_models" / f"{name}.yml").write_text(
            f"models:\n  - name: {name}\n    columns:\n      - {{name: name, data_type: VARCHAR}}\n"
            "      - {name: answered_at, data_type: DOUBLE}\n")
    return path


def wide_sql_project(path: Path, models: int) -> Path:
    (path / "seeds").mkdir(parents=True)
    (path / "sql").mkdir()
    (path / "profiles.yml").write_text(PROFILE)
    (path / "tierpool_project.yml").write_text("name: wide_sql\n")
    rows = "\n".join(f"{i},{i % 7},{i * 0.5}" for i in range(20_000))
    (path / "seeds" / "facts.csv").write_text("id,grp,value\n" + rows + "\n")
    yml = ["models:"]
    # one bigger shared input: 2M rows, so each model is a real aggregation, not only overhead
    (path / "sql" / "facts_big.sql").write_text(
        "select f.grp, f.value * r.range as value from facts as f, range(100) as r\n")
    yml += ["  - name: facts_big", "    config: {materialized: table}"]
    for i in range(models):
        (path / "sql" / f"m{i:03d}.sql").write_text(
            f"select grp, count(*) as n, sum(value * {i + 1}) as total, "
            f"quantile_cont(value, 0.{i % 9 + 1}) as q from facts_big group by grp\n")
        yml += [f"  - name: m{i:03d}", "    config: {materialized: table}", "    columns:",
                "      - {name: grp, data_tests: [unique, not_null]}"]
    (path / "sql" / "models.yml").write_text("\n".join(yml) + "\n")
    return path


def demo_project(path: Path) -> Path:
    path.mkdir(parents=True)
    for name in ("profiles.yml", "tierpool_project.yml"):
        shutil.copy(ROOT / name, path / name)
    for name in ("seeds", "sql", "python_models"):
        shutil.copytree(ROOT / name, path / name)
    return path


def build(project: Path, threads: int, full_refresh: bool = True) -> float:
    """Wall seconds of one ``tierpool build`` (exits on failure)."""
    cmd = ["tierpool", "build", "--threads", str(threads), "--no-progress", "--project-dir", str(project)]
    if full_refresh:
        cmd.append("--full-refresh")
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"build of {project.name} (threads {threads}) failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return seconds


def measure(project: Path, threads: int, repeats: int) -> dict[str, object]:
    build(project, 1, full_refresh=False)  # warm: compile caches, the demo's fit
    times: dict[int, list[float]] = {1: [], threads: []}
    for _ in range(repeats):
        for t in (1, threads):
            times[t].append(build(project, t))
    serial, parallel = statistics.median(times[1]), statistics.median(times[threads])
    print(f"{project.name}: threads 1 {serial:.2f} s, threads {threads} {parallel:.2f} s, "
          f"speedup {serial / parallel:.2f}x", flush=True)
    return {"project": project.name, "serial": serial, "parallel": parallel, "runs": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", type=int, default=40, help="models of the wide SQL project")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--write", action="store_true", help="write the section of RESULTS.md")
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    projects = [waits_project(WORK / "waits"), wide_sql_project(WORK / "wide_sql", args.models)]
    if not args.skip_demo:
        projects.append(demo_project(WORK / "demo"))
    rows = [measure(p, args.threads, args.repeats) for p in projects]
    (WORK / "results.json").write_text(json.dumps(rows, indent=2))
    if args.write:
        write_section("## parallel_builds", report(rows, args))


def report(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "## parallel_builds",
        "",
        f"`python benchmarks/parallel_builds/run.py --threads {args.threads} --repeats {args.repeats} "
        f"--models {args.models} --write` on {date.today()}, {os.cpu_count()} cores ({cpu_model()}), DuckDB. "
        f"Each project built with `tierpool build --full-refresh` (CLI, wall time including start-up), "
        f"threads 1 and {args.threads} alternating, median of {args.repeats}.",
        "",
        f"| project | threads 1 (s) | threads {args.threads} (s) | speedup |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['project']} | {row['serial']:.2f} | {row['parallel']:.2f} | "
                     f"{row['serial'] / row['parallel']:.2f}x |")
    waits = next((r for r in rows if r["project"] == "waits"), None)
    if waits is not None:
        verdict = "met" if waits["parallel"] < 2.0 else "missed"
        lines += ["", f"Goal (issue 13): the four one-second waits build in under 2 s with threads 4: {verdict} "
                  f"({waits['parallel']:.2f} s, CLI start-up included). The CPU-bound projects gain nothing on "
                  "this 2-core machine: each DuckDB query already runs on both cores (DuckDB's own threads), so "
                  "overlapping nodes only shares them; parallel builds pay off where nodes wait (external "
                  "services, a remote warehouse, Spark jobs), not for local SQL on two cores."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
