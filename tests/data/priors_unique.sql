-- One prior per (indicator, model, region) and per published fit in the history.
select 'priors' as relation, p.indicator, p.model_id, p.region_id, p.fit_id, count(*) as copies
from priors as p
group by p.indicator, p.model_id, p.region_id, p.fit_id
having count(*) > 1
union all
select 'priors_history' as relation, h.indicator, h.model_id, h.region_id, h.fit_id, count(*) as copies
from priors_history as h
group by h.indicator, h.model_id, h.region_id, h.fit_id
having count(*) > 1
