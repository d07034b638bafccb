-- Mean residual per model: the estimate's bias, with the number of requests behind it.
select
    model_id,
    family_id,
    count(*) as n_requests,
    avg(residual) as mean_residual,
    exp(avg(residual)) as bias_factor
from residuals
group by model_id, family_id
