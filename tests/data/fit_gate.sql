-- The publication gate (DESIGN §6): fails the build when the most recent fit was
-- rejected (max r_hat > 1.01, min ess_bulk < 400 or divergences > 0, judged per fit_id
-- over all indicators). The rejected fit stays recorded in fit_runs and priors keep the
-- previous published fit; the failing rows carry the reason. It keeps failing until a
-- fit passes (fix the data or settings and rerun with --refit).
select f.fit_id, f.indicator, f.status, f.reason, f.max_r_hat, f.min_ess_bulk, f.divergences
from fit_runs as f
where f.status = 'rejected'
    and f.fit_id = (
        select f2.fit_id from fit_runs as f2 order by f2.finished_at desc, f2.fit_id desc limit 1
    )
