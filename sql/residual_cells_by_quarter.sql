-- Cells (n, mean, S) of the FIT FOLD per indicator x model x region x quarter of measurement.
-- Only the fit fold is fitted: the calibration and test folds stay out of the posterior so the
-- split-conformal calibration and the coverage report are honest (sql/conformal/).
-- The fit merges the quarters inside its data window exactly (pairwise combination), so a fit
-- reads a few thousand rows instead of every residual. S uses var_pop (computed by DuckDB with a
-- streaming, numerically stable update), never sum(x^2) - n*mean^2.
select
    r.indicator,
    r.model_id,
    r.family_id,
    r.region_id,
    r.region_class_id,
    cast(date_trunc('quarter', r.measured_at) as date) as quarter_start,
    count(*) as n,
    avg(r.residual) as mean,
    var_pop(r.residual) * count(*) as S
from residuals as r
inner join request_folds as f on f.request_id = r.request_id
where f.fold = 'fit'
group by all
