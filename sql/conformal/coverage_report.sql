-- Held-out coverage of the conformal intervals on the TEST fold, per fold mode ('random':
-- test-fold residuals inside the fit's window; 'out_of_time': test-fold residuals of the
-- quarter after it) and per grouping: 'cell' (indicator x model x region), 'family_class'
-- (indicator x family x region class), 'conformal_level' (the cells calibrated at each
-- fallback level of conformal_assignment), 'indicator', and 'overall' (all indicators).
-- A residual is covered when |residual - pred_mean| <= multiplier * pred_sd (the interval
-- pred_mean +/- multiplier * pred_sd in log space; mapped to values it is conformal_low..
-- conformal_high of tier2_calibrated). Test residuals whose cell has no finite multiplier
-- are counted in n_without_interval and left out of n.
-- Widths: width_log = 2 * multiplier * pred_sd; width_pct = 100 * (exp(h) - exp(-h)) with
-- h = multiplier * pred_sd, the value interval's width as a percentage of the calibrated
-- median estimate * exp(-pred_mean). prior_coverage is the coverage of the uncalibrated
-- posterior predictive 90% interval [pred_q05, pred_q95] on the same residuals.
-- Status: exact two-sided binomial test of `covered` out of n against the nominal 1 - alpha
-- (p-value = sum of the Binomial(n, 1 - alpha) probabilities not larger than that of the
-- observed count, scipy.stats.binomtest's 'two-sided'; the pmf from lgamma, summed over
-- every count 0..n). p < coverage_fail_p: 'fail', p < coverage_review_p: 'review', else
-- 'pass'. A fixed band (e.g. 0.85..0.95) ignores n: an exactly right interval covers 9 or
-- fewer of 12 test points (<= 0.75) with probability 0.11, so over ~1,500 small cells a
-- band fails well over a hundred good cells by chance; the binomial p-value accounts for n
-- (and 1,500 cells still give ~1.5 chance 'fail's at p < 0.001, ~75 'review's at 0.05).
-- Practical significance: a group whose coverage is within coverage_tolerance of nominal
-- passes whatever its p-value (a 100M-row build tested cells at n ~ 34,000, where 0.906
-- against 0.90 has p = 0.0002); 'review' and 'fail' need the p-value AND a larger miss.
-- Hold-out modes ('leave_models_out', 'leave_regions_out', 'leave_families_out', from
-- holdout_scores when vars.validation.holdout_modes is set): whole groups left out of a refit,
-- their rows scored against the prior a new member gets; grouping 'indicator' and 'overall',
-- the 90% predictive interval (nominal 0.90, prior_coverage = empirical_coverage), with its
-- exact log predictive density (elpd, elpd_se; NULL for the conformal modes). Rows of one
-- held-out group share its bias, so there the test uses n_effective (Kish's effective number
-- of groups, holdout_scores) instead of n; n_effective = n for the conformal modes.
with cfg as (
    select
        max(c.value) filter (where c.key = 'alpha') as alpha,
        max(c.value) filter (where c.key = 'coverage_review_p') as review_p,
        max(c.value) filter (where c.key = 'coverage_fail_p') as fail_p,
        max(c.value) filter (where c.key = 'coverage_tolerance') as tolerance
    from calibration_config as c
),
tested as (
    select
        a.mode,
        s.indicator,
        s.model_id,
        s.family_id,
        s.region_id,
        s.region_class_id,
        a.conformal_level,
        a.multiplier is not null as has_interval,
        s.score <= a.multiplier as covered,
        s.residual between s.pred_q05 and s.pred_q95 as prior_covered,
        a.multiplier * s.pred_sd as half_width
    from conformal_scores as s
    inner join conformal_assignment as a
        on a.indicator = s.indicator and a.model_id = s.model_id and a.region_id = s.region_id
        and a.mode = case s.period when 'in_window' then 'random' else 'out_of_time' end
    where s.fold = 'test' and s.period in ('in_window', 'next_quarter')
),
grouped as (
    select
        t.mode, 'cell' as grouping, t.indicator, t.model_id, t.family_id, t.region_id,
        t.region_class_id, null as conformal_level, t.has_interval, t.covered, t.prior_covered,
        t.half_width
    from tested as t
    union all
    select
        t.mode, 'family_class' as grouping, t.indicator, null as model_id, t.family_id,
        null as region_id, t.region_class_id, null as conformal_level, t.has_interval,
        t.covered, t.prior_covered, t.half_width
    from tested as t
    union all
    select
        t.mode, 'conformal_level' as grouping, t.indicator, null as model_id,
        null as family_id, null as region_id, null as region_class_id, t.conformal_level,
        t.has_interval, t.covered, t.prior_covered, t.half_width
    from tested as t
    union all
    select
        t.mode, 'indicator' as grouping, t.indicator, null as model_id, null as family_id,
        null as region_id, null as region_class_id, null as conformal_level, t.has_interval,
        t.covered, t.prior_covered, t.half_width
    from tested as t
    union all
    select
        t.mode, 'overall' as grouping, null as indicator, null as model_id, null as family_id,
        null as region_id, null as region_class_id, null as conformal_level, t.has_interval,
        t.covered, t.prior_covered, t.half_width
    from tested as t
),
conformal_groups as (
    select
        g.mode,
        g.grouping,
        g.indicator,
        g.model_id,
        g.family_id,
        g.region_id,
        g.region_class_id,
        g.conformal_level,
        count(*) filter (where g.has_interval) as n,
        count(*) filter (where not g.has_interval) as n_without_interval,
        count(*) filter (where g.covered) as n_covered,
        avg(case when g.prior_covered then 1.0 else 0.0 end) as prior_coverage,
        avg(2 * g.half_width) as mean_width_log,
        avg(100 * (exp(g.half_width) - exp(-g.half_width))) as mean_width_pct
    from grouped as g
    group by
        g.mode, g.grouping, g.indicator, g.model_id, g.family_id, g.region_id,
        g.region_class_id, g.conformal_level
),
holdout as (
    select
        h.mode,
        h.indicator,
        h.n_rows,
        cast(h.n_effective as double) as n_effective,
        h.n_covered,
        h.mean_width_log,
        h.elpd,
        h.elpd_se
    from holdout_scores as h
),
groups as (
    select
        g.*,
        g.n as n_effective,
        g.n_covered as n_covered_effective,
        1 - cfg.alpha as nominal,
        cast(null as double) as elpd,
        cast(null as double) as elpd_se
    from conformal_groups as g
    cross join cfg
    union all
    select
        h.mode, 'indicator' as grouping, h.indicator, null as model_id, null as family_id,
        null as region_id, null as region_class_id, null as conformal_level, h.n_rows as n,
        0 as n_without_interval, h.n_covered, h.n_covered / h.n_rows as prior_coverage,
        h.mean_width_log, null as mean_width_pct,
        greatest(1, cast(round(h.n_effective) as bigint)) as n_effective,
        cast(round(cast(greatest(1, round(h.n_effective)) * h.n_covered / h.n_rows as double)) as bigint)
            as n_covered_effective,
        0.9 as nominal, h.elpd, h.elpd_se
    from holdout as h
    where h.n_rows > 0
    union all
    select
        h.mode, 'overall' as grouping, null as indicator, null as model_id, null as family_id,
        null as region_id, null as region_class_id, null as conformal_level,
        cast(sum(h.n_rows) as bigint) as n, 0 as n_without_interval,
        cast(sum(h.n_covered) as bigint) as n_covered,
        sum(h.n_covered) / sum(h.n_rows) as prior_coverage,
        sum(h.mean_width_log * h.n_rows) / sum(h.n_rows) as mean_width_log,
        null as mean_width_pct,
        -- indicators are scored on the same groups: their effective sizes add, at most
        greatest(1, cast(round(sum(h.n_effective)) as bigint)) as n_effective,
        cast(round(cast(greatest(1, round(sum(h.n_effective))) * sum(h.n_covered) / sum(h.n_rows) as double))
            as bigint) as n_covered_effective,
        0.9 as nominal, sum(h.elpd) as elpd,
        sqrt(sum(h.elpd_se * h.elpd_se)) as elpd_se
    from holdout as h
    where h.n_rows > 0
    group by h.mode
),
numbered as (
    select
        g.mode,
        g.grouping,
        g.indicator,
        g.model_id,
        g.family_id,
        g.region_id,
        g.region_class_id,
        g.conformal_level,
        g.nominal,
        g.n_effective as n,
        g.n_covered_effective as n_covered,
        unnest(generate_series(0, g.n_effective)) as j
    from groups as g
    where g.n > 0
),
log_pmf as (
    select
        x.mode,
        x.grouping,
        x.indicator,
        x.model_id,
        x.family_id,
        x.region_id,
        x.region_class_id,
        x.conformal_level,
        x.j = x.n_covered as observed,
        lgamma(x.n + 1) - lgamma(x.j + 1) - lgamma(x.n - x.j + 1)
            + x.j * ln(x.nominal) + (x.n - x.j) * ln(1 - x.nominal) as lp
    from numbered as x
),
p_values as (
    select
        l.mode,
        l.grouping,
        l.indicator,
        l.model_id,
        l.family_id,
        l.region_id,
        l.region_class_id,
        l.conformal_level,
        -- relative tolerance 1e-7 as in scipy: counts as likely as the observed one count
        least(1.0, sum(exp(l.lp)) filter (
            where l.lp <= o.lp_observed + ln(1 + 1e-7)
        )) as p_value
    from log_pmf as l
    inner join (
        select
            lo.mode, lo.grouping, lo.indicator, lo.model_id, lo.family_id, lo.region_id,
            lo.region_class_id, lo.conformal_level, lo.lp as lp_observed
        from log_pmf as lo
        where lo.observed
    ) as o
        on o.mode = l.mode and o.grouping = l.grouping
        and o.indicator is not distinct from l.indicator
        and o.model_id is not distinct from l.model_id
        and o.family_id is not distinct from l.family_id
        and o.region_id is not distinct from l.region_id
        and o.region_class_id is not distinct from l.region_class_id
        and o.conformal_level is not distinct from l.conformal_level
    group by
        l.mode, l.grouping, l.indicator, l.model_id, l.family_id, l.region_id,
        l.region_class_id, l.conformal_level
)
select
    g.mode,
    g.grouping,
    g.indicator,
    g.model_id,
    g.family_id,
    g.region_id,
    g.region_class_id,
    g.conformal_level,
    g.nominal,
    g.n,
    g.n_effective,
    g.n_covered,
    g.n_without_interval,
    case when g.n > 0 then g.n_covered / g.n end as empirical_coverage,
    g.prior_coverage,
    g.mean_width_log,
    g.mean_width_pct,
    g.elpd,
    g.elpd_se,
    p.p_value,
    case
        when g.n = 0 then 'no_interval'
        when abs(g.n_covered / g.n - g.nominal) <= cfg.tolerance then 'pass'
        when p.p_value < cfg.fail_p then 'fail'
        when p.p_value < cfg.review_p then 'review'
        else 'pass'
    end as status
from groups as g
cross join cfg
left join p_values as p
    on p.mode = g.mode and p.grouping = g.grouping
    and p.indicator is not distinct from g.indicator
    and p.model_id is not distinct from g.model_id
    and p.family_id is not distinct from g.family_id
    and p.region_id is not distinct from g.region_id
    and p.region_class_id is not distinct from g.region_class_id
    and p.conformal_level is not distinct from g.conformal_level
