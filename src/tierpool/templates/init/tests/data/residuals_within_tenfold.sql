-- severity: warn
-- A singular data test: the rows it returns are failures. An estimate more than ten times
-- off its measurement is more likely a unit error than a bias; warn (not fail) on it.
select request_id, model_id, residual
from residuals
where abs(residual) > ln(10)
