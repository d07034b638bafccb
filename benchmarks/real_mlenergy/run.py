"""The real case: the demo pipeline on ML.ENERGY measurements × EcoLogits estimates (issue 12 item 6).

`python benchmarks/real_mlenergy/run.py [--tune 2000 --draws 4000 --chains 4] [--write]`

Builds a project made of the demo's SQL, Python models, singular tests and non-fact seeds, with the
catalogue (families, models, region classes, regions) and the facts (tier2_estimates,
tier3_measurements) of ../shared/data/mlenergy_ecologits/tierpool_seeds read in place (copied into a
scratch project under benchmarks/work/, never into the repository). Regions are GPU types, so a
"region" here is a GPU. Each hierarchy candidate is one build (`tierpool build`, a subprocess, as a
user runs it): the methodology's verbatim model, a learned global level above the families
(`vars.fit.global_level`), and the global level plus the model × region interaction
(`vars.fit.cell_interaction`). The rows carry no per-row request count (docs/fit.md, "Rows that are
averages"), so they enter unweighted. Recorded per candidate: the fit's diagnostics and attempts, coverage per
validation mode (coverage_report, overall), and the family biases (posterior_families, mu).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import cpu_model, write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# read in place: ../shared beside the repository, or $TIERPOOL_SHARED_DIR
SHARED = Path(os.environ.get("TIERPOOL_SHARED_DIR") or ROOT.parent / "shared") / "data" / "mlenergy_ecologits"
WORK = ROOT / "benchmarks" / "work" / "real_mlenergy"
CATALOGUE = ("families.csv", "models.csv", "region_classes.csv", "regions.csv")
FACTS = ("tier2_estimates.csv", "tier3_measurements.csv")
CANDIDATES = {"verbatim": {"global_level": False}, "global_level": {"global_level": True},
              "interaction": {"global_level": True, "cell_interaction": True}}
NEVER_MEASURED = ("llama-7b", "h100")  # a v1 model on the v2-only GPU: the pair no row measured


def make_project(dest: Path, fit_vars: dict[str, Any], data: Path = SHARED,
                 validation: dict[str, Any] | None = None) -> Path:
    """A buildable project: the demo's code and config with the real catalogue and facts as seeds."""
    from tierpool.calibration.synth import TEMPLATE_PATHS, default_template_dir

    if not (data / "tierpool_seeds").is_dir():
        raise FileNotFoundError(f"{data}/tierpool_seeds not found: the real case lives in ../shared/data")
    template = default_template_dir()
    if dest.exists():
        shutil.rmtree(dest)
    for rel in TEMPLATE_PATHS:
        src, dst = template / rel, dest / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "target"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    for name in (*CATALOGUE, *FACTS):
        shutil.copy2(data / "tierpool_seeds" / name, dest / "seeds" / name)
    config_path = dest / "tierpool_project.yml"
    config = yaml.safe_load(config_path.read_text())
    config["vars"]["fit"] = {**config["vars"]["fit"], "as_of": "2026-12-02", **fit_vars}
    if validation is not None:  # hold-out modes of coverage_report (vars.validation); default: the demo's
        config["vars"]["validation"] = validation
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


def build(project: Path, log: Path) -> tuple[int, float]:
    """`tierpool build` in a subprocess; exit code and wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run([sys.executable, "-m", "tierpool", "build", "--project-dir", str(project),
                               "--no-progress"], stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    return code, round(time.perf_counter() - start, 1)


def read_results(project: Path) -> dict[str, Any]:
    """Fit diagnostics, coverage per mode and the family biases, read-only."""
    import duckdb

    con = duckdb.connect(str(project / "target" / "warehouse.duckdb"), read_only=True)
    try:
        def records(sql: str) -> list[dict[str, Any]]:
            return json.loads(con.sql(sql).df().to_json(orient="records", date_format="iso"))

        return {
            "rows": records("""select (select count(*) from stg_tier3) as tier3_valid,
                                      (select count(*) from rejected_rows where source = 'tier3_measurements') as tier3_rejected"""),
            "fit_runs": records("""select fit_id, indicator, status, reason, max_r_hat, min_ess_bulk, divergences,
                                          n_cells, n_obs, sampling_seconds from fit_runs order by finished_at"""),
            "coverage": records("""select mode, nominal, n, empirical_coverage, mean_width_log, status
                                   from coverage_report where grouping = 'overall' order by mode"""),
            "never_measured": records(f"""select model_id, region_id, bias_mean, bias_sd, bias_q05, bias_q95,
                                                 pred_q05, pred_q95, extrapolated from priors
                                          where model_id = '{NEVER_MEASURED[0]}' and region_id = '{NEVER_MEASURED[1]}'"""),
            "families": records("""select f.family_id, f.mean as mu, f.sd, f.n_obs,
                                          (select count(distinct model_id) from posterior_models m
                                           where m.family_id = f.family_id and m.fit_id = f.fit_id) as models
                                   from posterior_families f where parameter = 'mu' order by f.mean"""),
        }
    finally:
        con.close()


def run(settings: dict[str, Any], candidates: dict[str, dict[str, Any]] = CANDIDATES,
        validation: dict[str, Any] | None = None,
        work: Path = WORK) -> dict[str, Any]:
    """Build every candidate with these fit settings (projects under ``work``); results per candidate."""
    out = {}
    for name, extra in candidates.items():
        project = make_project(work / name, {**settings, **extra}, validation=validation)
        code, seconds = build(project, work / f"{name}.log")
        log = (work / f"{name}.log").read_text()
        out[name] = {"exit": code, "seconds": seconds, **(read_results(project) if code == 0 else {"log_tail": log[-3000:]})}
    return out


def _section(results: dict[str, Any], settings: dict[str, Any], elapsed: float) -> str:
    lines = ["## real_mlenergy", "",
             "`python benchmarks/real_mlenergy/run.py --write` — " + __doc__.strip().splitlines()[0], "",
             f"Fit settings: {json.dumps(settings, sort_keys=True)}; data: ../shared/data/mlenergy_ecologits "
             "(564 rows, 46 models, 16 families, 4 GPUs; fit quarter 2026Q3).", ""]
    for name, r in results.items():
        lines.append(f"### {name}: build exit {r['exit']}, {r['seconds']} s")
        lines.append("")
        for f in r.get("fit_runs", []):
            lines.append(f"- fit {f['fit_id']} {f['indicator']}: {f['status']}, max r_hat {f['max_r_hat']:.4f}, "
                         f"min ess_bulk {f['min_ess_bulk']:.0f}, divergences {f['divergences']}, "
                         f"{f['n_cells']} cells / {f['n_obs']} residuals" + (f"; {f['reason']}" if f["reason"] else ""))
        for n in r.get("never_measured", []):
            lines.append(f"- never-measured pair {n['model_id']} on {n['region_id']} (extrapolated {n['extrapolated']}): "
                         f"bias {n['bias_mean']:.2f} ± {n['bias_sd']:.2f}, 90% bias interval [{n['bias_q05']:.2f}, "
                         f"{n['bias_q95']:.2f}], predictive [{n['pred_q05']:.2f}, {n['pred_q95']:.2f}]")
        for c in r.get("coverage", []):
            lines.append(f"- coverage ({c['mode']}): {c['empirical_coverage']:.3f} at nominal {c['nominal']} over "
                         f"{c['n']} held-out rows, mean width {c['mean_width_log']:.2f} (log), {c['status']}")
        fams = r.get("families", [])
        if fams:
            lines += ["", "| family | models | residuals | μ_family (mean ± sd) |", "|---|---|---|---|"]
            lines += [f"| {f['family_id']} | {f['models']} | {f['n_obs']} | {f['mu']:.2f} ± {f['sd']:.2f} |" for f in fams]
        lines.append("")
    lines.append(f"Machine: {os.cpu_count()} CPUs, {cpu_model()}; date {date.today()}; run time {elapsed:.0f} s.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tune", type=int, default=2000)
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--write", action="store_true", help="write the section into benchmarks/RESULTS.md")
    args = parser.parse_args()
    settings = {"tune": args.tune, "draws": args.draws, "chains": args.chains}
    started = time.perf_counter()
    results = run(settings)
    text = _section(results, settings, time.perf_counter() - started)
    print(text)
    (WORK / "results.json").write_text(json.dumps(results, indent=1))
    if args.write:
        write_section("## real_mlenergy", text)


if __name__ == "__main__":
    main()
