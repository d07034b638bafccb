"""Eight schools (BDA3 §5.5) with tierpool's fit library.

theta_j ~ Normal(mu, tau), y_j ~ Normal(theta_j, sigma_j) with known sigma_j, flat prior on
(mu, tau). The fit integrates mu and theta out exactly and samples tau with NUTS, as in the
worked analysis in shared/seeds/.
"""

outputs = ("school_effects", "hyperparameters")

SUMMARY = ["mean", "sd", "q05", "q50", "q95"]


def model(ctx):
    from tierpool.fit import FitSettings, eight_schools_spec, fit_hierarchical

    fit = ctx.vars.get("fit", {})
    settings = FitSettings(
        tune=int(ctx.options.get("fit_tune") or fit.get("tune", 2000)),
        draws=int(ctx.options.get("fit_draws") or fit.get("draws", 4000)),
        chains=int(ctx.options.get("fit_chains") or fit.get("chains", 4)),
        seed=int(fit.get("seed", 8)),
        progress=ctx.progress,
    )
    result = fit_hierarchical(ctx.ref("school_cells"), eight_schools_spec(), settings)
    result.save(ctx.target_dir / "fits" / "eight_schools.nc")
    gate = result.gate
    ctx.message = f"max r_hat {gate.max_r_hat:.3f}, min ess_bulk {gate.min_ess_bulk:.0f}, divergences {gate.divergences}"
    schools = result.levels["school"]
    effects = schools[schools["parameter"] == "mu"][["school", *SUMMARY]]
    hyper = result.levels["global"][["parameter", *SUMMARY]]
    return {"school_effects": effects, "hyperparameters": hyper}
