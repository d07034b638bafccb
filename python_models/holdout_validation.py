"""Leave-models/regions/families-out validation of the fit in force: thin glue over
tierpool.calibration.validation (settings in vars.validation; coverage_report shows the scores)."""

outputs = ("holdout_scores",)


def model(ctx):
    import pandas as pd

    from tierpool.calibration.settings import read_settings
    from tierpool.calibration.validation import COLUMNS, holdout_scores, read_validation
    from tierpool.fit.sample import FitSettings

    settings = read_validation(ctx.vars)
    if not settings.holdout_modes:  # read nothing: holdout_rows is millions of rows at scale
        ctx.message = "off (vars.validation.holdout_modes is empty)"
        return {"holdout_scores": pd.DataFrame(columns=COLUMNS)}
    calibration = read_settings(ctx.vars, ctx.options, progress=False)
    latest = ctx.ref("latest_fit")
    previous = ctx.previous("holdout_scores")
    frame = holdout_scores(ctx.ref("holdout_rows"), latest, previous, settings,
                           calibration.spec(), FitSettings(**calibration.sampler), log=ctx.log)
    kept = previous is not None and len(frame) and frame["computed_at"].isin(previous["computed_at"]).all()
    ctx.message = f"{len(frame)} mode x indicator rows" + (" (kept: fit and settings unchanged)" if kept else "")
    return {"holdout_scores": frame}
