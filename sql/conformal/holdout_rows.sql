-- The residual rows hold-out validation (python_models/holdout_validation) scores, with their
-- request's fold: every row while the residuals number at most validation_max_rows
-- (calibration_config), else a uniform sample of requests of about that many rows. Rows, not
-- cells, have to cross into Python here (each held-out row is scored against a mixture over
-- posterior draws), so the sample bounds what crosses: at 100M tier-2 rows the residuals are
-- ~37M rows. The sample keeps whole requests by bits 61-120 of md5(request_id), independent of
-- the fold (bits 1-60), so each fold and each cell is sampled at the same rate.
with cfg as (
    select max(c.value) filter (where c.key = 'validation_max_rows') as max_rows
    from calibration_config as c
),
total as (
    select count(*) as n_rows from residuals
),
sampled as (
    select
        f.request_id,
        f.fold,
        cast(('0x' || substr(md5(cast(f.request_id as varchar)), 16, 15)) as bigint)
            / 1152921504606846976.0 as sample_u  -- 2^60
    from request_folds as f
)
select
    r.indicator,
    r.model_id,
    r.family_id,
    r.region_id,
    r.region_class_id,
    r.measured_at,
    r.residual,
    r.weight,
    s.fold
from residuals as r
inner join sampled as s on s.request_id = r.request_id
cross join cfg
cross join total
where total.n_rows <= cfg.max_rows or s.sample_u < cfg.max_rows / total.n_rows
