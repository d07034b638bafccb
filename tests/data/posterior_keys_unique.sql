-- Row-level keys of the fit's outputs (their unique_key is the coarser (fit_id, indicator),
-- which is what a rerun replaces). fit_runs has one row per attempt of the target_accept ladder.
select 'posterior_families' as relation, fit_id, indicator, family_id as group_id, parameter, count(*) as copies
from posterior_families group by fit_id, indicator, family_id, parameter having count(*) > 1
union all
select 'posterior_models', fit_id, indicator, model_id, parameter, count(*)
from posterior_models group by fit_id, indicator, model_id, parameter having count(*) > 1
union all
select 'posterior_region_classes', fit_id, indicator, region_class_id, parameter, count(*)
from posterior_region_classes group by fit_id, indicator, region_class_id, parameter having count(*) > 1
union all
select 'posterior_regions', fit_id, indicator, region_id, parameter, count(*)
from posterior_regions group by fit_id, indicator, region_id, parameter having count(*) > 1
union all
select 'posterior_predictive', fit_id, indicator,
    concat_ws('/', kind, family_id, model_id, region_class_id, region_id), null, count(*)
from posterior_predictive
group by fit_id, indicator, kind, family_id, model_id, region_class_id, region_id
having count(*) > 1
union all
select 'fit_runs', fit_id, indicator, cast(attempt as varchar), null, count(*)
from fit_runs group by fit_id, indicator, attempt having count(*) > 1
