"""SBC: simulation-based calibration (Talts et al. 2018) of the default model and every new prior/pooling option.

README
------
For each configuration below, ``--reps`` replications (default 100). Replication ``r`` of
configuration ``c``:

1. draws the truth and the cells from the spec's own prior with
   ``draw_synthetic(seed, rows, spec=spec, sizes=SIZES, constrained=True)`` (``constrained=True``:
   the sum-to-zero additive side is drawn from the conditioned prior the model fits);
2. fits them with ``fit_hierarchical(cells, spec, FitSettings(tune=500, draws=1000, chains=2,
   cores=1), catalogue=...)`` (the catalogue keeps groups without rows in the fit, so the fitted
   structure is the one the truth was drawn on);
3. thins the 2 × 1,000 posterior draws to ``L = 99`` evenly spaced ones and records, for a few
   scalar parameters, the rank of the true value among them (0..99).

If the generator and the fit describe the same joint distribution and the sampler is exact, each
rank is uniform on 0..L. Per parameter the ranks go into 10 equal bins and a χ² test of
uniformity (9 df) gives a p-value; one PNG of rank histograms per configuration is written to
``benchmarks/sbc/figures/<configuration>.png`` (grey band: the 99% binomial range of a bin
count under uniformity). Fits with divergent transitions are kept in the ranks and counted; a fit
that raises is counted as failed and left out of the ranks (both are reported).

Truth used for the ranks: the raw draws ``truth[level]`` for scales (``sigma``), the identified
(re-centred) ``identified[level]['mu']`` for locations, ``truth['residual']`` for a pooled residual
sd and ``truth['global']`` (columns mu, tau) for the global level.

Configurations (``spec_from_config`` mappings; all others as ``DEFAULT_HIERARCHY``):

1. ``default``: DEFAULT_HIERARCHY;
2. ``family_scale_halfcauchy``: family scale halfcauchy(0.5);
3. ``family_scale_halfstudentt``: family scale halfstudentt(3, 0.5);
4. ``family_scale_exponential``: family scale exponential(2);
5. ``family_location_studentt``: family location studentt(5, 0, 0.7);
6. ``family_location_normal_fixed``: family location normal(0.3, 1) (fixed sd, nonzero mean);
7. ``global_level``: global {location: normal(0, 1), scale: halfcauchy(0.5)};
8. ``residual_shared``: residual_sd {pooling: shared, prior: halfnormal(1)};
9. ``residual_per_family``: residual_sd {pooling: family, prior: exponential(1)}.

Usage::

    nice -n 10 python benchmarks/sbc/run.py [--reps 100] [--only default,global_level] [--write]

``--write`` replaces the ``## sbc`` section of benchmarks/RESULTS.md (other sections are left
alone). Raw ranks go to ``benchmarks/work/sbc/ranks.json``; ``--render-only`` re-renders figures
and the section from it (``--note TEXT``, repeatable: a paragraph of reading for the section, kept in
the json). One process, one sampler thread (the machine has 2 shared cores);
OMP/OPENBLAS/MKL threads are pinned to 1. Every seed is derived from ``--seed``.
"""

from __future__ import annotations

import os

for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_k] = "1"

import argparse
import copy
import datetime as dt
import json
import platform
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import cpu_model, write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FIGURES = HERE / "figures"
WORK = ROOT / "benchmarks" / "work" / "sbc"
SECTION = "## sbc"

SIZES = {"family": 3, "model": 8, "region_class": 2, "region": 4}
ROWS = 400
L = 99  # posterior draws kept per fit (ranks 0..L)
BINS = 10
TUNE, DRAWS, CHAINS = 500, 1000, 2


def _with(**changes: Any) -> dict[str, Any]:
    """DEFAULT_HIERARCHY with top-level keys replaced (``family_*``: the family level's keys)."""
    from tierpool.fit import DEFAULT_HIERARCHY

    mapping = copy.deepcopy(DEFAULT_HIERARCHY)
    for key, value in changes.items():
        if key.startswith("family_"):
            mapping["levels"][0][key.removeprefix("family_")] = value
        else:
            mapping[key] = value
    return mapping


# A parameter: (label, posterior variable, group index or None, where its truth is)
#   truth source: ("sigma", level) raw truth[level].sigma[idx]; ("mu", level) identified[level].mu[idx];
#   ("residual",) truth['residual'].sigma[idx]; ("global", 0|1) the replayed (mu_global, tau_global)
Param = tuple[str, str, "int | None", tuple]

_BASE: list[Param] = [
    ("sigma_family[0]", "sigma_family", 0, ("sigma", "family")),
    ("mu_family[0]", "mu_family", 0, ("mu", "family")),
    ("mu_model[0]", "mu_model", 0, ("mu", "model")),
    ("sigma_model[0]", "sigma_model", 0, ("sigma", "model")),
]


def configurations() -> dict[str, tuple[dict[str, Any], list[Param]]]:
    """Name → (hierarchy mapping, parameters whose ranks are recorded)."""
    no_leaf_sigma = _BASE[:3]
    return {
        "default": (_with(), _BASE + [
            ("sigma_region_class[0]", "sigma_region_class", 0, ("sigma", "region_class")),
            ("mu_region[0]", "mu_region", 0, ("mu", "region")),
        ]),
        "family_scale_halfcauchy": (_with(family_scale="halfcauchy(0.5)"), _BASE),
        "family_scale_halfstudentt": (_with(family_scale="halfstudentt(3, 0.5)"), _BASE),
        "family_scale_exponential": (_with(family_scale="exponential(2)"), _BASE),
        "family_location_studentt": (_with(family_location="studentt(5, 0, 0.7)"), _BASE),
        "family_location_normal_fixed": (_with(family_location="normal(0.3, 1)"), _BASE),
        "global_level": (_with(**{"global": {"location": "normal(0, 1)", "scale": "halfcauchy(0.5)"}}), _BASE + [
            ("mu_global", "mu_global", None, ("global", 0)),
            ("tau_global", "tau_global", None, ("global", 1)),
        ]),
        "residual_shared": (_with(residual_sd={"pooling": "shared", "prior": "halfnormal(1)"}), no_leaf_sigma + [
            ("sigma_residual", "sigma_residual", 0, ("residual",)),
        ]),
        "residual_per_family": (_with(residual_sd={"pooling": "family", "prior": "exponential(1)"}), no_leaf_sigma + [
            ("sigma_residual[0]", "sigma_residual", 0, ("residual",)),
        ]),
    }


def _truth(src: tuple, idx: int | None, sim: Any, spec: Any, seed: int) -> float:
    if src[0] == "sigma":
        return float(sim.truth[src[1]]["sigma"].to_numpy()[idx])
    if src[0] == "mu":
        return float(sim.identified[src[1]]["mu"].to_numpy()[idx])
    if src[0] == "residual":
        return float(sim.truth["residual"]["sigma"].to_numpy()[idx or 0])
    return float(sim.truth["global"].iloc[0, src[1]])  # ("global", 0): mu, ("global", 1): tau


def _draws(post: Any, var: str, idx: int | None) -> np.ndarray:
    x = post[var].values  # (chain, draw[, group])
    x = x.reshape(x.shape[0] * x.shape[1], -1)
    return x[:, 0 if idx is None else idx]


def _ess(post: Any, var: str, idx: int | None) -> float:
    import arviz as az

    x = post[var].values
    x = x if x.ndim == 2 else x[:, :, 0 if idx is None else idx]
    return float(az.ess(x, method="bulk"))


def one_replication(ci: int, r: int, spec: Any, params: list[Param], base_seed: int,
                    draw_spec: Any = None) -> dict[str, Any]:
    """Draw, fit and rank one replication; never raises (a failure is recorded).

    ``draw_spec``: draw the truth from this spec instead of ``spec`` (a deliberately misspecified
    negative control of the harness; None in every SBC configuration).
    """
    from tierpool.fit import FitSettings, draw_synthetic, fit_hierarchical

    seed = base_seed + 10_000 * ci + r
    out: dict[str, Any] = {"rep": r, "seed": seed}
    start = time.perf_counter()
    try:
        sim = draw_synthetic(seed, ROWS, spec=draw_spec or spec, sizes=SIZES, constrained=True)
        settings = FitSettings(tune=TUNE, draws=DRAWS, chains=CHAINS, seed=seed + 7_777_777, progress=False, cores=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fit_hierarchical(sim.cells, spec, settings, catalogue=sim.catalogue)
        post = res.idata.posterior
        div = int(res.idata.sample_stats["diverging"].values.sum())
        n = post.sizes["chain"] * post.sizes["draw"]
        keep = np.round(np.linspace(0, n - 1, L)).astype(int)
        ranks, ess, truths = {}, {}, {}
        for label, var, idx, src in params:
            t = _truth(src, idx, sim, draw_spec or spec, seed)
            d = _draws(post, var, idx)[keep]
            ranks[label] = int((d < t).sum())
            ess[label] = round(_ess(post, var, idx), 1)
            truths[label] = t
        out.update(ok=True, divergences=div, ranks=ranks, ess=ess, truth=truths,
                   max_rhat=float(res.gate.max_r_hat) if hasattr(res.gate, "max_r_hat") else None)
    except Exception as exc:  # noqa: BLE001 - counted and reported, not hidden
        out.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


def chi2(ranks: list[int]) -> tuple[float, float, np.ndarray]:
    """χ² uniformity test of ranks 0..L in BINS equal bins: (statistic, p-value, counts)."""
    from scipy import stats

    counts = np.bincount(np.asarray(ranks, int) * BINS // (L + 1), minlength=BINS)
    if counts.sum() == 0:
        return float("nan"), float("nan"), counts
    stat, p = stats.chisquare(counts)
    return float(stat), float(p), counts


def figure(name: str, mapping_note: str, params: list[Param], reps: list[dict[str, Any]]) -> Path:
    """One PNG: a rank histogram per parameter, with the 99% binomial band of a bin count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    ok = [x for x in reps if x.get("ok")]
    ncol = min(3, len(params))
    nrow = -(-len(params) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    n = len(ok)
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / BINS) if n else (0, 0)
    for ax, (label, *_rest) in zip(axes.ravel(), params):
        ranks = [x["ranks"][label] for x in ok]
        stat, p, counts = chi2(ranks)
        ax.axhspan(lo, hi, color="0.85", zorder=0)
        ax.axhline(n / BINS, color="0.5", lw=0.8, zorder=1)
        ax.bar(np.arange(BINS) * (L + 1) / BINS, counts, width=(L + 1) / BINS, align="edge",
               edgecolor="k", color="tab:blue", zorder=2)
        ax.set_xlim(0, L + 1)
        ax.set_title(f"{label}\nχ²={stat:.1f}, p={p:.3g}", fontsize=9)
        ax.set_xlabel(f"rank of truth among L={L} draws")
    for ax in axes.ravel()[len(params):]:
        ax.axis("off")
    div = sum(1 for x in ok if x["divergences"] > 0)
    fig.suptitle(f"SBC {name}: {n} fits ({div} with divergences), {mapping_note}", fontsize=10)
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _note(mapping: dict[str, Any]) -> str:
    from tierpool.fit import DEFAULT_HIERARCHY

    diff = []
    fam, dfam = mapping["levels"][0], DEFAULT_HIERARCHY["levels"][0]
    for key in ("scale", "location"):
        if fam.get(key) != dfam.get(key):
            diff.append(f"family {key} {fam[key]}")
    for key in ("global", "residual_sd"):
        if mapping.get(key) != DEFAULT_HIERARCHY.get(key):
            diff.append(f"{key} " + ", ".join(f"{k}: {v}" for k, v in mapping[key].items()))
    return "; ".join(diff) or "DEFAULT_HIERARCHY"


def markdown(meta: dict[str, Any], results: dict[str, Any]) -> str:
    """The RESULTS.md section."""
    from tierpool.fit import FitSettings

    lines = [
        SECTION, "",
        (f"`{meta['command']}` — simulation-based calibration (Talts et al. 2018). Per replication: "
        f"`draw_synthetic(seed, rows={ROWS}, sizes={SIZES}, constrained=True)` from the spec's own prior, "
        f"`fit_hierarchical` (nutpie, tune {TUNE}, draws {DRAWS}, {CHAINS} chains, target_accept {FitSettings().target_accept}, "
        "catalogue = every drawn group), posterior thinned to L = 99 evenly spaced draws, rank of the truth "
        f"(0..{L}; locations: `identified` truth). χ² test of uniformity over {BINS} equal rank bins (9 df). "
        "Fits with divergences are kept in the ranks and counted; failed fits (exceptions) are left out and counted. "
        "Figures: `benchmarks/sbc/figures/<configuration>.png`; raw ranks: `benchmarks/work/sbc/ranks.json`."),
        "",
    ]
    if meta["reps"] != 100:
        lines += [(f"**Reps reduced to {meta['reps']}** (from the default 100) to keep the run near the time budget: "
                   f"{meta.get('reduce_reason', '')}"), ""]
    lines += [
        "| configuration | parameter | reps | χ² | p-value | fits with divergences | failed fits | median ess_bulk (min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        ok = [x for x in res["reps"] if x.get("ok")]
        div = sum(1 for x in ok if x["divergences"] > 0)
        failed = len(res["reps"]) - len(ok)
        for label, *_rest in res["params"]:
            stat, p, _ = chi2([x["ranks"][label] for x in ok])
            ess = [x["ess"][label] for x in ok]
            flag = " **(p < 0.01)**" if p < 0.01 else ""
            lines.append(f"| {name} | {label} | {len(ok)} | {stat:.1f} | {p:.3g}{flag} | {div} | {failed} | "
                         f"{np.median(ess):.0f} ({min(ess):.0f}) |" if ess else
                         f"| {name} | {label} | 0 | — | — | {div} | {failed} | — |")
    lines += ["", "Configurations: " + "; ".join(f"**{n}**: {_note(r['mapping'])}" for n, r in results.items()) + ".",
              ""]
    for name, res in results.items():
        errs = [x for x in res["reps"] if not x.get("ok")]
        if errs:
            lines.append(f"- {name}: {len(errs)} failed fit(s), first: seed {errs[0]['seed']}: {errs[0]['error']}")
        divs = [(x["seed"], x["divergences"]) for x in res["reps"] if x.get("ok") and x["divergences"] > 0]
        if divs:
            lines.append(f"- {name}: divergent fits (seed: divergent transitions of {CHAINS * DRAWS}): "
                         + ", ".join(f"{s}: {d}" for s, d in divs))
    for note in meta.get("notes") or []:
        lines += ["", note]
    per_fit = meta["seconds"] / max(meta["fits"], 1)
    lines += ["", (f"Run time {meta['seconds'] / 60:.1f} min ({meta['fits']} fits, {per_fit:.2f} s "
                   f"per replication incl. drawing and ranking). Machine: {meta['machine']}; date {meta['date']}; "
                   f"code: {meta['code']}."), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2018)
    parser.add_argument("--only", help="comma-separated configuration names (default: all nine)")
    parser.add_argument("--write", action="store_true", help="write the '## sbc' section of benchmarks/RESULTS.md")
    parser.add_argument("--render-only", action="store_true", help="re-render from benchmarks/work/sbc/ranks.json")
    parser.add_argument("--reduce-reason", default="", help="text for RESULTS.md when --reps is not 100")
    parser.add_argument("--note", action="append", default=[], help="extra line(s) for the RESULTS.md section")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    store = WORK / "ranks.json"
    if args.render_only:
        saved = json.loads(store.read_text())
        meta, results = saved["meta"], saved["results"]
        if args.note:  # kept with the ranks, so a later re-render keeps them
            meta["notes"] = args.note
            store.write_text(json.dumps(saved, indent=1, default=float))
    else:
        from tierpool.fit import spec_from_config

        configs = configurations()
        names = args.only.split(",") if args.only else list(configs)
        unknown = [n for n in names if n not in configs]
        if unknown:
            raise SystemExit(f"unknown configuration(s) {unknown}; known: {list(configs)}")
        results: dict[str, Any] = {}
        start = time.perf_counter()
        fits = 0
        for name in names:
            ci = list(configs).index(name)
            mapping, params = configs[name]
            spec = spec_from_config(mapping)
            reps = []
            t0 = time.perf_counter()
            for r in range(args.reps):
                reps.append(one_replication(ci, r, spec, params, args.seed))
                fits += 1
                if (r + 1) % 10 == 0:
                    print(f"{name}: {r + 1}/{args.reps} ({time.perf_counter() - t0:.0f} s)", flush=True)
            results[name] = {"mapping": mapping, "params": [list(p[:3]) + [list(p[3])] for p in params], "reps": reps}
            for label, *_rest in params:
                stat, p, counts = chi2([x["ranks"][label] for x in reps if x.get("ok")])
                print(f"  {name} {label}: chi2 {stat:.1f} p {p:.3g} counts {counts.tolist()}", flush=True)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
        argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
        meta = {
            "command": f"nice -n 10 python benchmarks/sbc/run.py {argv}".strip(),
            "reps": args.reps, "seed": args.seed, "seconds": round(time.perf_counter() - start, 1), "fits": fits,
            "date": dt.date.today().isoformat(),
            "code": f"commit {head.stdout.strip()} plus uncommitted working-tree changes",
            "machine": f"{os.cpu_count()} CPUs (`nproc`), {cpu_model()}; Python {platform.python_version()}",
            "reduce_reason": args.reduce_reason, "notes": args.note,
        }
        store.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=float))
    for name, res in results.items():
        print("figure:", figure(name, _note(res["mapping"]), [tuple(p) for p in res["params"]], res["reps"]))
    text = markdown(meta, results)
    print(text)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
