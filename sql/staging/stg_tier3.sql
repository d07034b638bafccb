-- Valid tier-3 measurements: finite positive, unique key, matching one valid tier-2 row.
-- weight: how many requests the measurement averages (1 unless the input says otherwise).
select
    c.request_id,
    c.indicator,
    c.measured_at,
    c.measurement,
    c.weight
from tier3_checked as c
where c.reject_reason is null
