-- The one row the methodology publishes about coverage: the release (methodology version
-- and fit of the priors in force), the calibration data's date range, nominal and held-out
-- empirical coverage overall (random folds), the out-of-time coverage beside it when the
-- quarter after the fit has test data, how the conformal groups were formed, and the
-- overall status (with the number of cells in review or fail). Empty until priors exist.
with cfg as (
    select
        max(c.value) filter (where c.key = 'alpha') as alpha,
        max(c.value) filter (where c.key = 'n_min') as n_min
    from calibration_config as c
),
release as (
    select
        string_agg(distinct p.methodology_version, ', ' order by p.methodology_version)
            as methodology_version,
        string_agg(distinct p.fit_id, ', ' order by p.fit_id) as fit_ids
    from priors as p
),
calibration_window as (
    select min(m.calibrated_from) as calibrated_from, max(m.calibrated_to) as calibrated_to
    from conformal_multipliers as m
    where m.mode = 'random' and m.level = 'indicator'
),
cells as (
    select
        count(*) filter (where c.status = 'review') as cells_review,
        count(*) filter (where c.status = 'fail') as cells_fail,
        count(*) as cells_tested
    from coverage_report as c
    where c.mode = 'random' and c.grouping = 'cell'
),
out_of_time as (
    select c.empirical_coverage, c.n, c.status
    from coverage_report as c
    where c.mode = 'out_of_time' and c.grouping = 'overall'
)
select
    r.methodology_version,
    r.fit_ids,
    w.calibrated_from,
    w.calibrated_to,
    o.nominal,
    o.empirical_coverage,
    o.n as test_n,
    o.mean_width_log,
    o.mean_width_pct,
    o.p_value,
    'random' as fold_mode,
    'cell > family_class > indicator (n_min ' || cast(cast(cfg.n_min as bigint) as varchar)
        || ', alpha ' || cast(cfg.alpha as varchar) || ')' as grouping_mode,
    oot.empirical_coverage as out_of_time_coverage,
    coalesce(oot.n, 0) as out_of_time_n,
    oot.status as out_of_time_status,
    c.cells_tested,
    c.cells_review,
    c.cells_fail,
    o.status
from coverage_report as o
cross join release as r
cross join calibration_window as w
cross join cells as c
cross join cfg
left join out_of_time as oot on true
where o.mode = 'random' and o.grouping = 'overall'
