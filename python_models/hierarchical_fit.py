"""The quarterly hierarchical fit (DESIGN §5-§6): thin glue over tierpool's fit library.

Reads the per-quarter residual cells, fits each indicator (or reuses the recorded fit when its
cells, code and settings are unchanged) and returns the posterior tables. All outputs but
`fit_decision` are `append` tables keyed by fit_id, so the fit history accumulates; `fit_decision`
says what this run did (fitted or reused), for the gate.
"""

outputs = (
    "posterior_families",
    "posterior_models",
    "posterior_region_classes",
    "posterior_regions",
    "posterior_predictive",
    "fit_runs",
    "methodology_releases",
    "fit_decision",
)


def model(ctx):
    from tierpool.calibration import run_calibration_fit

    return run_calibration_fit(ctx, ctx.ref("residual_cells_by_quarter"), outputs, ctx.ref("residual_rows_heavy_tail"))
