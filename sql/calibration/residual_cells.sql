-- Sufficient statistics per (indicator, model, region) cell over ALL valid residuals.
-- S (sum of squared deviations from the cell mean) is computed in two passes, mean
-- first, then the squared deviations: sum(x^2) - n*mean^2 cancels catastrophically when
-- the spread is small next to the mean.
with cell_means as (
    select
        r.indicator,
        r.model_id,
        r.region_id,
        count(*) as n,
        avg(r.residual) as mean,
        min(r.measured_at) as first_at,
        max(r.measured_at) as last_at
    from residuals as r
    group by r.indicator, r.model_id, r.region_id
)
select
    r.indicator,
    r.model_id,
    r.family_id,
    r.region_id,
    r.region_class_id,
    c.n,
    c.mean,
    sum((r.residual - c.mean) * (r.residual - c.mean)) as S,
    c.first_at,
    c.last_at
from residuals as r
inner join cell_means as c
    on c.indicator = r.indicator and c.model_id = r.model_id and c.region_id = r.region_id
group by
    r.indicator, r.model_id, r.family_id, r.region_id, r.region_class_id,
    c.n, c.mean, c.first_at, c.last_at
