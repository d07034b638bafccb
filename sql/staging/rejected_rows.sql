-- Every input row that staging could not use, with why (DESIGN §4: never silently dropped).
select
    'tier2_estimates' as source,
    c.indicator,
    c.request_id,
    c.reject_reason as reason
from tier2_checked as c
where c.reject_reason is not null
union all
select
    'tier3_measurements' as source,
    c.indicator,
    c.request_id,
    c.reject_reason as reason
from tier3_checked as c
where c.reject_reason is not null
