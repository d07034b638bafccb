-- The publication gate (DESIGN §6, issue 10 item 7): fails the build whose fit node MADE a
-- rejected fit (max r_hat > 1.01, min ess_bulk < 400 or divergences > 0, judged per fit_id over
-- all indicators), and any build that has no published fit to serve for an indicator. The
-- rejected fit stays recorded in fit_runs, priors keep the previous published fit, and the
-- failing rows carry the reason (indicator, worst parameters, the models and cells driving it).
-- Later builds that reuse the rejected fit's inputs serve the previous published fit and pass,
-- with a warning (fit_gate_rejected_fits.sql); fix the data or settings and rerun with --refit.
select
    s.indicator,
    s.decided_fit_id as fit_id,
    s.decided_status as status,
    s.served_fit_id,
    case
        when s.action = 'fitted' and s.decided_status = 'rejected'
            then 'this build''s fit was rejected by the gate: ' || coalesce(s.reason, '')
        else 'no published fit to serve'
    end as problem
from fit_gate_status as s
where (s.action = 'fitted' and s.decided_status = 'rejected')
    or s.served_fit_id is null
