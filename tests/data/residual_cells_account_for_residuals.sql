-- The cells hold every residual exactly once.
select c.indicator, c.cells_n, r.residuals_n
from (select indicator, sum(n) as cells_n from residual_cells group by indicator) as c
full outer join (select indicator, count(*) as residuals_n from residuals group by indicator) as r
    on r.indicator = c.indicator
where c.cells_n is distinct from r.residuals_n
