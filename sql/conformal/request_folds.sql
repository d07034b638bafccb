-- A deterministic split of the tier-3 requests into the fit, calibration and test folds.
-- fold_u is the first 60 bits of md5(request_id as decimal text) scaled into [0, 1): md5
-- is the same in every DuckDB version and every language (DuckDB's hash() is not), so the
-- split is reproducible outside the warehouse. A request keeps its fold for every
-- indicator, so the folds never share a request. Fractions come from calibration_config.
with cfg as (
    select
        max(c.value) filter (where c.key = 'fold_fit_fraction') as fit_fraction,
        max(c.value) filter (where c.key = 'fold_calibration_fraction') as calibration_fraction
    from calibration_config as c
),
requests as (
    select distinct t3.request_id
    from stg_tier3 as t3
),
hashed as (
    select
        r.request_id,
        cast(('0x' || substr(md5(cast(r.request_id as varchar)), 1, 15)) as bigint)
            / 1152921504606846976.0 as fold_u  -- 2^60
    from requests as r
)
select
    h.request_id,
    h.fold_u,
    case
        when h.fold_u < cfg.fit_fraction then 'fit'
        when h.fold_u < cfg.fit_fraction + cfg.calibration_fraction then 'calibration'
        else 'test'
    end as fold
from hashed as h
cross join cfg
