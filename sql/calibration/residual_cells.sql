-- Sufficient statistics per (indicator, model, region) cell over ALL valid residuals.
-- n counts the rows; w sums their weights (how many requests each averages: w = n when
-- every row is a single request). A row of weight w_i has variance sigma^2 / w_i, so the
-- cell's statistics are the weighted mean and S = sum w_i (residual - mean)^2, and its
-- log-likelihood is -n ln s - (S + w (mean - mu)^2) / (2 s^2) + const (docs/fit.md,
-- "Rows that are averages"). Unweighted cells keep avg() for the mean, as before.
-- S is computed in two passes, mean first, then the squared deviations: sum(x^2) - n*mean^2
-- cancels catastrophically when the spread is small next to the mean.
with cell_means as (
    select
        r.indicator,
        r.model_id,
        r.region_id,
        count(*) as n,
        sum(r.weight) as w,
        case
            when min(r.weight) = 1 and max(r.weight) = 1 then avg(r.residual)
            else sum(r.weight * r.residual) / sum(r.weight)
        end as mean,
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
    c.w,
    c.mean,
    sum(r.weight * ((r.residual - c.mean) * (r.residual - c.mean))) as S,
    c.first_at,
    c.last_at
from residuals as r
inner join cell_means as c
    on c.indicator = r.indicator and c.model_id = r.model_id and c.region_id = r.region_id
group by
    r.indicator, r.model_id, r.family_id, r.region_id, r.region_class_id,
    c.n, c.w, c.mean, c.first_at, c.last_at
