-- Valid tier-2 estimates: one row per (request_id, indicator), known model and region,
-- finite positive estimate.
select
    c.request_id,
    c.indicator,
    c.model_id,
    c.region_id,
    c.requested_at,
    c.estimate,
    c.ci90_low,
    c.ci90_high
from tier2_checked as c
where c.reject_reason is null
