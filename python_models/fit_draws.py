"""Fit draws follow the database (issue 10 item 8): thin glue over tierpool.calibration.fit_files.

Runs after ``hierarchical_fit``'s rows are committed: the draws of every committed fit are moved
from ``target/fits/.pending/`` into ``target/fits/<fit_id>/``, orphans of killed runs are removed,
and ``fit_draws`` lists where each committed fit's draws are.
"""

outputs = ("fit_draws",)


def model(ctx):
    from tierpool.calibration.fit_files import draws_table, reconcile

    runs = ctx.ref("fit_runs")
    done = reconcile(ctx.target_dir, runs)
    parts = [f"promoted {', '.join(done.promoted)}" if done.promoted else "",
             f"removed orphan draws {', '.join(done.removed)}" if done.removed else ""]
    ctx.message = "; ".join(p for p in parts if p) or "draws in place"
    return {"fit_draws": draws_table(ctx.target_dir, runs)}
