-- Every tier-2 row, each with the FIRST reason it cannot be used (NULL when it is valid).
-- stg_tier2 and rejected_rows both read this one relation, so every input row lands in
-- exactly one of them by construction. A (request_id, indicator) key present more than
-- once rejects ALL its copies: two conflicting estimates leave no way to pick one.
-- The indicator must be in the catalogue (seed `indicators`) and the estimate inside its
-- plausible range [min_value, max_value] (docs/data-contract.md).
with duplicate_keys as (
    -- hash aggregate, not a window: about twice as fast on 10M rows
    select t.request_id, t.indicator
    from tier2_estimates as t
    group by t.request_id, t.indicator
    having count(*) > 1
),
indicator_ranges as (
    -- one row per indicator whatever the seed holds (its unique test reports duplicates):
    -- a duplicated indicator keeps the narrowest range, and no fact row is multiplied
    select i.indicator, max(i.min_value) as min_value, min(i.max_value) as max_value
    from indicators as i
    group by i.indicator
),
keyed as (
    select
        t.request_id,
        t.indicator,
        t.model_id,
        t.region_id,
        t.requested_at,
        t.estimate,
        t.ci90_low,
        t.ci90_high,
        d.request_id is not null as duplicated
    from tier2_estimates as t
    left join duplicate_keys as d
        on d.request_id = t.request_id and d.indicator = t.indicator
)
select
    k.request_id,
    k.indicator,
    k.model_id,
    k.region_id,
    k.requested_at,
    k.estimate,
    k.ci90_low,
    k.ci90_high,
    case
        when k.request_id is null or k.indicator is null then 'missing_key'
        when i.indicator is null then 'unknown_indicator'
        when k.estimate is null or k.requested_at is null then 'missing_value'
        when not isfinite(k.estimate) then 'non_finite_value'
        when k.estimate <= 0 then 'non_positive_value'
        when k.estimate < i.min_value or k.estimate > i.max_value then 'out_of_range'
        when m.model_id is null then 'unknown_model'
        when r.region_id is null then 'unknown_region'
        when k.duplicated then 'duplicate_key'
    end as reject_reason
from keyed as k
left join indicator_ranges as i on i.indicator = k.indicator
left join models as m on m.model_id = k.model_id
left join regions as r on r.region_id = k.region_id
