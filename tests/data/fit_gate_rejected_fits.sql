-- severity: warn
-- Rejected fits recorded since the published fit in force, other than one made by this build
-- (that one fails fit_gate.sql): the build passes and serves the previous published fit, and
-- this warning names each rejected fit and the fit still served.
select
    f.fit_id as rejected_fit_id,
    f.indicator,
    s.served_fit_id,
    s.served_methodology_version,
    f.reason
from fit_runs as f
inner join fit_gate_status as s on s.indicator = f.indicator
where f.status = 'rejected'
    and s.served_fit_id is not null
    and f.finished_at > (select l.finished_at from latest_fit as l where l.indicator = f.indicator)
    and not (s.action = 'fitted' and s.decided_fit_id = f.fit_id)
