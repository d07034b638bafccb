"""Prior families: one registry entry each, used by every path of a fit.

An entry gives, for one family, everything a fit needs of it:

* its **log density and gradient** in the numba kernel (:func:`scale_logp_grad`, one branch per
  code; the kernel samples the scales in ``u = log σ``),
* its **PyMC constructor** (the PyTensor model of ``build.py``, the Student-t path and the
  reference the kernel is tested against),
* its **random draw** (synthetic data, simulation-based calibration, prior predictive rows).

Scale priors (``σ > 0``): ``halfnormal(s)``, ``halfcauchy(s)``, ``halfstudentt(nu, s)``,
``exponential(rate)``, ``halfflat``. Location priors: ``normal(mu, sigma)``, ``normal(mu, scale)``
(the methodology's ``Normal(mu, own σ)`` of a top level: the literal word ``scale`` names the group's
own scale), ``studentt(nu, mu, sigma)`` and ``flat``. Every location is integrated out exactly given
the scales (``gaussian.py``), so a Student-t location is written as the scale mixture it is:
``x ~ Normal(mu, v)`` with ``v² ~ InvGamma(nu/2, nu·sigma²/2)`` (marginally ``StudentT(nu, mu,
sigma)``), and ``v`` is sampled like any other scale with the internal family ``tmix_sd``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from tierpool.errors import FitError
from tierpool.fit.numba_linalg import FASTMATH

# kernel codes of the scale families (HALFNORMAL_PARENT: σ ~ HalfNormal(σ_parent), the rule
# below a side's top level, whose sd is another entry of θ)
HALFNORMAL, HALFNORMAL_PARENT, HALFFLAT, HALFCAUCHY, HALFSTUDENTT, EXPONENTIAL, TMIX_SD = range(7)

_LOG2 = math.log(2.0)
_LOG_PI = math.log(math.pi)
_LOG_HALFNORMAL_CONST = 0.5 * math.log(2.0 / math.pi)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)  # the kernel's flags
def scale_logp_grad(code: int, s: float, a: float, b: float) -> tuple[float, float]:
    """``(log p(s), d log p / ds)`` of a fixed-argument scale prior at ``s > 0`` (``a, b``: its args)."""
    if code == HALFNORMAL:  # a = sd (the constant written as before: same bits, same sampler path)
        return _LOG_HALFNORMAL_CONST - math.log(a) - 0.5 * (s / a) ** 2, -s / a**2
    if code == HALFCAUCHY:  # a = scale
        return _LOG2 - _LOG_PI - math.log(a) - math.log1p((s / a) ** 2), -2.0 * s / (a * a + s * s)
    if code == HALFSTUDENTT:  # a = nu, b = sd
        z = s / b
        lp = (_LOG2 + math.lgamma(0.5 * (a + 1.0)) - math.lgamma(0.5 * a) - 0.5 * math.log(a * math.pi)
              - math.log(b) - 0.5 * (a + 1.0) * math.log1p(z * z / a))
        return lp, -(a + 1.0) * s / (a * b * b + s * s)
    if code == EXPONENTIAL:  # a = rate
        return math.log(a) - a * s, -a
    if code == TMIX_SD:  # a = nu, b = sigma: s² ~ InvGamma(nu/2, nu·b²/2)
        alpha, beta = 0.5 * a, 0.5 * a * b * b
        lp = alpha * math.log(beta) - math.lgamma(alpha) + _LOG2 - (2.0 * alpha + 1.0) * math.log(s) - beta / (s * s)
        return lp, -(2.0 * alpha + 1.0) / s + 2.0 * beta / s**3
    return 0.0, 0.0  # HALFFLAT


@dataclass(frozen=True)
class Prior:
    """A parsed prior string: its family and numeric arguments (``own_scale``: ``normal(mu, scale)``)."""

    family: str
    args: tuple[float, ...] = ()
    own_scale: bool = False

    def __str__(self) -> str:
        shown = [_num(a) for a in self.args] + (["scale"] if self.own_scale else [])
        return self.family if self.family in ("flat", "halfflat") else f"{self.family}({', '.join(shown)})"

    @property
    def entry(self) -> PriorFamily:
        """Its registry entry."""
        return REGISTRY[self.family]

    @property
    def mean(self) -> float:
        """Location mean (0 for ``flat``)."""
        if self.family == "normal":
            return self.args[0]
        if self.family == "studentt":
            return self.args[1]
        return 0.0

    @property
    def fixed_sd(self) -> float | None:
        """The fixed sd of a ``normal(mu, sigma)`` location, else None."""
        return self.args[1] if self.family == "normal" and not self.own_scale else None

    def kernel_args(self) -> tuple[float, float]:
        """``(a, b)`` for :func:`scale_logp_grad`."""
        padded = (*self.args, 0.0, 0.0)
        return float(padded[0]), float(padded[1])

    def pymc(self, name: str, dims: str | None = None) -> Any:
        """The PyMC random variable of this scale prior."""
        return self.entry.pymc(name, self.args, dims)

    def draw(self, rng: np.random.Generator, size: Any = None) -> Any:
        """Random draws (scales: positive values)."""
        return self.entry.draw(rng, self.args, size)


@dataclass(frozen=True)
class PriorFamily:
    """One prior family: how it is written, its kernel code, PyMC constructor and random draw."""

    name: str
    kind: str  # "scale" or "location"
    params: tuple[str, ...]
    code: int
    pymc: Callable[[str, tuple[float, ...], str | None], Any]
    draw: Callable[[np.random.Generator, tuple[float, ...], Any], Any]
    check: Callable[[tuple[float, ...]], str | None] = lambda args: None


def _positive(*idx: int) -> Callable[[tuple[float, ...]], str | None]:
    def check(args: tuple[float, ...]) -> str | None:
        bad = [i for i in idx if not args[i] > 0]
        return f"argument {bad[0] + 1} must be > 0" if bad else None

    return check


def _pm() -> Any:
    import pymc as pm

    return pm


def _tmix_logp(value: Any, nu: Any, sigma: Any) -> Any:
    import pytensor.tensor as pt

    alpha, beta = nu / 2.0, nu * sigma**2 / 2.0
    return (alpha * pt.log(beta) - pt.gammaln(alpha) + _LOG2 - (2.0 * alpha + 1.0) * pt.log(value)
            - beta / value**2)


def _tmix_pymc(name: str, args: tuple[float, ...], dims: str | None) -> Any:
    pm = _pm()
    params = [np.asarray(a, dtype=np.float64) for a in args]  # python floats would become float32
    return pm.CustomDist(name, *params, logp=_tmix_logp, transform=pm.distributions.transforms.log,
                         random=lambda nu, sigma, rng=None, size=None: _tmix_draw(rng, (nu, sigma), size),
                         support_point=lambda rv, size, nu, sigma: rv * 0.0 + sigma, dims=dims)


def _tmix_draw(rng: np.random.Generator, args: tuple[float, ...], size: Any) -> Any:
    nu, sigma = args
    return np.sqrt(nu * sigma**2 / 2.0 / rng.gamma(nu / 2.0, 1.0, size))


def _halft_draw(rng: np.random.Generator, args: tuple[float, ...], size: Any) -> Any:
    nu, s = args
    return np.abs(s * rng.standard_t(nu, size))


def _no_draw(rng: np.random.Generator, args: tuple[float, ...], size: Any) -> Any:
    raise FitError("an improper (flat) prior has no random draws: give a proper prior to simulate from it")


REGISTRY: dict[str, PriorFamily] = {f.name: f for f in (
    PriorFamily("halfnormal", "scale", ("sigma",), HALFNORMAL,
                lambda n, a, d: _pm().HalfNormal(n, sigma=a[0], dims=d),
                lambda rng, a, size: np.abs(rng.normal(0.0, a[0], size)), _positive(0)),
    PriorFamily("halfcauchy", "scale", ("beta",), HALFCAUCHY,
                lambda n, a, d: _pm().HalfCauchy(n, beta=a[0], dims=d),
                lambda rng, a, size: np.abs(a[0] * rng.standard_cauchy(size)), _positive(0)),
    PriorFamily("halfstudentt", "scale", ("nu", "sigma"), HALFSTUDENTT,
                lambda n, a, d: _pm().HalfStudentT(n, nu=a[0], sigma=a[1], dims=d),
                _halft_draw, _positive(0, 1)),
    PriorFamily("exponential", "scale", ("rate",), EXPONENTIAL,
                lambda n, a, d: _pm().Exponential(n, lam=a[0], dims=d),
                lambda rng, a, size: rng.exponential(1.0 / a[0], size), _positive(0)),
    PriorFamily("halfflat", "scale", (), HALFFLAT,
                lambda n, a, d: _pm().HalfFlat(n, dims=d), _no_draw),
    PriorFamily("tmix_sd", "internal", ("nu", "sigma"), TMIX_SD, _tmix_pymc, _tmix_draw, _positive(0, 1)),
    PriorFamily("normal", "location", ("mu", "sigma"), -1, lambda n, a, d: None,
                lambda rng, a, size: rng.normal(a[0], a[1], size), _positive(1)),
    PriorFamily("studentt", "location", ("nu", "mu", "sigma"), -1, lambda n, a, d: None,
                lambda rng, a, size: a[1] + a[2] * rng.standard_t(a[0], size), _positive(0, 2)),
    PriorFamily("flat", "location", (), -1, lambda n, a, d: None, _no_draw),
)}

SCALE_FAMILIES = tuple(n for n, f in REGISTRY.items() if f.kind == "scale")
LOCATION_FAMILIES = tuple(n for n, f in REGISTRY.items() if f.kind == "location")

_CALL = re.compile(r"^\s*([a-z_]+)\s*(?:\((.*)\))?\s*$", re.IGNORECASE)


def _num(x: float) -> str:
    return f"{x:g}"


def _allowed(kind: str) -> str:
    families = SCALE_FAMILIES if kind == "scale" else LOCATION_FAMILIES
    shown = []
    for name in families:
        params = REGISTRY[name].params
        shown.append(name if not params else f"{name}({', '.join(params)})")
    if kind == "location":
        shown.insert(1, "normal(mu, scale)")
    return ", ".join(shown)


def parse_prior(text: Any, kind: str, where: str) -> Prior:
    """Parse a prior string such as ``halfcauchy(5)`` or ``normal(0, scale)``.

    Args:
        text: The string (a bare number is refused: say which family).
        kind: ``scale`` or ``location``.
        where: The configuration key, for the error message.

    Raises:
        FitError: naming ``where``, what was given and the allowed families.
    """
    m = _CALL.match(str(text)) if isinstance(text, str) else None
    family = m.group(1).lower() if m else None
    entry = REGISTRY.get(family or "")
    if entry is None or entry.kind != kind:
        raise FitError(f"{where}: {text!r} is not a {kind} prior; allowed: {_allowed(kind)}")
    raw = [a.strip() for a in (m.group(2) or "").split(",") if a.strip()] if m.group(2) is not None else []
    own = kind == "location" and family == "normal" and len(raw) == 2 and raw[1].lower() == "scale"
    if own:
        raw = raw[:1]
    want = len(entry.params) - (1 if own else 0)
    if len(raw) != want:
        form = f"{family}({', '.join(entry.params)})" if entry.params else family
        raise FitError(f"{where}: {text!r} takes {want} argument(s): {form}")
    try:
        args = tuple(float(a) for a in raw)
    except ValueError:
        raise FitError(f"{where}: {text!r}: arguments must be numbers (or `scale` as the sd of normal)") from None
    if not all(math.isfinite(a) for a in args):
        raise FitError(f"{where}: {text!r}: arguments must be finite")
    problem = None if own and family == "normal" else entry.check(args)
    if problem:
        raise FitError(f"{where}: {text!r}: {problem}")
    return Prior(family, args, own)


def scale(text: str) -> Prior:
    """A scale prior from its string (for code: ``scale('halfnormal(0.5)')``)."""
    return parse_prior(text, "scale", "scale prior")


def location(text: str) -> Prior:
    """A location prior from its string (for code: ``location('normal(0, scale)')``)."""
    return parse_prior(text, "location", "location prior")


def tmix(prior: Prior) -> Prior:
    """The mixing-sd prior behind a ``studentt(nu, mu, sigma)`` location."""
    nu, _, sigma = prior.args
    return Prior("tmix_sd", (nu, sigma))
