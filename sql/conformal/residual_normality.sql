-- Normality watch per indicator x family (DESIGN §6: the methodology assumes Gaussian
-- residuals and says it watches this). Residuals are standardised the way the model of
-- DESIGN §5 sees them, from the data alone (no fit needed): location per cell
-- (indicator x model x region: the cell mean), scale per model (sigma_model estimated by
-- the pooled within-cell sd sqrt(sum S / (sum n - cells))), and the deviation from a
-- cell's own mean divided by sqrt(1 - 1/n) so every z has variance 1 under the model:
--     z = (residual - cell mean) / (sigma_model * sqrt(1 - 1/n_cell))
-- One-residual cells carry no deviation and are left out. Skewness and excess kurtosis
-- are the moment estimators m3/m2^1.5 and m4/m2^2 - 3 (scipy.stats.skew / kurtosis with
-- their defaults). tail_share is the share of |z| > 3, against the Gaussian 0.2700%;
-- tail_p_value = P(X >= tail_count) for X ~ Binomial(n, 0.0027) (exact: 1 minus the sum of
-- the lgamma-based pmf over 0..tail_count-1).
-- heavy_tailed (thresholds in calibration_config): excess kurtosis above
-- normality_max_excess_kurtosis AND above normality_kurtosis_z standard errors
-- sqrt(24/n) with n >= normality_min_n (a fixed kurtosis bar alone flags small Gaussian
-- families by chance: at n = 132 the sd of the estimate is 0.43), or a tail share at
-- least normality_tail_ratio times the Gaussian one with tail_p_value < normality_tail_p.
with cfg as (
    select
        max(c.value) filter (where c.key = 'normality_min_n') as min_n,
        max(c.value) filter (where c.key = 'normality_max_excess_kurtosis') as max_kurtosis,
        max(c.value) filter (where c.key = 'normality_kurtosis_z') as kurtosis_z,
        max(c.value) filter (where c.key = 'normality_tail_ratio') as tail_ratio,
        max(c.value) filter (where c.key = 'normality_tail_p') as tail_p,
        0.0026997960632601866 as gaussian_tail  -- P(|N(0,1)| > 3)
    from calibration_config as c
),
cells as (
    select
        r.indicator,
        r.model_id,
        r.region_id,
        count(*) as n_cell,
        avg(r.residual) as cell_mean
    from residuals as r
    group by r.indicator, r.model_id, r.region_id
),
deviations as (
    select
        r.indicator,
        r.model_id,
        r.family_id,
        r.region_id,
        c.n_cell,
        r.residual - c.cell_mean as deviation
    from residuals as r
    inner join cells as c
        on c.indicator = r.indicator and c.model_id = r.model_id and c.region_id = r.region_id
),
model_scale as (
    -- sum n - cells degrees of freedom: each cell spends one on its mean
    select
        d.indicator,
        d.model_id,
        sqrt(sum(d.deviation * d.deviation) / (count(*) - count(distinct d.region_id)))
            as sigma_model
    from deviations as d
    group by d.indicator, d.model_id
    having count(*) > count(distinct d.region_id)
),
standardised as (
    select
        d.indicator,
        d.family_id,
        d.deviation / (s.sigma_model * sqrt(1 - 1 / d.n_cell)) as z
    from deviations as d
    inner join model_scale as s on s.indicator = d.indicator and s.model_id = d.model_id
    where d.n_cell >= 2 and s.sigma_model > 0
),
centred as (
    select
        z.indicator,
        z.family_id,
        z.z,
        z.z - avg(z.z) over (partition by z.indicator, z.family_id) as dz
    from standardised as z
),
moments as (
    select
        c.indicator,
        c.family_id,
        count(*) as n,
        avg(c.dz * c.dz) as m2,
        avg(c.dz * c.dz * c.dz) as m3,
        avg(c.dz * c.dz * c.dz * c.dz) as m4,
        count(*) filter (where abs(c.z) > 3) as tail_count
    from centred as c
    group by c.indicator, c.family_id
),
tail_cdf as (
    -- P(X <= tail_count - 1): the pmf over 0..tail_count-1 only (tail counts are small)
    select
        t.indicator,
        t.family_id,
        sum(exp(
            lgamma(t.n + 1) - lgamma(t.j + 1) - lgamma(t.n - t.j + 1)
            + t.j * ln(cfg.gaussian_tail) + (t.n - t.j) * ln(1 - cfg.gaussian_tail)
        )) as below
    from (
        select
            m.indicator, m.family_id, m.n, unnest(generate_series(0, m.tail_count - 1)) as j
        from moments as m
        where m.tail_count > 0
    ) as t
    cross join cfg
    group by t.indicator, t.family_id
),
stats as (
    select
        m.indicator,
        m.family_id,
        m.n,
        case when m.m2 > 0 then m.m3 / pow(m.m2, 1.5) end as skewness,
        case when m.m2 > 0 then m.m4 / (m.m2 * m.m2) - 3 end as excess_kurtosis,
        m.tail_count,
        m.tail_count / m.n as tail_share,
        cfg.gaussian_tail as expected_tail_share,
        case when m.tail_count = 0 then 1.0 else greatest(0.0, 1 - t.below) end as tail_p_value,
        cfg.min_n,
        cfg.max_kurtosis,
        cfg.kurtosis_z,
        cfg.tail_ratio,
        cfg.tail_p
    from moments as m
    cross join cfg
    left join tail_cdf as t on t.indicator = m.indicator and t.family_id = m.family_id
)
select
    s.indicator,
    s.family_id,
    s.n,
    s.skewness,
    s.excess_kurtosis,
    s.tail_count,
    s.tail_share,
    s.expected_tail_share,
    s.tail_share / s.expected_tail_share as tail_ratio,
    s.tail_p_value,
    coalesce(s.n >= s.min_n and s.excess_kurtosis > s.max_kurtosis
        and s.excess_kurtosis > s.kurtosis_z * sqrt(24.0 / s.n), false)
    or (s.tail_share >= s.tail_ratio * s.expected_tail_share and s.tail_p_value < s.tail_p)
        as heavy_tailed,
    nullif(concat_ws('; ',
        case
            when s.n >= s.min_n and s.excess_kurtosis > s.max_kurtosis
                and s.excess_kurtosis > s.kurtosis_z * sqrt(24.0 / s.n)
                then 'excess kurtosis ' || cast(round(s.excess_kurtosis, 2) as varchar)
                    || ' > ' || cast(s.max_kurtosis as varchar)
        end,
        case
            when s.tail_share >= s.tail_ratio * s.expected_tail_share and s.tail_p_value < s.tail_p
                then 'tail share ' || cast(round(100 * s.tail_share, 2) as varchar)
                    || '% vs 0.27% (p ' || printf('%.1e', s.tail_p_value) || ')'
        end
    ), '') as heavy_tail_reason
from stats as s
