-- Valid tier-3 measurements: finite positive, unique key, matching one valid tier-2 row.
select
    c.request_id,
    c.indicator,
    c.measured_at,
    c.measurement
from tier3_checked as c
where c.reject_reason is null
