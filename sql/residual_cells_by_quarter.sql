-- Cells (n, mean, S) per indicator x model x region x quarter of measurement.
-- The fit merges the quarters inside its data window exactly (pairwise combination), so a fit
-- reads a few thousand rows instead of every residual. S uses var_pop (computed by DuckDB with a
-- streaming, numerically stable update), never sum(x^2) - n*mean^2.
select
    indicator,
    model_id,
    family_id,
    region_id,
    region_class_id,
    cast(date_trunc('quarter', measured_at) as date) as quarter_start,
    count(*) as n,
    avg(residual) as mean,
    var_pop(residual) * count(*) as S
from residuals
group by all
