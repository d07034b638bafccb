"""Prior families: the registry's kernel density and gradient against PyMC's own graph, the
prior strings of the configuration, and every new prior and pooling option through the whole
kernel (value and gradient against the PyTensor model of build.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tierpool.errors import FitError
from tierpool.fit import DEFAULT_HIERARCHY, default_spec, spec_from_config
from tierpool.fit.priors import REGISTRY, Prior, parse_prior, scale_logp_grad

SCALES = ["halfnormal(0.7)", "halfcauchy(2.5)", "halfstudentt(3, 1.5)", "exponential(1.3)", "halfflat"]
POINTS = np.array([1e-3, 0.05, 0.4, 1.0, 2.7, 31.0])


def _pymc_logp_and_grad(prior: Prior):
    """PyMC's log density of the prior's variable and its derivative, as compiled PyTensor functions."""
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt

    with pm.Model():
        var = prior.pymc("s")
    value = pt.dscalar("value")
    logp = pm.logp(var, value)
    return pytensor.function([value], [logp, pytensor.grad(logp, value)])


@pytest.mark.parametrize("text", SCALES + ["tmix_sd(4, 0.8)"])
def test_kernel_density_and_gradient_match_pymc_to_1e_10(text):
    prior = Prior("tmix_sd", (4.0, 0.8)) if text.startswith("tmix") else parse_prior(text, "scale", "test")
    fn = _pymc_logp_and_grad(prior)
    a, b = prior.kernel_args()
    offsets = []
    for s in POINTS:
        value, grad = scale_logp_grad(prior.entry.code, float(s), a, b)
        ref_value, ref_grad = (float(x) for x in fn(s))
        offsets.append(value - ref_value)
        assert grad == pytest.approx(ref_grad, rel=1e-10, abs=1e-10), (text, s)
    # Values agree to 1e-10 up to one constant: PyMC writes some normalisers as pt.log(2) of an
    # integer constant, which PyTensor evaluates in float32 (an offset of ~3e-8, the same at
    # every point, so it changes no posterior).
    assert np.ptp(offsets) < 1e-10, (text, offsets)
    assert abs(offsets[0]) < 1e-7, (text, offsets)


def test_student_t_location_mixture_is_a_student_t():
    """x | v ~ Normal(mu, v), v ~ tmix_sd(nu, sigma) integrates to StudentT(nu, mu, sigma)."""
    from scipy import integrate, stats

    nu, sigma, code = 4.0, 0.8, REGISTRY["tmix_sd"].code
    for x in (0.0, 0.5, 2.0, 6.0):
        def integrand(v):
            return math.exp(scale_logp_grad(code, v, nu, sigma)[0]) * stats.norm.pdf(x, 0.0, v)
        got = integrate.quad(integrand, 0, np.inf, epsabs=0, epsrel=1e-11, limit=200)[0]
        assert got == pytest.approx(stats.t.pdf(x, nu, 0.0, sigma), rel=1e-8)


@pytest.mark.parametrize("text", SCALES[:-1] + ["studentt(3, 0.5, 2)", "normal(1, 2)"])
def test_random_draws_follow_the_density(text):
    kind = "location" if text.startswith(("studentt", "normal")) else "scale"
    prior = parse_prior(text, kind, "test")
    draws = prior.draw(np.random.default_rng(3), 200_000)
    from scipy import stats

    cdf = {
        "halfnormal": stats.halfnorm(scale=0.7).cdf, "halfcauchy": stats.halfcauchy(scale=2.5).cdf,
        "halfstudentt": lambda x: 2.0 * stats.t(3).cdf(x / 1.5) - 1.0, "exponential": stats.expon(scale=1 / 1.3).cdf,
        "studentt": stats.t(3, 0.5, 2).cdf, "normal": stats.norm(1, 2).cdf,
    }[prior.family]
    # Kolmogorov-Smirnov at n = 200k: a wrong family or scale gives p ~ 0
    assert stats.kstest(draws, cdf).pvalue > 1e-4


@pytest.mark.parametrize(("text", "kind", "message"), [
    ("halfcauhy(5)", "scale", "is not a scale prior; allowed: halfnormal(sigma), halfcauchy(beta)"),
    ("halfcauchy(5, 2)", "scale", "takes 1 argument(s): halfcauchy(beta)"),
    ("halfnormal(-1)", "scale", "argument 1 must be > 0"),
    ("normal(0, 1)", "scale", "is not a scale prior"),
    ("halfnormal(1)", "location", "is not a location prior; allowed: normal(mu, sigma), normal(mu, scale)"),
    ("studentt(3, 0)", "location", "takes 3 argument(s): studentt(nu, mu, sigma)"),
    ("normal(a, 1)", "location", "arguments must be numbers"),
])
def test_bad_prior_strings_name_the_key_and_the_allowed_families(text, kind, message):
    with pytest.raises(FitError) as err:
        parse_prior(text, kind, "vars.fit.hierarchy.global.scale")
    assert "vars.fit.hierarchy.global.scale" in str(err.value) and message in str(err.value)


def test_default_mapping_builds_exactly_the_default_spec():
    assert spec_from_config(DEFAULT_HIERARCHY) == default_spec()
    with_global = {**DEFAULT_HIERARCHY, "global": {}}
    assert spec_from_config(with_global) == default_spec(global_level=True)


@pytest.mark.parametrize(("mapping", "message"), [
    ({"levels": [{"name": "a", "column": "a", "scael": "halfnormal(1)"}]},
     "hierarchy.levels[0].scael: unknown key; did you mean 'scale'?"),
    ({"likelihood": "cells", "levels": [{"name": "a", "column": "a"}]}, "use cells_nms or cells_se"),
    ({"levels": [{"name": "a", "column": "a"}], "residual_sd": {"pooling": "county"}},
     "residual_sd pooling 'county' is not one of ['per_leaf', 'shared', 'a']"),
    ({"levels": [{"name": "a", "column": "a"}, {"name": "b", "column": "b", "scale": "halfnormal(1)"}]},
     "hierarchy.levels[1] (b): scale and location priors are set on the top level only"),
    ({"levels": [{"name": "a", "column": "a"}], "global": {"location": "normal(0, scale)"}},
     "the global location has no own scale"),
    ({"levels": [{"name": "a", "column": "a"}], "additive": {"levels": [
        {"name": "r", "column": "r", "location": "normal(1, scale)"}]}}, "its location mean must be 0"),
])
def test_bad_mapping_names_the_key_and_allowed_values(mapping, message):
    with pytest.raises(FitError) as err:
        spec_from_config(mapping)
    assert message in str(err.value)
