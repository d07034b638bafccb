-- Raw FIT-FOLD residual rows of the families residual_normality flags as heavy-tailed (any
-- indicator). The Student-t fit option (vars.fit.student_t_families, docs/fit.md "Heavy tails")
-- has no sufficient statistics, so those families' rows must reach the fit; every other family
-- reaches it as cells only (residual_cells_by_quarter), which keeps this relation small.
-- weight: the Student-t fit refuses rows that average several requests (weight != 1).
select
    r.indicator,
    r.model_id,
    r.family_id,
    r.region_id,
    r.region_class_id,
    r.measured_at,
    r.residual,
    r.weight
from residuals as r
inner join request_folds as f on f.request_id = r.request_id
where f.fold = 'fit'
    and r.family_id in (select n.family_id from residual_normality as n where n.heavy_tailed)
