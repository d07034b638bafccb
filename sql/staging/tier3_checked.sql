-- Every tier-3 row, each with the FIRST reason it cannot be used (NULL when it is valid).
-- A tier-3 row needs exactly one valid tier-2 row with the same (request_id, indicator):
-- 'no_tier2_match' when tier 2 never had the key, 'tier2_rejected' when it had it but
-- every copy was rejected. Duplicated tier-3 keys reject all their copies.
with duplicate_keys as (
    -- hash aggregate, not a window: about twice as fast on 10M rows
    select t.request_id, t.indicator
    from tier3_measurements as t
    group by t.request_id, t.indicator
    having count(*) > 1
),
keyed as (
    select
        t.request_id,
        t.indicator,
        t.measured_at,
        t.measurement,
        d.request_id is not null as duplicated
    from tier3_measurements as t
    left join duplicate_keys as d
        on d.request_id = t.request_id and d.indicator = t.indicator
),
tier2_valid as (
    -- Keys with a valid tier-2 row. No aggregate over every tier-2 key is needed: a valid
    -- row is the only row of its key (tier2_checked rejects every copy of a duplicated key).
    select c.request_id, c.indicator
    from tier2_checked as c
    where c.reject_reason is null
),
tier2_rejected as (
    -- Keys with rejected tier-2 rows (a handful): these never have a valid row.
    select distinct c.request_id, c.indicator
    from tier2_checked as c
    where c.reject_reason is not null
)
select
    k.request_id,
    k.indicator,
    k.measured_at,
    k.measurement,
    case
        when k.request_id is null or k.indicator is null then 'missing_key'
        when k.measurement is null or k.measured_at is null then 'missing_value'
        when not isfinite(k.measurement) then 'non_finite_value'
        when k.measurement <= 0 then 'non_positive_value'
        when k.duplicated then 'duplicate_key'
        when v.request_id is null and x.request_id is null then 'no_tier2_match'
        when v.request_id is null then 'tier2_rejected'
    end as reject_reason
from keyed as k
left join tier2_valid as v
    on v.request_id = k.request_id and v.indicator = k.indicator
left join tier2_rejected as x
    on x.request_id = k.request_id and x.indicator = k.indicator
