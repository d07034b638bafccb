-- The conformal multiplier each prior cell uses, per fold mode: the cell's own group when
-- it has at least n_min calibration points, else its (family x region class) group, else
-- the indicator's (whatever its n, if its multiplier is finite), else none (level 'none',
-- multiplier NULL: no calibrated interval).
with modes as (
    select 'random' as mode
    union all
    select 'out_of_time' as mode
),
cells as (
    select m.mode, p.indicator, p.model_id, p.family_id, p.region_id, p.region_class_id,
        p.pred_mean, p.pred_sd
    from priors as p
    cross join modes as m
),
eligible as (
    select * from conformal_multipliers as c where c.eligible
)
select
    c.mode,
    c.indicator,
    c.model_id,
    c.family_id,
    c.region_id,
    c.region_class_id,
    case
        when mc.level is not null then 'cell'
        when mf.level is not null then 'family_class'
        when mi.level is not null then 'indicator'
        else 'none'
    end as conformal_level,
    coalesce(mc.n, mf.n, mi.n) as conformal_n,
    coalesce(mc.multiplier, mf.multiplier, mi.multiplier) as multiplier,
    c.pred_mean,
    c.pred_sd
from cells as c
left join eligible as mc
    on mc.mode = c.mode and mc.level = 'cell' and mc.indicator = c.indicator
    and mc.model_id = c.model_id and mc.region_id = c.region_id
left join eligible as mf
    on mf.mode = c.mode and mf.level = 'family_class' and mf.indicator = c.indicator
    and mf.family_id = c.family_id and mf.region_class_id = c.region_class_id
left join conformal_multipliers as mi
    on mi.mode = c.mode and mi.level = 'indicator' and mi.indicator = c.indicator
    and mi.multiplier is not null
