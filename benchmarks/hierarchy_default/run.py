"""Which hierarchy should be the default? Leave-models-out and leave-families-out evidence (issue 12 item 2).

`python benchmarks/hierarchy_default/run.py [--draws 1000] [--write]`

Three warehouses, each reduced to residuals and folds (`tierpool seed`, then `tierpool run
--select +residuals --select +request_folds`), then `tierpool compare-hierarchies --hierarchy
two_level --hierarchy global_level --holdout models --holdout families` (a subprocess each):

* `real`: the ML.ENERGY × EcoLogits rows of ../shared/data/mlenergy_ecologits (read in place);
  tier 2 is ~30× low on the 2023 stack (a large common bias of the old families);
* `synth`: `tierpool synth --rows 20000 --seed 3` (truth from the methodology's own priors: no
  common bias beyond what Normal(0, σ_family) draws);
* `synth_biased`: the same warehouse with every tier-3 measurement × e³ (every residual − 3).

two_level is the methodology's verbatim model (μ_family ~ Normal(0, σ_family)); global_level adds a
learned mean above the families (μ_family ~ Normal(μ_global, τ_global)). Scored by the elpd of the
held-out groups' rows against the new-member prior, its paired standard error, and the coverage
of the 90% predictive interval.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import cpu_model, write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / "benchmarks" / "work" / "hierarchy_default"


def _load(path: Path, name: str) -> Any:
    # the real case's project builder, from its script
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tierpool(args: list[str], project: Path, log) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "tierpool", *args]
    done = subprocess.run(cmd, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {project} (see {log.name})")


def prepare(name: str) -> Path:
    """The warehouse ``name``, built up to residuals and folds."""
    project = WORK / name
    if project.exists():
        shutil.rmtree(project)
    if name == "real":
        _load(ROOT / "benchmarks" / "real_mlenergy" / "run.py", "real_mlenergy_run").make_project(project, {})
    else:
        subprocess.run([sys.executable, "-m", "tierpool", "synth", "--rows", "20000", "--seed", "3", "--out",
                        str(project)], check=True, stdout=subprocess.DEVNULL)
        if name == "synth_biased":
            import duckdb

            parts = project / "data" / "tier3"
            con = duckdb.connect()
            table = con.sql(f"select * replace (measurement * exp(3) as measurement) "
                            f"from read_parquet('{parts}/*.parquet')").to_arrow_table()
            for old in parts.glob("*.parquet"):
                old.unlink()
            con.register("t", table)
            con.execute(f"copy t to '{parts}/part-0.parquet' (format parquet)")
            con.close()
    with (WORK / f"{name}.log").open("w") as log:
        _tierpool(["seed"], project, log)
        _tierpool(["run", "--select", "+residuals", "--select", "+request_folds"], project, log)
    return project


def compare(project: Path, draws: int, log_path: Path) -> list[dict[str, Any]]:
    import duckdb

    with log_path.open("a") as log:
        _tierpool(["compare-hierarchies", "--run-id", "default", "--hierarchy", "two_level", "--hierarchy",
                   "global_level", "--holdout", "models", "--holdout", "families", "--fit-tune", str(draws),
                   "--fit-draws", str(draws), "--fit-chains", "2", "--no-progress"], project, log)
    con = duckdb.connect(str(project / "target" / "warehouse.duckdb"), read_only=True)
    try:
        frame = con.sql("""select indicator, mode, hierarchy, elpd, elpd_diff, elpd_diff_se, coverage_90,
                                  mean_width, n_rows, n_groups, max_r_hat, divergences
                           from hierarchy_holdout where run_id = 'default' order by indicator, mode, elpd desc""").df()
    finally:
        con.close()
    return frame.to_dict("records")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=1000, help="tune and draws per chain (2 chains)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = {name: compare(prepare(name), args.draws, WORK / f"{name}.log")
               for name in ("real", "synth", "synth_biased")}
    lines = ["## hierarchy_default", "", "`python benchmarks/hierarchy_default/run.py --write` — "
             + __doc__.strip().splitlines()[0], "",
             f"2 chains × {args.draws} draws (tune {args.draws}) per fit, 5 folds per mode.", "",
             "| warehouse | indicator | new | hierarchy | elpd | elpd diff (paired se) | coverage 90 | width | rows | groups |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, rows in results.items():
        for r in rows:
            diff = "best" if r["elpd_diff"] == 0 else f"{r['elpd_diff']:.1f} ({r['elpd_diff_se']:.1f})"
            lines.append(f"| {name} | {r['indicator']} | {r['mode']} | {r['hierarchy']} | {r['elpd']:.1f} | {diff} | "
                         f"{r['coverage_90']:.3f} | {r['mean_width']:.2f} | {r['n_rows']} | {r['n_groups']} |")
    clear = []
    for name, rows in results.items():
        for r in rows:
            if r["elpd_diff"] != 0 and -r["elpd_diff"] > 2 * r["elpd_diff_se"]:
                winner = next(x["hierarchy"] for x in rows if x["indicator"] == r["indicator"]
                              and x["mode"] == r["mode"] and x["elpd_diff"] == 0)
                clear.append(f"{name}/{r['indicator']}/new {r['mode']}: {winner}")
    lines += ["", "Clear wins (elpd difference > 2 paired se): " + ("; ".join(clear) or "none") + ".",
              f"Machine: {os.cpu_count()} CPUs, "
              f"{cpu_model()}; date {date.today()}; "
              f"run time {time.perf_counter() - started:.0f} s."]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section("## hierarchy_default", text)
    assert all(math.isfinite(r["elpd"]) for rows in results.values() for r in rows)


if __name__ == "__main__":
    main()
