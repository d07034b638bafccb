"""fit_scaling benchmark: the marginalised fit at the default settings on synthetic cells.

Usage (one size per process, so peak memory and the cold compile are per size):

    OPENBLAS_NUM_THREADS=1 python benchmarks/fit_scaling/run.py --rows 100000
    python benchmarks/fit_scaling/run.py --rows 100000 --cold-cache   # empty numba cache: true cold compile
    python benchmarks/fit_scaling/run.py --demo          # two indicators, warm cache
    python benchmarks/fit_scaling/run.py --baseline centred --rows 100000
        [--baseline-tune 500 --baseline-draws 500 --baseline-chains 4]   # the issue's settings
        [--baseline-sampler nutpie|pymc] [--baseline-limit SECONDS]     # nutpie (default) may be cut off

Prints one JSON line per measurement (appended to benchmarks/fit_scaling/results.jsonl).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

for _k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")
if "--cold-cache" in sys.argv:  # before numba is imported: it reads NUMBA_CACHE_DIR once
    import tempfile

    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="tierpool-numba-cold-")

import numpy as np  # noqa: E402

from tierpool.fit import FitSettings, default_spec, draw_synthetic, fit_hierarchical  # noqa: E402

OUT = Path(__file__).with_name("results.jsonl")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _record(row: dict) -> None:
    row["peak_mib"] = round(_peak_mib(), 1)
    line = json.dumps(row)
    print(line, flush=True)
    with OUT.open("a") as fh:
        fh.write(line + "\n")


def _summarise(kind: str, rows: int, fit, wall: float, n_cells: int) -> dict:
    samp = fit.timings["sampling"]
    stats = fit.idata.sample_stats
    return {
        "kind": kind, "rows": rows, "cells": n_cells, "compile_s": round(fit.timings["compile"], 2),
        "cache_hit": bool(fit.timings["cache_hit"]), "sampling_s": round(samp, 2),
        "posterior_s": round(fit.timings["posterior"], 2), "wall_s": round(wall, 2),
        "max_r_hat": round(fit.gate.max_r_hat, 4), "min_ess_bulk": round(fit.gate.min_ess_bulk, 1),
        "min_ess_per_s": round(fit.gate.min_ess_bulk / samp, 2), "divergences": fit.gate.divergences,
        "mean_leapfrog": round(float(np.mean(stats["n_steps"].values)), 1) if "n_steps" in stats else None,
        "gate_passed": fit.gate.passed,
        "settings": f"tune {fit.settings.tune}, draws {fit.settings.draws}, chains {fit.settings.chains}, "
                    f"target_accept {fit.settings.target_accept}",
    }


def run_size(rows: int, seed: int, cold_cache: bool = False) -> None:
    """Two fits in one process: the first loads the density kernel from numba's disk cache (or,
    with ``--cold-cache``, compiles it), the second finds it loaded."""
    syn = draw_synthetic(seed, rows=rows, constrained=False)  # as results.jsonl was drawn
    settings = FitSettings(progress=False, seed=seed)
    first = "cold_compile" if cold_cache else "disk_cache"
    for label in (first, "in_process"):
        t = time.perf_counter()
        fit = fit_hierarchical(syn.cells, default_spec(), settings, catalogue=syn.catalogue)
        _record(_summarise(f"marginalised_{label}", rows, fit, time.perf_counter() - t, len(syn.cells)))


def run_demo(seed: int) -> None:
    """Two indicators of a demo-sized problem; the first fit warms the cache (reported apart)."""
    settings = FitSettings(progress=False, seed=seed)
    warm = draw_synthetic(seed + 100, rows=20_000, constrained=False)
    fit_hierarchical(warm.cells, default_spec(), settings, catalogue=warm.catalogue)
    t = time.perf_counter()
    fits = []
    for k in range(2):
        syn = draw_synthetic(seed + k, rows=20_000, constrained=False)
        fits.append(fit_hierarchical(syn.cells, default_spec(), settings, catalogue=syn.catalogue))
    wall = time.perf_counter() - t
    _record({"kind": "demo_two_indicators_warm", "rows": 20_000, "wall_s": round(wall, 2),
             "sampling_s": [round(f.timings["sampling"], 2) for f in fits],
             "gate_passed": [f.gate.passed for f in fits],
             "max_r_hat": [round(f.gate.max_r_hat, 4) for f in fits],
             "min_ess_bulk": [round(f.gate.min_ess_bulk, 1) for f in fits],
             "divergences": [f.gate.divergences for f in fits]})


def _baseline_model(kind: str, rows: int, seed: int):
    """The per-row model as the methodology writes it (centred) or non-centred."""
    import pymc as pm
    from benchmarks_rows import expand_rows  # type: ignore[import-not-found]

    syn = draw_synthetic(seed, rows=rows, constrained=False)  # as results.jsonl was drawn
    rows_df = expand_rows(syn, seed)
    fam = syn.truth["family"]["id"].to_numpy()
    mod = syn.truth["model"]
    cls = syn.truth["region_class"]["id"].to_numpy()
    reg = syn.truth["region"]
    coords = {"family": fam, "model": mod["id"].to_numpy(), "region_class": cls, "region": reg["id"].to_numpy()}
    m_idx, g_idx = rows_df["m"].to_numpy(), rows_df["g"].to_numpy()
    fm, cg = mod["parent"].to_numpy(), reg["parent"].to_numpy()
    with pm.Model(coords=coords) as model:
        s_f = pm.HalfNormal("sigma_family", 0.5, dims="family")
        s_m = pm.HalfNormal("sigma_model", s_f[fm], dims="model")
        s_c = pm.HalfNormal("sigma_region_class", 0.5, dims="region_class")
        if kind == "centred":
            mu_f = pm.Normal("mu_family", 0, s_f, dims="family")
            mu_m = pm.Normal("mu_model", mu_f[fm], s_f[fm], dims="model")
            mu_c = pm.Normal("mu_region_class", 0, s_c, dims="region_class")
            mu_g = pm.Normal("mu_region", mu_c[cg], s_c[cg], dims="region")
        else:
            mu_f = pm.Deterministic("mu_family", s_f * pm.Normal("z_f", 0, 1, dims="family"), dims="family")
            mu_m = pm.Deterministic("mu_model", mu_f[fm] + s_f[fm] * pm.Normal("z_m", 0, 1, dims="model"), dims="model")
            mu_c = pm.Deterministic("mu_region_class", s_c * pm.Normal("z_c", 0, 1, dims="region_class"), dims="region_class")
            mu_g = pm.Deterministic("mu_region", mu_c[cg] + s_c[cg] * pm.Normal("z_g", 0, 1, dims="region"), dims="region")
        pm.Normal("r", mu_m[m_idx] + mu_g[g_idx], s_m[m_idx], observed=rows_df["r"].to_numpy())
    return model


def _nutpie_finished(sampler) -> bool:
    # nutpie 0.16.8: is_finished raises TimeoutError while chains are still running.
    try:
        return bool(sampler.is_finished)
    except TimeoutError:
        return False


def _sample_nutpie(model, seed: int, tune: int, draws: int, chains: int, limit: float | None):
    """(idata, compile_s, sampling_s, cut_off); past `limit` seconds the draws made so far are kept."""
    import nutpie

    t = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model, backend="numba")
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    kw = dict(draws=draws, tune=tune, chains=chains, cores=2, seed=seed, progress_bar=False)
    if limit is None:
        return nutpie.sample(compiled, **kw), compile_s, time.perf_counter() - t, False
    # Polling, not sampler.wait(timeout=...): in 0.16.8 a timed-out wait leaves the sampler unusable.
    sampler = nutpie.sample(compiled, blocking=False, **kw)
    try:
        while not _nutpie_finished(sampler) and time.perf_counter() - t < limit:
            time.sleep(1.0)
        cut_off = not _nutpie_finished(sampler)
        idata = sampler.abort() if cut_off else sampler.wait()
    except BaseException:
        sampler.cancel()
        raise
    return idata, compile_s, time.perf_counter() - t, cut_off


def _per_chain_counts(stats) -> np.ndarray:
    """Draws each chain actually made (nutpie pads unfinished chains with NaN / 0)."""
    if stats is None or "logp" not in stats or stats.sizes.get("draw", 0) == 0:
        n_chain = 0 if stats is None else stats.sizes.get("chain", 0)
        return np.zeros(n_chain, dtype=int)
    return (~np.isnan(stats["logp"].values)).sum(axis=1)


def run_baseline(kind: str, rows: int, seed: int, tune: int = 500, draws: int = 500, chains: int = 4,
                 sampler: str = "nutpie", limit: float | None = None) -> None:
    """The per-row baseline with plain NUTS: pm.sample (C backend) or nutpie (numba backend).

    Diagnostics use the chains that finished all their draws; if none did, the chains with any
    post-tune draws, cut to their common length. R-hat and bulk ESS are over every posterior
    variable (deterministics included), as before.
    """
    import arviz as az
    import pymc as pm

    t = time.perf_counter()
    model = _baseline_model(kind, rows, seed)
    setup_s = time.perf_counter() - t
    if sampler == "pymc":
        t = time.perf_counter()
        with model:
            idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=2, random_seed=seed, progressbar=False,
                              compute_convergence_checks=False)
        compile_s, sampling_s, cut_off = None, time.perf_counter() - t, False  # pm.sample compiles inside
        depth_key, maxd_key = "tree_depth", "reached_max_treedepth"
        n_post = np.full(idata.posterior.sizes["chain"], idata.posterior.sizes["draw"])
        n_tune = np.full_like(n_post, tune)
    else:
        idata, compile_s, sampling_s, cut_off = _sample_nutpie(model, seed, tune, draws, chains, limit)
        depth_key, maxd_key = "depth", "maxdepth_reached"
        n_post = _per_chain_counts(idata.get("sample_stats"))
        n_tune = _per_chain_counts(idata.get("warmup_sample_stats"))

    full = np.flatnonzero(n_post == draws)
    used = full if len(full) else np.flatnonzero(n_post > 0)
    n_used = int(n_post[used].min()) if len(used) else 0
    row = {"kind": f"baseline_{kind}", "rows": rows, "sampler": sampler, "setup_s": round(setup_s, 2),
           "compile_s": None if compile_s is None else round(compile_s, 2), "sampling_s": round(sampling_s, 2),
           "limit_s": limit, "cut_off": cut_off, "tune_per_chain": n_tune.tolist(),
           "draws_per_chain": n_post.tolist(), "chains_used": used.tolist(), "draws_used": n_used}
    if n_used >= 4:
        post = idata.posterior.isel(chain=used, draw=slice(0, n_used))
        rhat = az.rhat(post)
        ess = az.ess(post, method="bulk")
        max_rhat = max(float(np.nanmax(rhat[v].values)) for v in rhat.data_vars)
        min_ess = min(float(np.nanmin(ess[v].values)) for v in ess.data_vars)
        row.update(max_r_hat=round(max_rhat, 3), min_ess_bulk=round(min_ess, 1),
                   min_ess_per_s=round(min_ess / sampling_s, 3))
    else:
        row.update(max_r_hat=None, min_ess_bulk=None, min_ess_per_s=None)
    # Sampler statistics over every post-tune draw actually made (all chains), and over tuning.
    for label, group, counts in (("", "sample_stats", n_post), ("tune_", "warmup_sample_stats", n_tune)):
        st = idata.get(group)
        if st is None or counts.sum() == 0:
            row.update({f"{label}divergences": None, f"{label}mean_tree_depth": None,
                        f"{label}mean_n_steps": None, f"{label}frac_max_depth": None})
            continue
        mask = np.arange(st.sizes["draw"])[None, :] < counts[:, None]
        row.update({
            f"{label}divergences": int(st["diverging"].values[mask].sum()),
            f"{label}mean_tree_depth": round(float(st[depth_key].values[mask].mean()), 2) if depth_key in st else None,
            f"{label}mean_n_steps": round(float(st["n_steps"].values[mask].mean()), 1) if "n_steps" in st else None,
            f"{label}frac_max_depth": round(float(st[maxd_key].values[mask].mean()), 3) if maxd_key in st else None,
        })
    row["settings"] = (f"tune {tune}, draws {draws}, chains {chains}, "
                       f"{'pm.sample' if sampler == 'pymc' else 'nutpie numba'}, 2 cores")
    _record(row)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--demo", action="store_true")
    p.add_argument("--cold-cache", action="store_true", help="use an empty numba cache (measures the cold compile)")
    p.add_argument("--baseline", choices=["centred", "noncentred"])
    p.add_argument("--baseline-tune", type=int, default=500, help="baselines only (issue: 500)")
    p.add_argument("--baseline-draws", type=int, default=500, help="baselines only (issue: 500)")
    p.add_argument("--baseline-chains", type=int, default=4, help="baselines only (issue: 4)")
    p.add_argument("--baseline-sampler", choices=["pymc", "nutpie"], default="nutpie", help="baselines only")
    p.add_argument("--baseline-limit", type=float, metavar="SECONDS",
                   help="baselines, nutpie only: stop sampling after this long and keep the draws made so far")
    a = p.parse_args(argv)
    if a.baseline_limit is not None and a.baseline_sampler != "nutpie":
        p.error("--baseline-limit needs --baseline-sampler nutpie")
    sys.path.insert(0, str(Path(__file__).parent))
    if a.demo:
        run_demo(a.seed)
    elif a.baseline:
        run_baseline(a.baseline, a.rows, a.seed, a.baseline_tune, a.baseline_draws, a.baseline_chains,
                     a.baseline_sampler, a.baseline_limit)
    else:
        run_size(a.rows, a.seed, a.cold_cache)


if __name__ == "__main__":
    main()
