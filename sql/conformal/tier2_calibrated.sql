-- Every valid tier-2 estimate with what the calibration adds (DESIGN §6), in the value
-- scale. With residual r = ln(estimate) - ln(true value), the true value is
-- estimate * exp(-r), so a residual interval [a, b] maps to [estimate * exp(-b),
-- estimate * exp(-a)]: the bounds FLIP.
--   point_calibrated  = estimate * exp(-bias_mean)            (median, bias removed)
--   prior_low/high    = estimate * exp(-pred_q95) / exp(-pred_q05)   (posterior predictive 90%)
--   conformal_low/high = estimate * exp(-(pred_mean +/- multiplier * pred_sd)) (flipped; the
--                       'random' mode multiplier of conformal_assignment)
-- Tier 2's own Monte Carlo ci90_low/high are kept unchanged beside them. Estimates without
-- a prior (no published fit yet) keep NULL calibration columns.
with cfg as (
    select max(c.value) filter (where c.key = 'alpha') as alpha
    from calibration_config as c
)
select
    t2.request_id,
    t2.indicator,
    t2.model_id,
    m.family_id,
    t2.region_id,
    g.region_class_id,
    t2.requested_at,
    t2.estimate,
    t2.ci90_low,
    t2.ci90_high,
    p.bias_mean,
    p.bias_sd,
    t2.estimate * exp(-p.bias_mean) as point_calibrated,
    t2.estimate * exp(-p.pred_q95) as prior_low,
    t2.estimate * exp(-p.pred_q05) as prior_high,
    a.conformal_level,
    a.conformal_n,
    a.multiplier as conformal_multiplier,
    1 - cfg.alpha as conformal_nominal,
    t2.estimate * exp(-(p.pred_mean + a.multiplier * p.pred_sd)) as conformal_low,
    t2.estimate * exp(-(p.pred_mean - a.multiplier * p.pred_sd)) as conformal_high,
    p.source_level,
    p.region_level,
    p.fit_id,
    p.methodology_version
from stg_tier2 as t2
inner join models as m on m.model_id = t2.model_id
inner join regions as g on g.region_id = t2.region_id
cross join cfg
left join priors as p
    on p.indicator = t2.indicator and p.model_id = t2.model_id and p.region_id = t2.region_id
left join conformal_assignment as a
    on a.mode = 'random' and a.indicator = t2.indicator
    and a.model_id = t2.model_id and a.region_id = t2.region_id
