"""Interim priors between quarterly refits: thin glue over tierpool.calibration.interim.

Models measured after the window of the fit in force get that fit's posterior updated by their new
cells, exactly over the stored draws (no sampling); `priors` serves these rows with
source_level 'model_interim' until the next refit takes the new cells in.
"""

outputs = ("interim_priors",)


def model(ctx):
    from tierpool.calibration.interim import interim_priors

    frame = interim_priors(ctx.target_dir, ctx.ref("residual_cells_by_quarter"), ctx.ref("latest_fit"),
                           ctx.ref("fit_draws"), ctx.ref("fit_runs"), ctx.ref("regions"), log=ctx.log)
    ctx.message = f"{frame['model_id'].nunique()} model(s) updated" if len(frame) else "no measurements after the fit"
    return {"interim_priors": frame}
