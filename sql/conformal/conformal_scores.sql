-- Every residual that has a prior, with its fold, its period relative to the fit in force
-- and its conformity score |residual - pred_mean| / pred_sd (the predictive z-distance).
-- period: 'in_window' = measured before the fit's window_end (the random-fold check uses
-- these), 'next_quarter' = in the three months after it (the out-of-time check: the
-- priors are used for the next quarter), 'later' = anything after that (not used).
-- quarter is the calendar quarter of the measurement (residuals.fit_quarter).
select
    r.request_id,
    r.indicator,
    r.model_id,
    r.family_id,
    r.region_id,
    r.region_class_id,
    r.measured_at,
    r.fit_quarter as quarter,
    f.fold,
    case
        when l.window_end is null or r.measured_at < l.window_end then 'in_window'
        when r.measured_at < l.window_end + interval 3 month then 'next_quarter'
        else 'later'
    end as period,
    r.residual,
    p.pred_mean,
    p.pred_sd,
    p.pred_q05,
    p.pred_q95,
    p.fit_id,
    abs(r.residual - p.pred_mean) / p.pred_sd as score
from residuals as r
inner join request_folds as f on f.request_id = r.request_id
inner join priors as p
    on p.indicator = r.indicator and p.model_id = r.model_id and p.region_id = r.region_id
left join latest_fit as l on l.indicator = p.indicator and l.fit_id = p.fit_id
