-- Valid tier-3 measurements: finite positive, unique key, matching one valid tier-2 row.
-- weight: how many requests the measurement averages (1 unless the input says otherwise).
-- model_id, region_id, tier2_requested_at, tier2_estimate: those of the matching valid tier-2
-- row, carried by tier3_checked's join, so residuals need not join the tier-2 facts again.
select
    c.request_id,
    c.indicator,
    c.measured_at,
    c.measurement,
    c.weight,
    c.model_id,
    c.region_id,
    c.tier2_requested_at,
    c.tier2_estimate
from tier3_checked as c
where c.reject_reason is null
