-- severity: warn
-- Coverage groups whose held-out coverage of the conformal 90% intervals is incompatible
-- with nominal at p < coverage_fail_p (exact binomial test; see coverage_report.sql).
-- A build warning, not an error: a few small cells fail by chance at any threshold, and
-- the release row (coverage_release.status) is what the methodology publishes.
select c.mode, c.grouping, c.indicator, c.model_id, c.family_id, c.region_id,
    c.region_class_id, c.conformal_level, c.n, c.empirical_coverage, c.nominal, c.p_value
from coverage_report as c
where c.status = 'fail'
