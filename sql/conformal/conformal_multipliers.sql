-- Split-conformal multipliers from the calibration fold, per fold mode and grouping level.
-- In each group of n calibration scores, the multiplier is the k-th smallest score with
-- k = ceil((n + 1)(1 - alpha)), picked explicitly as element k of the group's sorted scores
-- (an interpolating quantile function would not give the finite-sample guarantee
-- P(score_new <= q) >= 1 - alpha). When k > n the conformal bound is infinite: multiplier
-- NULL (a list index past the end is NULL). One hash aggregate collects each group's sorted
-- scores: a row_number() window over every calibration row of the three levels, joined back
-- at rank k, gave the same values but sorted ~20M rows in 7 partition keys and spilled badly
-- under a memory limit (100M tier-2 rows at memory_limit 4GB: 76 s; this: 8 s).
-- Levels, finest first: 'cell' (indicator x model x region), 'family_class' (indicator x
-- family x region class), 'indicator'. conformal_assignment picks, per cell, the finest
-- eligible level (n >= n_min; the indicator level whenever its multiplier is finite).
-- mode 'random': calibration fold, measured inside the fit's window; 'out_of_time':
-- calibration fold, measured in the quarter after the fit's window.
-- k uses ceil(x - 1e-9): (n + 1) * 0.9 is 27.900000000000002 in floating point, and an
-- exact integer product must not be rounded up by representation error.
with cfg as (
    select
        max(c.value) filter (where c.key = 'alpha') as alpha,
        max(c.value) filter (where c.key = 'n_min') as n_min
    from calibration_config as c
),
calibration as (
    select
        case s.period when 'in_window' then 'random' else 'out_of_time' end as mode,
        s.request_id,
        s.indicator,
        s.model_id,
        s.family_id,
        s.region_id,
        s.region_class_id,
        s.measured_at,
        s.score
    from conformal_scores as s
    where s.fold = 'calibration' and s.period in ('in_window', 'next_quarter')
),
grouped as (
    select
        c.mode, 'cell' as level, c.indicator, c.model_id, c.family_id, c.region_id,
        c.region_class_id, c.request_id, c.measured_at, c.score
    from calibration as c
    union all
    select
        c.mode, 'family_class' as level, c.indicator, null as model_id, c.family_id,
        null as region_id, c.region_class_id, c.request_id, c.measured_at, c.score
    from calibration as c
    union all
    select
        c.mode, 'indicator' as level, c.indicator, null as model_id, null as family_id,
        null as region_id, null as region_class_id, c.request_id, c.measured_at, c.score
    from calibration as c
),
counted as (
    select
        g.mode,
        g.level,
        g.indicator,
        g.model_id,
        g.family_id,
        g.region_id,
        g.region_class_id,
        count(*) as n,
        cast(ceil((count(*) + 1) * (1 - cfg.alpha) - 1e-9) as bigint) as k,
        list(g.score order by g.score) as sorted_scores,
        min(g.measured_at) as calibrated_from,
        max(g.measured_at) as calibrated_to,
        cfg.alpha,
        cfg.n_min
    from grouped as g
    cross join cfg
    group by
        g.mode, g.level, g.indicator, g.model_id, g.family_id, g.region_id, g.region_class_id,
        cfg.alpha, cfg.n_min
)
select
    c.mode,
    c.level,
    c.indicator,
    c.model_id,
    c.family_id,
    c.region_id,
    c.region_class_id,
    c.n,
    c.k,
    c.sorted_scores[c.k] as multiplier,
    c.alpha,
    cast(c.n_min as bigint) as n_min,
    c.n >= c.n_min and c.sorted_scores[c.k] is not null as eligible,
    c.calibrated_from,
    c.calibrated_to
from counted as c
