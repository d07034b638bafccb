-- severity: warn
-- Families whose standardised residuals are heavy-tailed (residual_normality.heavy_tailed:
-- excess kurtosis or |z| > 3 share beyond the calibration_config thresholds). The
-- methodology assumes Gaussian residuals; the remedy is the fit's student_t likelihood.
select n.indicator, n.family_id, n.n, n.skewness, n.excess_kurtosis, n.tail_share,
    n.tail_p_value, n.heavy_tail_reason
from residual_normality as n
where n.heavy_tailed
