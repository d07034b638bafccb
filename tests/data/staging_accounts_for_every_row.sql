-- Every fact row is either staged or rejected: no row silently dropped (DESIGN §4).
-- Returns a row per source whose counts do not add up.
with counts as (
    select
        'tier2_estimates' as source,
        (select count(*) from tier2_estimates) as input_rows,
        (select count(*) from stg_tier2) as staged_rows,
        (select count(*) from rejected_rows where source = 'tier2_estimates') as rejected
    union all
    select
        'tier3_measurements' as source,
        (select count(*) from tier3_measurements) as input_rows,
        (select count(*) from stg_tier3) as staged_rows,
        (select count(*) from rejected_rows where source = 'tier3_measurements') as rejected
)
select c.source, c.input_rows, c.staged_rows, c.rejected
from counts as c
where c.input_rows <> c.staged_rows + c.rejected
