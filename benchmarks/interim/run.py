"""Interim updates on synthetic warehouses: interval width and coverage as measurements arrive.

`python benchmarks/interim/run.py [--reps 40] [--write]`

Each replication draws a warehouse from the default model's own (sum-to-zero conditioned) prior,
fits it with one model's rows held out (the model is in the catalogue, with no data: a "new"
model), then simulates 10, 30 and 100 new rows of that model in one fitted region from the truth
and applies the interim update (tierpool.fit.interim) to each. Reported per size: mean width of
the 90% interval of the bias (model level + region deviation), coverage of the true bias, the
weights' effective sample size and the update's time. Coverage is over replications: binomial
sd sqrt(0.9*0.1/reps).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from datetime import date
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import cpu_model, write_section  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tierpool.fit import FitSettings, default_spec, draw_synthetic, fit_hierarchical  # noqa: E402
from tierpool.fit.interim import interim_draws, interim_summary  # noqa: E402

SIZES = {"family": 4, "model": 12, "region_class": 2, "region": 5}
NEW_ROWS = (10, 30, 100)


def replication(seed: int) -> list[dict]:
    spec = default_spec()
    syn = draw_synthetic(seed, rows=5000, spec=spec, sizes=SIZES, constrained=True)
    rng = np.random.default_rng(seed + 7)
    models = syn.truth["model"]
    j = int(rng.integers(len(models)))
    model = models["id"].iloc[j]
    family = syn.truth["family"]["id"].iloc[int(models["parent"].iloc[j])]
    old = syn.cells[syn.cells["model_id"] != model]
    settings = FitSettings(tune=1000, draws=1000, chains=2, seed=seed, progress=False)
    fit = fit_hierarchical(old, spec, settings, catalogue=syn.catalogue)
    regions = syn.truth["region"]
    g = int(rng.integers(len(regions)))
    region = regions["id"].iloc[g]
    mu, sigma = models["mu"].iloc[j] + regions["mu"].iloc[g], models["sigma"].iloc[j]
    rows = rng.normal(mu, sigma, max(NEW_ROWS))
    out = []
    for n in NEW_ROWS:
        y = rows[:n]
        cells = pd.DataFrame({"region_id": [region], "n": [n], "mean": [y.mean()], "S": [((y - y.mean()) ** 2).sum()]})
        start = time.perf_counter()
        draws = interim_draws(fit.idata.posterior, model, family, cells.iloc[:0], cells, seed=seed)
        row = interim_summary(draws).set_index("region_id").loc[region]
        out.append({"n": n, "width": row["bias_q95"] - row["bias_q05"],
                    "covered": bool(row["bias_q05"] <= mu <= row["bias_q95"]), "ess": draws.ess,
                    "seconds": time.perf_counter() - start, "divergences": fit.gate.divergences, "seed": seed})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--write", action="store_true", help="write the section into benchmarks/RESULTS.md")
    args = parser.parse_args()
    started = time.perf_counter()
    results = pd.DataFrame([r for seed in range(1000, 1000 + args.reps) for r in replication(seed)])
    elapsed = time.perf_counter() - started
    table = results.groupby("n").agg(width=("width", "mean"), coverage=("covered", "mean"),
                                     ess=("ess", "median"), seconds=("seconds", "median"))
    band = 3 * math.sqrt(0.9 * 0.1 / args.reps)
    lines = [
        "## interim",
        "",
        f"`python benchmarks/interim/run.py --reps {args.reps} --write` — {__doc__.strip().splitlines()[0]}",
        "",
        "Default model (DESIGN §5), synthetic warehouses of 5,000 rows (4 families, 12 models, 2 classes,",
        "5 regions) drawn from the fitted prior; the published fit holds one model out (2 chains × 1,000",
        "draws); that model's new rows come from the truth in one region.",
        "",
        "| new rows | mean 90% width | coverage of the true bias | median weights ESS (of 2,000) | median update time (s) |",
        "|---|---|---|---|---|",
    ]
    for n, r in table.iterrows():
        lines.append(f"| {n} | {r.width:.3f} | {r.coverage:.3f} | {r.ess:.0f} | {r.seconds:.2f} |")
    lines += [
        "",
        f"Coverage is nominal 0.90 within ±{band:.3f} (3 binomial sd at {args.reps} replications). Published"
        f" fits with divergences: {int((results.groupby('seed')['divergences'].first() > 0).sum())} of {args.reps}.",
        f"Machine: {os.cpu_count()} CPUs, {cpu_model()}; date {date.today()}; run time {elapsed:.0f} s.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section("## interim", text)


if __name__ == "__main__":
    main()
