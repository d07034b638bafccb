-- More than 5% of a source's rows rejected means a broken feed, not a few bad rows.
with inputs as (
    select 'tier2_estimates' as source, count(*) as input_rows from tier2_estimates
    union all
    select 'tier3_measurements' as source, count(*) as input_rows from tier3_measurements
),
rejected as (
    select r.source, count(*) as rejected from rejected_rows as r group by r.source
)
select i.source, i.input_rows, r.rejected
from inputs as i
inner join rejected as r on r.source = i.source
where r.rejected > 0.05 * i.input_rows
