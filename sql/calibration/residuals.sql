-- One calibration residual per measured request and indicator:
-- residual = ln(tier-2 estimate) - ln(tier-3 measurement)   (> 0: tier 2 over-estimates).
-- fit_quarter is the calendar quarter of the measurement (e.g. '2026Q3'): a fit named
-- after a quarter uses the residuals measured up to the end of that quarter.
-- weight: how many requests the tier-3 measurement averages (1 unless tier3_measurements
-- says otherwise): the residual of a mean of w requests has variance sigma^2 / w.
-- The tier-2 side (model, region, requested_at, estimate) comes with stg_tier3: its one valid
-- tier-2 row, matched in tier3_checked (one join of the tier-2 facts, not two).
select
    t3.request_id,
    t3.indicator,
    t3.model_id,
    m.family_id,
    t3.region_id,
    r.region_class_id,
    t3.tier2_requested_at as requested_at,
    t3.measured_at,
    cast(year(t3.measured_at) as varchar) || 'Q' || cast(quarter(t3.measured_at) as varchar)
        as fit_quarter,
    ln(t3.tier2_estimate) - ln(t3.measurement) as residual,
    t3.weight
from stg_tier3 as t3
inner join models as m on m.model_id = t3.model_id
inner join regions as r on r.region_id = t3.region_id
