-- One row per request: how far the estimate is from the measurement, on the log scale
-- (> 0: the estimate is too high). A model is one SELECT; its name is the file's name, and
-- the tables it reads (here the seeds measurements and models) become its parents.
select
    m.request_id,
    m.model_id,
    c.family_id,
    ln(m.estimate_wh) - ln(m.measured_wh) as residual
from measurements as m
inner join models as c on c.model_id = m.model_id
