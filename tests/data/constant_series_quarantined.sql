-- severity: warn
-- Tier-3 series quarantined as telemetry faults: every otherwise valid row of one series
-- (indicator x model x region) carries the same measurement, at least 3 of them (a stuck
-- meter). Their rows are in rejected_rows with reason 'constant_series' and reach neither
-- stg_tier3 nor the residual cells, so the build goes on: a warning, naming the series, so
-- the feed gets fixed. Rule and threshold: docs/data-contract.md.
select c.indicator, c.model_id, c.region_id, count(*) as n,
    min(c.measurement) as measurement, min(c.measured_at) as first_at, max(c.measured_at) as last_at
from tier3_checked as c
where c.reject_reason = 'constant_series'
group by c.indicator, c.model_id, c.region_id
