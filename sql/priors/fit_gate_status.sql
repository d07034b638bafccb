-- The publication gate's view of the latest build (DESIGN §6, issue 10 item 7): per indicator,
-- the fit the fit node made or reused in its latest run (fit_decision), the published fit in
-- force (latest_fit) and the rejected fits recorded since that one. tests/data/fit_gate.sql fails
-- the build that MADE a rejected fit (action 'fitted'), or any build with nothing to serve;
-- tests/data/fit_gate_rejected_fits.sql warns in later builds that keep serving the previous
-- published fit. A leaf view, so a failing gate blocks nothing downstream: priors keep covering
-- the whole catalogue from the fit in force.
select
    d.indicator,
    d.fit_id as decided_fit_id,
    d.action,
    d.status as decided_status,
    d.reason,
    l.fit_id as served_fit_id,
    l.methodology_version as served_methodology_version,
    (
        select count(*)
        from fit_runs as f
        where f.indicator = d.indicator
            and f.status = 'rejected'
            and (l.finished_at is null or f.finished_at > l.finished_at)
    ) as rejected_since_served
from fit_decision as d
left join latest_fit as l on l.indicator = d.indicator
