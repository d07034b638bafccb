-- The fit in force for each indicator: the latest PUBLISHED fit (by finished_at; fit_id
-- breaks ties), with its methodology version. Rejected fits never appear here.
select
    ranked.indicator,
    ranked.fit_id,
    ranked.methodology_version,
    ranked.window_end,
    ranked.finished_at
from (
    select
        f.indicator,
        f.fit_id,
        mr.version as methodology_version,
        f.window_end,
        f.finished_at,
        row_number() over (
            partition by f.indicator order by f.finished_at desc, f.fit_id desc
        ) as recency
    from fit_runs as f
    left join methodology_releases as mr on mr.fit_id = f.fit_id
    where f.status = 'published'
) as ranked
where ranked.recency = 1
