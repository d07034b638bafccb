-- Every tier-3 row, each with the FIRST reason it cannot be used (NULL when it is valid).
-- A tier-3 row needs exactly one valid tier-2 row with the same (request_id, indicator):
-- 'no_tier2_match' when tier 2 never had the key, 'tier2_rejected' when it had it but
-- every copy was rejected. Duplicated tier-3 keys reject all their copies. The indicator
-- must be in the catalogue (seed `indicators`) and the measurement inside its plausible
-- range. Last, telemetry faults: the rows of a SERIES (indicator x model x region, the
-- residual cell) that passed every other check are quarantined as 'constant_series' when
-- there are at least 3 of them and their measurements are all identical: a stuck meter,
-- whose S = 0 would leave the model's sigma without a proper posterior
-- (docs/data-contract.md). model_id and region_id are those of the valid tier-2 row.
-- weight: how many requests the row averages (an optional column of tier3_measurements,
-- default 1; NULL counts as 1). A given weight must be a positive finite number, else the
-- row is rejected as 'invalid_weight'.
with tier3_given as (
    -- tier3_measurements plus its optional column `weight` (NULL where the input has none):
    -- a NATURAL LEFT JOIN with an empty relation holding request_id and weight adds the
    -- column when the input lacks it and changes nothing when it has it (every row kept once).
    select *
    from tier3_measurements
    natural left join (
        select cast(null as bigint) as request_id, cast(null as double) as weight limit 0
    ) as optional_columns
),
duplicate_keys as (
    -- hash aggregate, not a window: about twice as fast on 10M rows
    select t.request_id, t.indicator
    from tier3_measurements as t
    group by t.request_id, t.indicator
    having count(*) > 1
),
indicator_ranges as (
    -- one row per indicator whatever the seed holds (see tier2_checked)
    select i.indicator, max(i.min_value) as min_value, min(i.max_value) as max_value
    from indicators as i
    group by i.indicator
),
keyed as (
    select
        t.request_id,
        t.indicator,
        t.measured_at,
        t.measurement,
        t.weight is not null as weight_given,
        try_cast(t.weight as double) as weight_value,
        d.request_id is not null as duplicated
    from tier3_given as t
    left join duplicate_keys as d
        on d.request_id = t.request_id and d.indicator = t.indicator
),
tier2_valid as (
    -- Keys with a valid tier-2 row. No aggregate over every tier-2 key is needed: a valid
    -- row is the only row of its key (tier2_checked rejects every copy of a duplicated key).
    select c.request_id, c.indicator, c.model_id, c.region_id, c.requested_at, c.estimate
    from tier2_checked as c
    where c.reject_reason is null
),
tier2_rejected as (
    -- Keys with rejected tier-2 rows (a handful): these never have a valid row.
    select distinct c.request_id, c.indicator
    from tier2_checked as c
    where c.reject_reason is not null
),
row_checked as (
    select
        k.request_id,
        k.indicator,
        k.measured_at,
        k.measurement,
        coalesce(k.weight_value, 1.0) as weight,
        v.model_id,
        v.region_id,
        v.requested_at as tier2_requested_at,
        v.estimate as tier2_estimate,
        case
            when k.request_id is null or k.indicator is null then 'missing_key'
            when i.indicator is null then 'unknown_indicator'
            when k.measurement is null or k.measured_at is null then 'missing_value'
            when not isfinite(k.measurement) then 'non_finite_value'
            when k.measurement <= 0 then 'non_positive_value'
            when k.measurement < i.min_value or k.measurement > i.max_value then 'out_of_range'
            when k.weight_given and not coalesce(isfinite(k.weight_value) and k.weight_value > 0, false)
                then 'invalid_weight'
            when k.duplicated then 'duplicate_key'
            when v.request_id is null and x.request_id is null then 'no_tier2_match'
            when v.request_id is null then 'tier2_rejected'
        end as row_reason
    from keyed as k
    left join indicator_ranges as i on i.indicator = k.indicator
    left join tier2_valid as v
        on v.request_id = k.request_id and v.indicator = k.indicator
    left join tier2_rejected as x
        on x.request_id = k.request_id and x.indicator = k.indicator
),
constant_series as (
    -- Series whose otherwise valid rows are >= 3 identical measurements (a hash aggregate
    -- over the valid rows; the handful it returns is joined back).
    select c.indicator, c.model_id, c.region_id
    from row_checked as c
    where c.row_reason is null
    group by c.indicator, c.model_id, c.region_id
    having count(*) >= 3 and min(c.measurement) = max(c.measurement)
)
select
    c.request_id,
    c.indicator,
    c.measured_at,
    c.measurement,
    c.weight,
    c.model_id,
    c.region_id,
    c.tier2_requested_at,
    c.tier2_estimate,
    case
        when c.row_reason is not null then c.row_reason
        when s.indicator is not null then 'constant_series'
    end as reject_reason
from row_checked as c
left join constant_series as s
    on s.indicator = c.indicator and s.model_id = c.model_id and s.region_id = c.region_id
