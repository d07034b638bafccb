-- Cells (n, w, mean, S) of the FIT FOLD per indicator x model x region x quarter of measurement.
-- Only the fit fold is fitted: the calibration and test folds stay out of the posterior so the
-- split-conformal calibration and the coverage report are honest (sql/conformal/).
-- The fit merges the quarters inside its data window exactly (pairwise combination), so a fit
-- reads a few thousand rows instead of every residual.
-- n counts the rows, w sums their weights (how many requests each averages; w = n when every
-- row is a single request). A cell whose rows all weigh 1 gets avg() and var_pop (DuckDB's
-- streaming, numerically stable update; never sum(x^2) - n*mean^2), as before weights existed.
-- A cell with other weights gets the weighted mean and S = sum w_i (residual - mean)^2 in two
-- passes (mean first); the second pass reads only such cells' rows (none when no row carries a
-- weight, so an unweighted warehouse pays nothing for it).
with cells as (
    select
        r.indicator,
        r.model_id,
        r.family_id,
        r.region_id,
        r.region_class_id,
        cast(date_trunc('quarter', r.measured_at) as date) as quarter_start,
        count(*) as n,
        sum(r.weight) as w,
        min(r.weight) = 1 and max(r.weight) = 1 as unweighted,
        avg(r.residual) as mean_rows,
        var_pop(r.residual) * count(*) as S_rows,
        sum(r.weight * r.residual) / sum(r.weight) as mean_weighted
    from residuals as r
    inner join request_folds as f on f.request_id = r.request_id
    where f.fold = 'fit'
    group by all
),
weighted_cells as (
    select c.indicator, c.model_id, c.region_id, c.quarter_start, c.mean_weighted
    from cells as c
    where not c.unweighted
),
weighted_S as (
    select
        c.indicator,
        c.model_id,
        c.region_id,
        c.quarter_start,
        sum(r.weight * ((r.residual - c.mean_weighted) * (r.residual - c.mean_weighted))) as S
    from residuals as r
    inner join weighted_cells as c
        on c.indicator = r.indicator
        and c.model_id = r.model_id
        and c.region_id = r.region_id
        and c.quarter_start = cast(date_trunc('quarter', r.measured_at) as date)
    inner join request_folds as f on f.request_id = r.request_id
    where f.fold = 'fit'
    group by c.indicator, c.model_id, c.region_id, c.quarter_start
)
select
    c.indicator,
    c.model_id,
    c.family_id,
    c.region_id,
    c.region_class_id,
    c.quarter_start,
    c.n,
    c.w,
    case when c.unweighted then c.mean_rows else c.mean_weighted end as mean,
    case when c.unweighted then c.S_rows else s.S end as S
from cells as c
left join weighted_S as s
    on s.indicator = c.indicator
    and s.model_id = c.model_id
    and s.region_id = c.region_id
    and s.quarter_start = c.quarter_start
