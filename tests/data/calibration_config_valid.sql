-- The calibration settings make sense: fold fractions in (0, 1) leaving a test fold,
-- alpha in (0, 1), n_min >= 1, fail threshold below the review threshold, a coverage
-- tolerance in [0, 1), validation_max_rows >= 1, and every key
-- the SQL reads present (a missing key would silently give NULL settings).
with cfg as (
    select
        max(c.value) filter (where c.key = 'fold_fit_fraction') as fit_fraction,
        max(c.value) filter (where c.key = 'fold_calibration_fraction') as calibration_fraction,
        max(c.value) filter (where c.key = 'alpha') as alpha,
        max(c.value) filter (where c.key = 'n_min') as n_min,
        max(c.value) filter (where c.key = 'coverage_review_p') as review_p,
        max(c.value) filter (where c.key = 'coverage_fail_p') as fail_p,
        max(c.value) filter (where c.key = 'coverage_tolerance') as tolerance,
        max(c.value) filter (where c.key = 'validation_max_rows') as validation_max_rows,
        count(distinct c.key) as n_keys
    from calibration_config as c
)
select *
from cfg
where n_keys < 13
    or not (fit_fraction >= 0 and calibration_fraction > 0
        and fit_fraction + calibration_fraction < 1)
    or not (alpha > 0 and alpha < 1)
    or not (n_min >= 1)
    or not (fail_p > 0 and fail_p <= review_p and review_p < 1)
    or not (tolerance >= 0 and tolerance < 1)
    or not (validation_max_rows >= 1)
