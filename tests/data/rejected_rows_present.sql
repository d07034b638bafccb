-- severity: warn
-- Surfaces the rejected rows in the build output (count per source and reason). Bad
-- rows are expected in small numbers; rejected_rows_share fails the build when they
-- are not small.
select r.source, r.reason, count(*) as rejected
from rejected_rows as r
group by r.source, r.reason
