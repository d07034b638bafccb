-- Once a fit is published, priors cover every indicator of that fit x catalogue model x
-- catalogue region (new models and regions included). Returns the missing combinations.
select l.indicator, m.model_id, r.region_id
from latest_fit as l
cross join models as m
cross join regions as r
where not exists (
    select 1
    from priors as p
    where p.indicator = l.indicator and p.model_id = m.model_id and p.region_id = r.region_id
)
