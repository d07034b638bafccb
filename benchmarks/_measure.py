"""Running a tierpool command as a measured subprocess: wall, CPU, peak memory, spill, load.

Shared by the build benchmarks (warehouse_build, engines, incremental).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
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


def _dir_bytes(path: Path | None) -> int:
    """Bytes on disk (allocated blocks) of the files under ``path`` (0 when absent)."""
    total = 0
    if path is None:
        return 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


def run_measured(cmd: list[str], env: dict[str, str], log: Path,
                 temp_dir: Path | None = None) -> dict[str, Any]:
    """Run ``cmd``, return exit code, wall seconds, peak memory (tree RSS and ru_maxrss), the peak
    size of ``temp_dir`` (DuckDB's spill directory) and the 1-minute load average seen meanwhile."""
    peak = peak_temp = 0
    loads: list[float] = []
    series: list[tuple[float, int, int]] = []  # (seconds since start, tree RSS, temp bytes), ~5 per second
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        done = threading.Event()

        def poll() -> None:
            nonlocal peak, peak_temp
            tick, temp = 0, 0
            while not done.is_set():
                rss = _tree_rss(proc.pid)
                peak = max(peak, rss)
                if tick % 4 == 0:  # every 0.2 s: a directory walk
                    temp = _dir_bytes(temp_dir)
                    peak_temp = max(peak_temp, temp)
                    series.append((time.perf_counter() - start, rss, temp))
                if tick % 20 == 0:
                    loads.append(os.getloadavg()[0])
                tick += 1
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
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "temp_peak_mb": round(peak_temp / 2**20, 1),
        "series": series,
        "load_mean": round(sum(loads) / len(loads), 2) if loads else None,
        "load_max": round(max(loads), 2) if loads else None,
        "log": _shown(log),
    }


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


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
    slow = sorted(data["results"], key=lambda r: -float(r.get("execution_time") or 0.0))[:6]
    out["slowest"] = [(r["name"], round(float(r.get("execution_time") or 0.0), 1)) for r in slow]
    out["_timeline"] = [(r["name"], float(r.get("execution_time") or 0.0)) for r in data["results"]]
    return out


def without_validation(project: Path) -> Path:
    """Turn off the hold-out refits (vars.validation): a per-fit cost (~100 s of refits on
    cells) that does not grow with rows and is the same on every engine."""
    import yaml

    path = project / "tierpool_project.yml"
    config = yaml.safe_load(path.read_text())
    config.get("vars", {}).pop("validation", None)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return project
