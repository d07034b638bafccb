"""Which hierarchy should be the default? Leave-models-out and leave-families-out evidence (issue 12 item 2).

`python benchmarks/hierarchy_default/run.py [--draws 1000] [--replicates] [--write]`; then, per warehouse,
`python benchmarks/hierarchy_default/run.py --cells benchmarks/work/hierarchy_default/<name>` (leave-cells-out)
and `--report-only --write` to write the section from what is under benchmarks/work/hierarchy_default.

Three warehouses, each reduced to residuals and folds (`tierpool seed`, then `tierpool run
--select +residuals --select +request_folds`), then what `tierpool compare-hierarchies --hierarchy
two_level --hierarchy global_level --hierarchy interaction --holdout models --holdout families` runs
(``calibration.compare.compare_warehouse``, in a subprocess of this script per warehouse):

* `real`: the ML.ENERGY × EcoLogits rows of ../shared/data/mlenergy_ecologits (read in place);
  tier 2 is ~30× low on the 2023 stack (a large common bias of the old families);
* `synth`: `tierpool synth --rows 20000 --seed 3` (truth from the methodology's own priors: no
  common bias beyond what Normal(0, σ_family) draws);
* `synth_biased`: the same warehouse with every tier-3 measurement × e³ (every residual − 3).

two_level is the methodology's verbatim model (μ_family ~ Normal(0, σ_family)); global_level adds a
learned mean above the families (μ_family ~ Normal(μ_global, τ_global)); interaction adds to the
global level a model × region term γ_mr ~ Normal(0, σ_cell), σ_cell ~ HalfNormal(0.5). Scored by the
elpd of the held-out groups' rows against the new-member prior, its paired standard error, and the
coverage of the 90% predictive interval.
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


HIERARCHIES = ("two_level", "global_level", "interaction")
MODES = ("models", "families")


def compare_in_process(project: Path, draws: int) -> None:
    """What the CLI's compare-hierarchies does, for any of calibration.compare.CANDIDATES."""
    from tierpool.adapters import adapter_for
    from tierpool.calibration.compare import compare_warehouse, holdout_lines, summary_lines
    from tierpool.core.config import load_target
    from tierpool.fit import FitSettings

    root = project.resolve()
    target = load_target(root, None)
    settings = FitSettings(tune=draws, draws=draws, chains=2, progress=False)
    rows, held = compare_warehouse(adapter_for(target, root, read_only=True), adapter_for(target, root), settings,
                                   None, "default", HIERARCHIES, MODES, 5)
    print("\n".join(summary_lines(rows) + holdout_lines(held)))


REPLICATE_SEEDS = (1, 2)  # sampler seeds of the Monte Carlo replicates (the main run's is FitSettings' default)
REPLICATED = ("global_level", "interaction")


def replicates_in_process(project: Path, draws: int, out: Path, seeds: tuple = REPLICATE_SEEDS,
                          modes: tuple[str, ...] = MODES) -> None:
    """The hold-out scores of :data:`REPLICATED` again at other sampler seeds, same data and folds:
    how much of an elpd difference is Monte Carlo error of the fits (the paired se is not: it is
    the spread over held-out cells of one set of draws). Rows as JSON lines in ``out``."""
    import json

    from tierpool.adapters import adapter_for
    from tierpool.calibration.compare import hierarchies, load_inputs
    from tierpool.core.config import load_target
    from tierpool.fit import FitSettings
    from tierpool.fit.holdout import compare_holdout

    root = project.resolve()
    inputs = load_inputs(adapter_for(load_target(root, None), root, read_only=True))
    specs = hierarchies(REPLICATED)
    with out.open("w") as sink:
        for seed in seeds:
            settings = FitSettings(tune=draws, draws=draws, chains=2, seed=seed, progress=False)
            for indicator in sorted(inputs.all_rows["indicator"].unique()):
                fit = inputs.fit_cells[inputs.fit_cells["indicator"] == indicator].drop(columns="indicator")
                every = inputs.all_rows[inputs.all_rows["indicator"] == indicator].drop(columns=["indicator", "fold"])
                scores = compare_holdout(specs, fit, every, settings, modes, 5)
                for row in scores.to_dict("records"):
                    sink.write(json.dumps({"seed": seed, "indicator": indicator, **row}, default=float) + "\n")
                sink.flush()


def compare(project: Path, draws: int, log_path: Path) -> list[dict[str, Any]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with log_path.open("a") as log:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--compare", str(project),
                               "--draws", str(draws)], cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"compare failed in {project} (see {log_path})")
    return read_scores(project)


def read_scores(project: Path) -> list[dict[str, Any]]:
    """The main run's hierarchy_holdout rows of a warehouse."""
    import duckdb

    con = duckdb.connect(str(project / "target" / "warehouse.duckdb"), read_only=True)
    try:
        frame = con.sql("""select indicator, mode, hierarchy, elpd, elpd_diff, elpd_diff_se, coverage_90,
                                  mean_width, n_rows, n_groups, max_r_hat, divergences
                           from hierarchy_holdout where run_id = 'default' order by indicator, mode, elpd desc""").df()
    finally:
        con.close()
    return frame.to_dict("records")


def _test_fold_lines(names: list[str]) -> list[str]:
    """The random test fold (hierarchy_comparison): fitted pairs, rows of requests not fitted."""
    import duckdb

    out = ["", "Random test fold (`hierarchy_comparison`: the fit fold fitted, the test fold's rows scored; "
           "mostly pairs that were fitted):", "",
           "| warehouse | indicator | hierarchy | elpd_test | diff (paired se) | coverage 90 | width |", "|---|---|---|---|---|---|---|"]
    for name in names:
        path = WORK / name / "target" / "warehouse.duckdb"
        if not path.exists():
            continue
        con = duckdb.connect(str(path), read_only=True)
        try:
            rows = con.sql("""select indicator, hierarchy, elpd_test, elpd_diff, elpd_diff_se, coverage_90, mean_width
                              from hierarchy_comparison where run_id = 'default'
                              order by indicator, elpd_test desc""").fetchall()
        finally:
            con.close()
        for ind, h, elpd, diff, se, cov, width in rows:
            shown = "best" if diff == 0 else f"{diff:.1f} ({se:.1f})"
            out.append(f"| {name} | {ind} | {h} | {elpd:.1f} | {shown} | {cov:.3f} | {width:.2f} |")
    return out


def _replicate_lines(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """elpd(interaction) − elpd(global_level) at the main run's seed and at each replicate seed."""
    import json

    table = {}
    for name, rows in results.items():
        for r in rows:
            table.setdefault((name, r["indicator"], r["mode"]), {}).setdefault("default", {})[r["hierarchy"]] = r["elpd"]
        path = WORK / f"{name}.replicates.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                r = json.loads(line)
                table.setdefault((name, r["indicator"], r["mode"]), {}).setdefault(r["seed"], {})[r["hierarchy"]] = r["elpd"]
    seeds = ["default", *REPLICATE_SEEDS]
    out = ["", "Monte Carlo error of the fits (`--replicates`): elpd(interaction) − elpd(global_level) of the same "
           "held-out rows at other sampler seeds (data and folds unchanged).", "",
           "| warehouse | indicator | new | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sd |",
           "|---|---|---|" + "---|" * (len(seeds) + 1)]
    for (name, indicator, mode), by_seed in sorted(table.items()):
        diffs = [by_seed[s]["interaction"] - by_seed[s]["global_level"] for s in seeds
                 if s in by_seed and {"interaction", "global_level"} <= set(by_seed[s])]
        if len(diffs) < 2:
            continue
        cells = [f"{by_seed[s]['interaction'] - by_seed[s]['global_level']:.1f}" if s in by_seed else "–" for s in seeds]
        mean = sum(diffs) / len(diffs)
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
        out.append(f"| {name} | {indicator} | {mode} | " + " | ".join(cells) + f" | {mean:.1f} ± {sd:.1f} |")
    return out if len(out) > 5 else []


def _cells_lines(names: list[str]) -> list[str]:
    """Leave-cells-out (``--cells``): the never-measured pair of a fitted model and region, per seed."""
    import json

    out = ["", "Leave-cells-out (`--cells`; the (model, region) pairs split into 5 folds, each fitted without its pairs, "
           "their rows scored against the fitted model × fitted region predictive; 3 sampler seeds): elpd "
           "difference interaction − global_level (paired se), and each one's coverage of the 90% interval and "
           "its mean width.", "",
           "| warehouse | indicator | seed | elpd diff (paired se) | coverage 90: global / interaction | "
           "width: global / interaction | pairs | rows |", "|---|---|---|---|---|---|---|---|"]
    for name in names:
        path = WORK / f"{name}.cells.jsonl"
        if not path.exists():
            continue
        rows: dict = {}
        for line in path.read_text().splitlines():
            r = json.loads(line)
            rows.setdefault((r["indicator"], r["seed"]), {})[r["hierarchy"]] = r
        for (indicator, seed), by in sorted(rows.items()):
            g, i = by["global_level"], by["interaction"]
            se = g["elpd_diff_se"] if i["elpd_diff"] == 0 else i["elpd_diff_se"]
            out.append(f"| {name} | {indicator} | {seed} | {i['elpd'] - g['elpd']:.1f} ({se:.1f}) | "
                       f"{g['coverage_90']:.3f} / {i['coverage_90']:.3f} | {g['mean_width']:.2f} / {i['mean_width']:.2f} | "
                       f"{i['n_groups']} | {i['n_rows']} |")
    return out if len(out) > 4 else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=1000, help="tune and draws per chain (2 chains)")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--compare", type=Path, default=None, help=argparse.SUPPRESS)  # one warehouse, in process
    parser.add_argument("--replicate", type=Path, default=None, help=argparse.SUPPRESS)  # its seed replicates
    parser.add_argument("--cells", type=Path, default=None, help=argparse.SUPPRESS)  # its leave-cells-out scores
    parser.add_argument("--report-only", action="store_true",
                        help="write the section from the warehouses under benchmarks/work (no fitting)")
    parser.add_argument("--replicates", action="store_true",
                        help=f"also rescore {REPLICATED} at sampler seeds {REPLICATE_SEEDS} (Monte Carlo error)")
    parser.add_argument("--only", nargs="*", default=["real", "synth", "synth_biased"], help="warehouses to run")
    args = parser.parse_args()
    from tierpool.fit import FitSettings

    if args.compare is not None:
        compare_in_process(args.compare, args.draws)
        return
    if args.replicate is not None:
        replicates_in_process(args.replicate, args.draws, WORK / f"{args.replicate.name}.replicates.jsonl")
        return
    if args.cells is not None:  # leave (model, region) pairs out, at the main seed and the replicate seeds
        replicates_in_process(args.cells, args.draws, WORK / f"{args.cells.name}.cells.jsonl",
                              (FitSettings().seed, *REPLICATE_SEEDS), ("cells",))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = {}
    for name in args.only:
        if args.report_only:
            results[name] = read_scores(WORK / name)
            continue
        project = prepare(name)
        results[name] = compare(project, args.draws, WORK / f"{name}.log")
        if args.replicates:
            with (WORK / f"{name}.log").open("a") as log:
                subprocess.run([sys.executable, str(Path(__file__).resolve()), "--replicate", str(project),
                                "--draws", str(args.draws)], cwd=project, stdout=log, stderr=subprocess.STDOUT,
                               check=True, env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
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
                clear.append(f"{name}/{r['indicator']}/new {r['mode']}: {winner} over {r['hierarchy']}")
    lines += ["", "Clear wins (elpd difference > 2 paired se): " + ("; ".join(clear) or "none") + "."]
    lines += _test_fold_lines(list(results))
    lines += _replicate_lines(results)
    lines += _cells_lines(list(results))
    timing = ("fits run before (logs under benchmarks/work/hierarchy_default)" if args.report_only
              else f"run time {time.perf_counter() - started:.0f} s")
    lines += [f"Machine: {os.cpu_count()} CPUs, {cpu_model()}; date {date.today()}; {timing}."]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section("## hierarchy_default", text)
    assert all(math.isfinite(r["elpd"]) for rows in results.values() for r in rows)


if __name__ == "__main__":
    main()
