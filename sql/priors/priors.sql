-- What tier 2 consumes: the priors of the fit in force (latest published fit) for every
-- indicator x catalogue model x catalogue region, models added since the fit included
-- (they fall back to their family). Empty until a fit has been published.
-- Models measured after the fit's window get its interim update (interim_priors: the fit's
-- posterior updated by the new cells, exactly over its draws) in the fit's regions:
-- source_level 'model_interim', predictive_kind 'interim', interim_measurements = new residuals.
-- extrapolated: the model and the region have no tier-3 measurement together (any fold) from
-- before the fit's window end: the bias is the additive model's extrapolation (model side +
-- region side), however confident it looks.
with measured as (
    select c.indicator, c.model_id, c.region_id, c.first_at
    from residual_cells as c
)
select
    h.indicator,
    h.model_id,
    h.family_id,
    h.region_id,
    h.region_class_id,
    coalesce(i.bias_mean, h.bias_mean) as bias_mean,
    coalesce(i.bias_sd, h.bias_sd) as bias_sd,
    coalesce(i.bias_q05, h.bias_q05) as bias_q05,
    coalesce(i.bias_q95, h.bias_q95) as bias_q95,
    coalesce(i.dispersion, h.dispersion) as dispersion,
    coalesce(i.pred_mean, h.pred_mean) as pred_mean,
    coalesce(i.pred_sd, h.pred_sd) as pred_sd,
    coalesce(i.pred_q05, h.pred_q05) as pred_q05,
    coalesce(i.pred_q95, h.pred_q95) as pred_q95,
    case when i.model_id is null then h.source_level else 'model_interim' end as source_level,
    h.region_level,
    h.fit_id,
    h.methodology_version,
    case when i.model_id is null then h.predictive_kind else 'interim' end as predictive_kind,
    i.n_new as interim_measurements,
    m.first_at is null or m.first_at >= l.window_end as extrapolated
from priors_history as h
inner join latest_fit as l
    on l.fit_id = h.fit_id and l.indicator = h.indicator
left join interim_priors as i
    on i.fit_id = h.fit_id
    and i.indicator = h.indicator
    and i.model_id = h.model_id
    and i.region_id = h.region_id
left join measured as m
    on m.indicator = h.indicator and m.model_id = h.model_id and m.region_id = h.region_id
