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

DuckDB profile variants: ``--memory-limit none 4GB`` builds the same synth data once per
variant (``none``: DuckDB's default limit, 80% of RAM), writing ``memory_limit``,
``temp_directory`` and ``threads`` into the generated project's profiles.yml (dev output);
the temp directory's size on disk (where DuckDB spills; its default is
``target/warehouse.duckdb.tmp``) is polled with the RSS and reported as its peak. The
1-minute load average is sampled during each build (the machine may be shared).

Usage:
    python benchmarks/warehouse_build/run.py [--rows 1000000 10000000] [--write] [--note TEXT]
        [--memory-limit none 4GB] [--temp-directory target/spill] [--threads N]
        [--work-dir DIR] [--reuse-synth] [--clean] [--subsection TITLE]
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
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py, _measure.py
from _common import cpu_model, write_section  # noqa: E402
from _measure import phases, run_measured, without_validation  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / "benchmarks" / "work" / "warehouse_build"
SECTION = "## warehouse_build"


def peaks_by_node(build: dict[str, Any], top: int = 5) -> list[tuple[str, float, float]]:
    """(node, peak tree RSS MB, peak temp MB) of the nodes with the largest RSS peaks.

    run_results.json has durations, not start times: nodes are laid end to end after the
    startup (wall - sum of durations, nearly all of it before the first node), so the
    attribution is approximate to about a second.
    """
    timeline = build.pop("_timeline", [])
    series = build.pop("series", [])
    if not timeline or not series:
        return []
    t = build["wall_s"] - sum(d for _, d in timeline) - 0.5  # ~0.5 s of artifacts at the end
    best: dict[str, tuple[int, int]] = {}
    for name, dur in timeline:
        inside = [(rss, temp) for at, rss, temp in series if t <= at <= t + dur]
        if inside:
            best[name] = (max(r for r, _ in inside), max(x for _, x in inside))
        t += dur
    ranked = sorted(best.items(), key=lambda kv: -kv[1][0])[:top]
    return [(name, round(rss / 2**20), round(temp / 2**20)) for name, (rss, temp) in ranked]


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


def write_profile(project: Path, memory_limit: str | None, temp_directory: str | None,
                  threads: int | None, settings: dict[str, Any] | None = None) -> Path:
    """Set the DuckDB settings of the project's dev output in profiles.yml; return the spill dir.

    ``memory_limit`` None removes the three keys (DuckDB's defaults: 80% of RAM, spilling to
    ``<database>.tmp``); ``temp_directory`` is written only with a limit. ``threads`` is the
    nodes built at once; ``settings`` more DuckDB settings (the output's ``settings:``).
    """
    path = project / "profiles.yml"
    profile = yaml.safe_load(path.read_text())
    dev = profile["tierpool"]["outputs"]["dev"]
    for key in ("memory_limit", "temp_directory", "threads", "settings"):
        dev.pop(key, None)
    if settings:
        dev["settings"] = settings
    if memory_limit:
        dev["memory_limit"] = memory_limit
        if temp_directory:
            dev["temp_directory"] = temp_directory
    if threads:
        dev["threads"] = threads
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    db = project / dev.get("path", "target/warehouse.duckdb")
    spill = dev.get("temp_directory")
    return project / spill if spill else Path(str(db) + ".tmp")


def refresh_code(project: Path) -> None:
    """Copy the repository's SQL, Python models, singular tests, project vars and calibration
    settings over a reused synth project (its data, other seeds and sql/_sources.yml stay)."""
    from tierpool.calibration import synth

    sources = (project / synth.SOURCES_YML).read_text()
    for rel in ("sql", "python_models", "tests/data"):
        shutil.rmtree(project / rel, ignore_errors=True)
        shutil.copytree(ROOT / rel, project / rel, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "tierpool_project.yml", project / "tierpool_project.yml")
    for name in ("calibration_config.csv", "calibration_config.yml"):  # settings, not synth data
        shutil.copy2(ROOT / "seeds" / name, project / "seeds" / name)
    (project / synth.SOURCES_YML).write_text(sources)


def synth_project(rows: int, env: dict[str, str], seed: int, work: Path, reuse: bool) -> tuple[Path, float]:
    """A synth project of ``rows`` rows (reused with ``reuse`` when made with the same seed)."""
    project = work / f"rows_{rows}"
    marker = project / ".benchmark_synth"
    if reuse and marker.is_file() and json.loads(marker.read_text()) == {"rows": rows, "seed": seed}:
        print(f"[{rows:,} rows] reusing the synth project {project} (SQL, models, tests refreshed)", flush=True)
        refresh_code(project)
        return project, float("nan")
    shutil.rmtree(project, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    synth = run_measured([sys.executable, "-m", "tierpool", "synth", "--rows", str(rows), "--seed", str(seed),
                          "--out", str(project)], env, work / f"synth_{rows}.log")
    if synth["exit_code"] != 0:
        raise SystemExit(f"synth failed, see {synth['log']}")
    marker.write_text(json.dumps({"rows": rows, "seed": seed}))
    return project, synth["wall_s"]


def bench(rows: int, env: dict[str, str], fit_args: list[str], seed: int, args: argparse.Namespace,
          memory_limit: str | None) -> dict[str, Any]:
    """Cold build and reuse rebuild of one synth warehouse size under one DuckDB profile."""
    work = Path(args.work_dir).resolve()
    project, synth_s = synth_project(rows, env, seed, work, args.reuse_synth)
    shutil.rmtree(project / "target", ignore_errors=True)  # a cold build: no warehouse, no fit
    temp_dir = write_profile(project, memory_limit, args.temp_directory, args.threads, args.settings)
    if args.no_validation:
        without_validation(project)
    size_mb = sum(p.stat().st_size for p in (project / "data").rglob("*.parquet")) / 2**20
    build_cmd = [sys.executable, "-m", "tierpool", "build", "--project-dir", str(project), "--no-progress", *fit_args]
    tag = f"{rows}_{memory_limit or 'default'}"
    profile = {"memory_limit": memory_limit, "threads": args.threads,
               "temp_directory": args.temp_directory if memory_limit else None, "settings": args.settings}
    result: dict[str, Any] = {"rows": rows, "synth_s": synth_s, "parquet_mb": round(size_mb, 1), "profile": profile}
    label = f"[{rows:,} rows, memory_limit {memory_limit or 'default'}]"
    print(f"{label} building (cold) ...", flush=True)
    cold = run_measured(build_cmd, env, work / f"build_cold_{tag}.log", temp_dir)
    cold.update(phases(project))
    cold["peaks_by_node"] = peaks_by_node(cold)
    cold.update(fit_run_stats(project))
    db = project / "target" / "warehouse.duckdb"
    cold["warehouse_mb"] = round(db.stat().st_size / 2**20, 1) if db.exists() else None
    result["cold"] = cold
    print(f"{label} cold build {cold['wall_s']} s (exit {cold['exit_code']}), peak {cold['peak_tree_rss_mb']} MB, "
          f"temp {cold['temp_peak_mb']} MB; rebuilding ...", flush=True)
    reuse = run_measured(build_cmd, env, work / f"build_reuse_{tag}.log", temp_dir)
    reuse.update(phases(project))
    reuse["peaks_by_node"] = peaks_by_node(reuse)
    result["reuse"] = reuse
    print(f"{label} reuse rebuild {reuse['wall_s']} s: {reuse['fit_message']}", flush=True)
    return result


def _code_state() -> str:
    """HEAD commit and the src/, sql/, python_models/ files modified in the working tree (it is shared)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    dirty = [line[3:] for line in git("status", "--porcelain", "--", "src", "sql", "python_models").splitlines()
             if line.strip()]
    return f"commit {git('rev-parse', '--short', 'HEAD').strip()}" + (f", uncommitted edits in {', '.join(dirty)}" if dirty else "")


def _profile_text(profile: dict[str, Any]) -> str:
    parts = [f"memory_limit {profile['memory_limit']}" if profile.get("memory_limit") else "default"]
    if profile.get("temp_directory"):
        parts.append(f"temp_directory {profile['temp_directory']}")
    if profile.get("threads"):
        parts.append(f"threads {profile['threads']}")
    # as profiles.yml spells the value (false, not Python's False)
    parts += [f"{key} {yaml.safe_dump(value).splitlines()[0]}" for key, value in (profile.get("settings") or {}).items()]
    return ", ".join(parts)


def markdown(results: list[dict[str, Any]], meta: dict[str, Any], note: str, heading: str = SECTION) -> str:
    """The '## warehouse_build' section of RESULTS.md (or a '### ...' part of it)."""
    lines = [
        heading, "",
        f"`{meta['command']}` — `tierpool synth --rows N` (Parquet facts; synth time",
        "excluded), then `tierpool build` as a subprocess twice: a cold build that fits, and a rebuild that",
        f"reuses the fit. Sampler: {meta['sampler']}. Phases from target/run_results.json (node execution",
        "times; 'overhead' = wall - phases: interpreter start, imports, project load, compile checks,",
        "artifacts); compile/sampling from fit_runs (both indicators). Peak memory: RSS of the build's",
        "process tree polled every 50 ms (ru_maxrss of the build process in brackets). DuckDB profile: the",
        "dev output's settings in the generated profiles.yml ('default': none set, DuckDB's own limit of 80%",
        "of RAM). Temp peak: largest size on disk of DuckDB's spill directory during the build. Load: the",
        "1-minute load average sampled every second during the build (mean / max; 2 cores). CPU: user +",
        "system seconds of the build process (all its threads; DuckDB and nutpie use both cores).",
        "",
        "| rows | DuckDB profile | build | wall (s) | CPU (s) | staging SQL | fit (compile + sampling) | priors etc. SQL | data tests | overhead | peak RSS (MB) | temp peak (MB) | load | exit | fit node |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for kind in ("cold", "reuse"):
            b = r[kind]
            runs = b.get("fit_runs") or []
            comp = sum(float(x.get("compile_seconds") or 0) for x in runs)
            samp = sum(float(x.get("sampling_seconds") or 0) for x in runs)
            fit = f"{b['fit_s']:.1f}" + (f" ({comp:.1f} + {samp:.1f})" if runs else "")
            overhead = b["wall_s"] - b["staging_sql_s"] - b["fit_s"] - b["after_fit_sql_s"] - b["data_tests_s"]
            load = f"{b['load_mean']:.1f} / {b['load_max']:.1f}" if b.get("load_mean") is not None else "–"
            lines.append(
                f"| {r['rows']:,} | {_profile_text(r.get('profile') or {})} | {kind} | **{b['wall_s']:.1f}** | "
                f"{b.get('cpu_s', float('nan')):.0f} | {b['staging_sql_s']:.1f} | {fit} | {b['after_fit_sql_s']:.1f} | {b['data_tests_s']:.1f} | "
                f"{overhead:.1f} | **{b['peak_tree_rss_mb']:.0f}** [{b['ru_maxrss_mb']:.0f}] | "
                f"{b.get('temp_peak_mb', 0):.0f} | {load} | {b['exit_code']} | {b['fit_message'][:90]} |"
            )
    lines += ["", "Slowest nodes and tests of the cold builds (s), and the nodes with the largest peaks of",
              "tree RSS (attributed from the 0.2 s samples by run_results.json durations, about ±1 s):", ""]
    for r in results:
        slow = ", ".join(f"{name} {sec:.1f}" for name, sec in r["cold"].get("slowest", []))
        size = f"; warehouse file {r['cold']['warehouse_mb'] / 1024:.1f} GB" if r["cold"].get("warehouse_mb") else ""
        peaks = ", ".join(f"{name} {rss:,} MB" + (f" (temp {temp:,} MB)" if temp else "")
                          for name, rss, temp in r["cold"].get("peaks_by_node", []))
        lines.append(f"- {r['rows']:,} rows, {_profile_text(r.get('profile') or {})}: {slow}{size}"
                     + (f"; largest RSS peaks: {peaks}" if peaks else ""))
    lines += ["", "Fit diagnostics of the cold builds (gate: max r_hat <= 1.01, min ess_bulk >= 400, 0 divergences):", ""]
    for r in results:
        synth = f"synth {r['synth_s']:.0f} s" if r["synth_s"] == r["synth_s"] else "synth reused"
        for x in r["cold"].get("fit_runs") or []:
            lines.append(
                f"- {r['rows']:,} rows, {_profile_text(r.get('profile') or {})}, {x['fit_id']} {x['indicator']}: "
                f"{x['status']}, max r_hat {x['max_r_hat']:.4f}, "
                f"min ess_bulk {x['min_ess_bulk']:.0f}, divergences {x['divergences']}, {x['n_cells']} cells / "
                f"{x['n_obs']:,} residuals; {synth}, Parquet {r['parquet_mb']:.0f} MB"
            )
    lines += ["", f"Machine: {meta['machine']}; date {meta['date']}; code: {meta['code']}.", ""]
    if note:
        lines += [note.strip(), ""]
    return "\n".join(lines)


def write_subsection(title: str, text: str) -> None:
    """Replace (or add at the end of '## warehouse_build') the part that starts with '### title'."""
    from _common import RESULTS

    lines = RESULTS.read_text().splitlines() if RESULTS.exists() else []
    if SECTION not in lines:
        write_section(SECTION, f"{SECTION}\n")
        lines = RESULTS.read_text().splitlines()
    start = lines.index(SECTION)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    heading = f"### {title}"
    block = text.rstrip().splitlines()
    if heading in lines[start:end]:
        first = lines.index(heading, start, end)
        last = next((i for i in range(first + 1, end) if lines[i].startswith(("### ", "## "))), end)
        new = lines[:first] + block + ([""] if last < len(lines) else []) + lines[last:]
    else:
        body_end = end
        while body_end > start and not lines[body_end - 1].strip():
            body_end -= 1
        new = lines[:body_end] + [""] + block + ([""] if end < len(lines) else []) + lines[end:]
    RESULTS.write_text("\n".join(new).rstrip() + "\n")


def _sampler(results: list[dict[str, Any]], fit_args: list[str]) -> str:
    """The sampler settings the cold builds used (from fit_runs), else the command-line overrides."""
    for r in results:
        for x in r["cold"].get("fit_runs") or []:
            try:
                s = json.loads(x.get("settings") or "{}")
            except (TypeError, ValueError):
                continue
            keys = ("tune", "draws", "chains", "target_accept", "sampler")
            text = ", ".join(f"{k} {s[k]}" for k in keys if k in s)
            return ("project defaults" if not fit_args else " ".join(fit_args)) + (f" ({text})" if text else "")
    return "project defaults" if not fit_args else " ".join(fit_args)


def _shown_args(argv: list[str]) -> str:
    """The command-line arguments for the results text, without --note/--write/--subsection."""
    shown, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--note", "--subsection"):
            skip = True
            continue
        if arg.startswith(("--note=", "--subsection=")) or arg == "--write":
            continue
        shown.append(arg)
    return " ".join(shown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fit-tune", type=int)
    parser.add_argument("--fit-draws", type=int)
    parser.add_argument("--fit-chains", type=int)
    parser.add_argument("--memory-limit", nargs="+", default=["none"],
                        help="DuckDB memory_limit per variant, e.g. 'none 4GB' (none: DuckDB's default)")
    parser.add_argument("--temp-directory", default=None,
                        help="profile temp_directory (relative to the project) for limited variants")
    parser.add_argument("--threads", type=int, default=None, help="profile threads (nodes built at once)")
    parser.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                        help="a DuckDB setting for the dev output's settings: (YAML value), repeatable")
    parser.add_argument("--no-validation", action="store_true",
                        help="turn off the hold-out refits (vars.validation): a per-fit cost, not a per-row one")
    parser.add_argument("--work-dir", default=str(WORK), help="where the synth projects go")
    parser.add_argument("--reuse-synth", action="store_true",
                        help="reuse a synth project of the same rows and seed left by an earlier run")
    parser.add_argument("--clean", action="store_true", help="delete each synth project when done")
    parser.add_argument("--write", action="store_true", help="write the section into benchmarks/RESULTS.md")
    parser.add_argument("--subsection", default=None,
                        help="write a '### TITLE' part of the section instead of replacing the section")
    parser.add_argument("--note", default="", help="extra text for the section (e.g. machine load)")
    args = parser.parse_args()
    args.settings = {key: yaml.safe_load(value) for key, _, value in (s.partition("=") for s in args.setting)}
    fit_args = [f"--fit-{k}={v}" for k, v in (("tune", args.fit_tune), ("draws", args.fit_draws),
                                              ("chains", args.fit_chains)) if v is not None]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    limits = [None if x.lower() in ("none", "default") else x for x in args.memory_limit]
    results = []
    for rows in args.rows:
        for limit in limits:
            results.append(bench(rows, env, fit_args, args.seed, args, limit))
            args.reuse_synth = True  # the next variant builds the same data
        if args.clean:
            shutil.rmtree(Path(args.work_dir).resolve() / f"rows_{rows}", ignore_errors=True)
    cpu = cpu_model()
    meta = {"sampler": _sampler(results, fit_args), "date": dt.date.today().isoformat(), "code": _code_state(),
            "machine": f"{os.cpu_count()} CPUs (`nproc`), {cpu}; Python {platform.python_version()}",
            "command": "python benchmarks/warehouse_build/run.py " + _shown_args(sys.argv[1:])}
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str))
    heading = f"### {args.subsection}" if args.subsection else SECTION
    text = markdown(results, meta, args.note, heading)
    print(text)
    if args.write:
        if args.subsection:
            write_subsection(args.subsection, text)
        else:
            write_section(SECTION, text)


if __name__ == "__main__":
    main()
