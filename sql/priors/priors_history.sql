-- Priors of EVERY published fit for the current catalogue: one row per published
-- (fit_id, indicator) x catalogue model x catalogue region. `priors` keeps the latest.
--
-- The two sides set source_level / region_level and the predictive kind; their means and
-- variances (from the posterior summaries) are only the FALLBACK of the bias (see below).
-- Model side (source_level): 'model' if the model was fitted (its identified 'level',
-- the model at the average region); else 'family' if its family was fitted (a new model
-- mu_new ~ N(mu_f, sigma_f): mean E[mu_f], variance Var[mu_f] + E[sigma_f^2]); else
-- 'global' (a new model of a never-seen family: the fit's new_family_level and
-- new_family_sigma draws in posterior_predictive, so a learned global level is respected;
-- fits recorded without them fall back to the verbatim hyperprior sigma ~ HalfNormal(0.5):
-- mean 0, variance 2 * E[sigma^2] = 0.5).
-- Region side (region_level): 'region' if fitted (its sum-to-zero deviation); else
-- 'class' (mu_g ~ N(mu_c, sigma_c): mean E[mu_c], variance Var[mu_c] + E[sigma_c^2]);
-- else 'global' (a never-seen class: the verbatim class prior sigma_c ~ HalfNormal(0.5),
-- mean 0, variance 2 * E[sigma_c^2] = 0.5; the fit emits no *_new_class kinds, so such rows
-- always use this fallback).
-- bias_mean, bias_sd, bias_q05, bias_q95: the JOINT posterior of mu_model + mu_region of the
-- cell, i.e. the fit's bias_<kind> rows in posterior_predictive (the location draws behind the
-- predictive row of the same kind and ids, so the posterior correlation between the model side
-- and the region side is in them; for a never-seen family they are the fit's new-family draws,
-- so a learned global level is respected). Fallback where the fit has no such row (fits recorded
-- before those rows existed, and kinds the fit does not emit, e.g. a never-seen region class):
-- bias_mean = model side mean + region side mean, bias_sd = sqrt of the sum of the two sides'
-- variances (correlation ignored), bias_q05/q95 = bias_mean -/+ 1.645 bias_sd (normal).
-- dispersion = E[sigma_model] (family sigma for unseen models; for unseen families the
-- fit's new_family_sigma, else the prior E[sigma] = 0.5*sqrt(2/pi)).
-- The predictive columns come from posterior_predictive (kind chosen by the two levels,
-- see predictive_kind); when the fit did not emit that kind, a normal approximation
-- N(bias_mean, bias_sd^2 + E[sigma^2]) of the summed sides is used and predictive_kind says
-- 'normal_approx'.
with published as (
    select
        f.fit_id,
        f.indicator,
        mr.version as methodology_version
    from fit_runs as f
    left join methodology_releases as mr on mr.fit_id = f.fit_id
    where f.status = 'published'
),
model_level as (
    select p.fit_id, p.indicator, p.model_id, p.mean, p.sd
    from posterior_models as p where p.parameter = 'level'
),
model_sigma as (
    select p.fit_id, p.indicator, p.model_id, p.mean, p.sd
    from posterior_models as p where p.parameter = 'sigma'
),
family_mu as (
    select p.fit_id, p.indicator, p.family_id, p.mean, p.sd
    from posterior_families as p where p.parameter = 'mu'
),
family_sigma as (
    select p.fit_id, p.indicator, p.family_id, p.mean, p.sd
    from posterior_families as p where p.parameter = 'sigma'
),
region_mu as (
    select p.fit_id, p.indicator, p.region_id, p.mean, p.sd
    from posterior_regions as p where p.parameter = 'mu'
),
class_mu as (
    select p.fit_id, p.indicator, p.region_class_id, p.mean, p.sd
    from posterior_region_classes as p where p.parameter = 'mu'
),
class_sigma as (
    select p.fit_id, p.indicator, p.region_class_id, p.mean, p.sd
    from posterior_region_classes as p where p.parameter = 'sigma'
),
new_family as (
    select
        p.fit_id,
        p.indicator,
        max(p.mean) filter (where p.kind = 'new_family_level') as level_mean,
        max(p.sd) filter (where p.kind = 'new_family_level') as level_sd,
        max(p.mean) filter (where p.kind = 'new_family_sigma') as sigma_mean,
        max(p.sd) filter (where p.kind = 'new_family_sigma') as sigma_sd
    from posterior_predictive as p
    where p.kind in ('new_family_level', 'new_family_sigma')
    group by p.fit_id, p.indicator
),
sides as (
    select
        p.fit_id,
        p.indicator,
        p.methodology_version,
        m.model_id,
        m.family_id,
        r.region_id,
        r.region_class_id,
        case
            when ml.model_id is not null then 'model'
            when fm.family_id is not null then 'family'
            else 'global'
        end as source_level,
        case
            when rm.region_id is not null then 'region'
            when cm.region_class_id is not null then 'class'
            else 'global'
        end as region_level,
        case
            when ml.model_id is not null then ml.mean
            when fm.family_id is not null then fm.mean
            else coalesce(nf.level_mean, 0.0)
        end as model_side_mean,
        case
            when ml.model_id is not null then ml.sd * ml.sd
            when fm.family_id is not null
                then fm.sd * fm.sd + fs.mean * fs.mean + fs.sd * fs.sd
            else coalesce(nf.level_sd * nf.level_sd, 0.5)
        end as model_side_var,
        case
            when ml.model_id is not null then ms.mean
            when fm.family_id is not null then fs.mean
            else coalesce(nf.sigma_mean, 0.5 * sqrt(2.0 / pi()))
        end as dispersion,
        case
            when ml.model_id is not null then ms.mean * ms.mean + ms.sd * ms.sd
            when fm.family_id is not null then fs.mean * fs.mean + fs.sd * fs.sd
            else coalesce(nf.sigma_mean * nf.sigma_mean + nf.sigma_sd * nf.sigma_sd, 0.25)
        end as dispersion_sq,
        case
            when rm.region_id is not null then rm.mean
            when cm.region_class_id is not null then cm.mean
            else 0.0
        end as region_side_mean,
        case
            when rm.region_id is not null then rm.sd * rm.sd
            when cm.region_class_id is not null
                then cm.sd * cm.sd + cs.mean * cs.mean + cs.sd * cs.sd
            else 0.5
        end as region_side_var
    from published as p
    cross join models as m
    cross join regions as r
    left join model_level as ml
        on ml.fit_id = p.fit_id and ml.indicator = p.indicator and ml.model_id = m.model_id
    left join model_sigma as ms
        on ms.fit_id = p.fit_id and ms.indicator = p.indicator and ms.model_id = m.model_id
    left join family_mu as fm
        on fm.fit_id = p.fit_id and fm.indicator = p.indicator and fm.family_id = m.family_id
    left join family_sigma as fs
        on fs.fit_id = p.fit_id and fs.indicator = p.indicator and fs.family_id = m.family_id
    left join region_mu as rm
        on rm.fit_id = p.fit_id and rm.indicator = p.indicator and rm.region_id = r.region_id
    left join class_mu as cm
        on cm.fit_id = p.fit_id and cm.indicator = p.indicator
        and cm.region_class_id = r.region_class_id
    left join class_sigma as cs
        on cs.fit_id = p.fit_id and cs.indicator = p.indicator
        and cs.region_class_id = r.region_class_id
    left join new_family as nf
        on nf.fit_id = p.fit_id and nf.indicator = p.indicator
),
with_kind as (
    select
        s.fit_id,
        s.indicator,
        s.methodology_version,
        s.model_id,
        s.family_id,
        s.region_id,
        s.region_class_id,
        s.source_level,
        s.region_level,
        s.model_side_mean + s.region_side_mean as sides_mean,  -- fallback only (see top)
        sqrt(s.model_side_var + s.region_side_var) as sides_sd,
        s.dispersion,
        s.dispersion_sq,
        case s.source_level
            when 'model' then 'model_'
            when 'family' then 'new_model_'
            else 'new_family_'
        end
        || case s.region_level
            when 'region' then 'region'
            when 'class' then 'new_region'
            else 'new_class'
        end as kind
    from sides as s
)
select
    k.indicator,
    k.model_id,
    k.family_id,
    k.region_id,
    k.region_class_id,
    coalesce(pb.mean, k.sides_mean) as bias_mean,
    coalesce(pb.sd, k.sides_sd) as bias_sd,
    coalesce(pb.q05, k.sides_mean - 1.6448536269514722 * k.sides_sd) as bias_q05,
    coalesce(pb.q95, k.sides_mean + 1.6448536269514722 * k.sides_sd) as bias_q95,
    k.dispersion,
    coalesce(pp.mean, k.sides_mean) as pred_mean,
    coalesce(pp.sd, sqrt(k.sides_sd * k.sides_sd + k.dispersion_sq)) as pred_sd,
    coalesce(
        pp.q05, k.sides_mean - 1.6448536269514722 * sqrt(k.sides_sd * k.sides_sd + k.dispersion_sq)
    ) as pred_q05,
    coalesce(
        pp.q95, k.sides_mean + 1.6448536269514722 * sqrt(k.sides_sd * k.sides_sd + k.dispersion_sq)
    ) as pred_q95,
    k.source_level,
    k.region_level,
    k.fit_id,
    k.methodology_version,
    case
        when pp.kind is null then 'normal_approx'
        else pp.kind
    end as predictive_kind,
    cast(null as bigint) as interim_measurements,  -- set by `priors` (interim updates of the fit in force)
    cast(null as boolean) as extrapolated  -- set by `priors` (pairs never measured in the fit's window)
from with_kind as k
left join posterior_predictive as pp
    on pp.fit_id = k.fit_id
    and pp.indicator = k.indicator
    and pp.kind = k.kind
    and (k.source_level <> 'model' or pp.model_id = k.model_id)
    and (k.source_level <> 'family' or pp.family_id = k.family_id)
    and (k.region_level <> 'region' or pp.region_id = k.region_id)
    and (k.region_level <> 'class' or pp.region_class_id = k.region_class_id)
left join posterior_predictive as pb
    on pb.fit_id = k.fit_id
    and pb.indicator = k.indicator
    and pb.kind = 'bias_' || k.kind
    and (k.source_level <> 'model' or pb.model_id = k.model_id)
    and (k.source_level <> 'family' or pb.family_id = k.family_id)
    and (k.region_level <> 'region' or pb.region_id = k.region_id)
    and (k.region_level <> 'class' or pb.region_class_id = k.region_class_id)
