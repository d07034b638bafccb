"""Eight schools (BDA3 §5.5) with tierpool's fit library.

theta_j ~ Normal(mu, tau), y_j ~ Normal(theta_j, sigma_j) with known sigma_j, flat prior on
(mu, tau). The fit integrates mu and theta out exactly and samples tau with NUTS, as in the
worked analysis in shared/seeds/. Other priors: ``vars.fit.hierarchy`` in tierpool_project.yml
(e.g. posteriordb's ``global: {location: normal(0, 5), scale: halfcauchy(5)}``).
"""

outputs = ("school_effects", "hyperparameters")

SUMMARY = ["mean", "sd", "q05", "q50", "q95"]


def model(ctx):
    from tierpool.fit import FitSettings, eight_schools_spec, fit_hierarchical, spec_from_config

    fit = ctx.vars.get("fit", {})
    settings = FitSettings(
        tune=int(ctx.options.get("fit_tune") or fit.get("tune", 2000)),
        draws=int(ctx.options.get("fit_draws") or fit.get("draws", 4000)),
        chains=int(ctx.options.get("fit_chains") or fit.get("chains", 4)),
        seed=int(fit.get("seed", 8)),
        progress=ctx.progress,
    )
    hierarchy = fit.get("hierarchy")
    spec = spec_from_config(hierarchy, "vars.fit.hierarchy") if hierarchy else eight_schools_spec()
    result = fit_hierarchical(ctx.ref("school_cells"), spec, settings)
    result.save(ctx.target_dir / "fits" / "eight_schools.nc")
    gate = result.gate
    ctx.message = f"max r_hat {gate.max_r_hat:.3f}, min ess_bulk {gate.min_ess_bulk:.0f}, divergences {gate.divergences}"
    schools = result.levels["school"]
    effects = schools[schools["parameter"] == "mu"][["school", *SUMMARY]]
    hyper = result.levels["global"][["parameter", *SUMMARY]]
    return {"school_effects": effects, "hyperparameters": hyper}
