-- What tier 2 consumes: the priors of the fit in force (latest published fit) for every
-- indicator x catalogue model x catalogue region, models added since the fit included
-- (they fall back to their family). Empty until a fit has been published.
select
    h.indicator,
    h.model_id,
    h.family_id,
    h.region_id,
    h.region_class_id,
    h.bias_mean,
    h.bias_sd,
    h.dispersion,
    h.pred_mean,
    h.pred_sd,
    h.pred_q05,
    h.pred_q95,
    h.source_level,
    h.region_level,
    h.fit_id,
    h.methodology_version,
    h.predictive_kind
from priors_history as h
inner join latest_fit as l
    on l.fit_id = h.fit_id and l.indicator = h.indicator
