"""The target_accept ladder (issue 12 item 4): what the fit node does when a fit fails the gate.

A fit that fails the publication gate *only* on a few divergent transitions (every indicator's
r_hat and bulk ESS within the gate, and no indicator above :data:`RETRY_MAX_DIVERGENCE_SHARE` of
its post-warmup transitions) is refitted, all indicators together, at the next step of the ladder
(``vars.fit.target_accept_ladder``, default :data:`DEFAULT_TARGET_ACCEPT_LADDER`) above the
target_accept just tried, until it passes or the ladder is exhausted. A few divergences with
chains that agree are NUTS's step size meeting a region of high curvature (docs/fit.md: the wall
of σ_model ~ HalfNormal(σ_family) at a family's small σ); a higher target_accept adapts a smaller
step. Anything else (r_hat, ESS, many divergences) is not what a smaller step fixes: the fit is
rejected at once, and :func:`decide` says what to try next.

Pure functions of the gate verdicts: no sampling here (tests/unit/test_fit_ladder.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from tierpool.errors import ConfigError

# configured target_accept (0.97 by default) -> 0.99 -> 0.995: 0.99 costs about 1.5x the
# gradients of 0.97 on the demo (docs/fit.md, "Sampler settings and the divergence gate").
DEFAULT_TARGET_ACCEPT_LADDER = (0.99, 0.995)
# "A few" divergences: at most 1% of an indicator's post-warmup transitions (chains x draws; 160
# of 4 x 4,000). More than that is a geometry a smaller step does not fix: reparametrise.
RETRY_MAX_DIVERGENCE_SHARE = 0.01


def check_ladder(value: Any, key: str = "vars.fit.target_accept_ladder") -> tuple[float, ...]:
    """A configured ladder: a list of target_accept values in (0, 1), strictly increasing.

    An empty list turns retries off. Steps at or below the configured target_accept are skipped
    (see :func:`decide`).

    Raises:
        ConfigError: Not a list of such numbers (the message names the key).
    """
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise ConfigError(f"tierpool_project.yml {key} must be a list of target_accept values, e.g. [0.99, 0.995]; "
                          f"got {value!r}")
    steps = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not 0 < item < 1:
            raise ConfigError(f"tierpool_project.yml {key}: every step must be a number in (0, 1), got {item!r}")
        steps.append(float(item))
    if any(b <= a for a, b in pairwise(steps)):
        raise ConfigError(f"tierpool_project.yml {key} must increase strictly (each retry asks for a smaller "
                          f"step), got {steps}")
    return tuple(steps)


@dataclass(frozen=True)
class LadderDecision:
    """What to do after an attempt.

    Attributes:
        retry_at: The target_accept of the next attempt (every indicator), or None: the attempt
            is final (published when the gate passed, else rejected).
        advice: For a final rejection, what to try next ('' when the gate passed or on a retry).
    """

    retry_at: float | None
    advice: str = ""


def failures(verdict: Any, thresholds: Any) -> list[str]:
    """The gate criteria a verdict fails: any of 'r_hat', 'ess_bulk', 'divergences'."""
    out = []
    if not verdict.max_r_hat <= thresholds.max_r_hat:  # NaN fails, as in the gate
        out.append("r_hat")
    if not verdict.min_ess_bulk >= thresholds.min_ess_bulk:
        out.append("ess_bulk")
    if verdict.divergences > thresholds.max_divergences:
        out.append("divergences")
    return out


def decide(verdicts: Mapping[str, Any], thresholds: Any, transitions: int, tried: Sequence[float],
           ladder: Sequence[float]) -> LadderDecision:
    """Retry at the next rung, or stop (with advice when the fit is rejected).

    Args:
        verdicts: Indicator -> the latest attempt's GateVerdict (the fit is judged as a whole).
        thresholds: The GateThresholds they were judged by.
        transitions: Post-warmup transitions per indicator (chains x draws).
        tried: The target_accept of every attempt so far, first the configured one.
        ladder: The configured ladder (:func:`check_ladder`); only steps above the last one
            tried count.
    """
    failing = {ind: failures(v, thresholds) for ind, v in verdicts.items() if not v.passed}
    if not failing:
        return LadderDecision(None)
    limit = RETRY_MAX_DIVERGENCE_SHARE * transitions
    other = {ind: [f for f in fs if f != "divergences"] for ind, fs in failing.items()}
    other = {ind: fs for ind, fs in other.items() if fs}
    many = {ind: verdicts[ind].divergences for ind, fs in failing.items()
            if "divergences" in fs and verdicts[ind].divergences > limit}
    higher = [s for s in ladder if s > tried[-1]]
    if not other and not many and higher:
        return LadderDecision(higher[0])
    return LadderDecision(None, _advice(failing, other, many, verdicts, transitions, tried, ladder))


def _advice(failing: dict[str, list[str]], other: dict[str, list[str]], many: dict[str, int],
            verdicts: Mapping[str, Any], transitions: int, tried: Sequence[float], ladder: Sequence[float]) -> str:
    parts = []
    rhat = sorted(ind for ind, fs in other.items() if "r_hat" in fs)
    ess = sorted(ind for ind, fs in other.items() if "ess_bulk" in fs and "r_hat" not in fs)
    if rhat:
        parts.append(f"{', '.join(rhat)}: chains disagree (r_hat): raise vars.fit.tune and vars.fit.draws "
                     "(--fit-tune/--fit-draws); if r_hat stays high, the 'driven by' groups make the posterior "
                     "ill-posed: a constant series (vars.fit.resolution) or another hierarchy (vars.fit.hierarchy)")
    if ess:
        parts.append(f"{', '.join(ess)}: too few effective draws (ess_bulk): raise vars.fit.draws (--fit-draws) "
                     "or vars.fit.chains")
    divergent = sorted(ind for ind, fs in failing.items() if "divergences" in fs)
    for ind in divergent:
        n = verdicts[ind].divergences
        if ind in many:
            parts.append(f"{ind}: {n} divergent transitions ({n / transitions:.1%} of {transitions}) are more than a "
                         f"higher target_accept fixes (the ladder retries up to {RETRY_MAX_DIVERGENCE_SHARE:.0%}): "
                         "reparametrise where the 'driven by' divergences concentrate (another scale prior or "
                         "residual_sd pooling in vars.fit.hierarchy) or raise vars.fit.tune")
        elif other:
            parts.append(f"{ind}: divergences are retried at a higher target_accept only when r_hat and ESS pass "
                         "for every indicator: fix those first")
        elif len(tried) > 1:
            parts.append(f"{ind}: divergences persist at target_accept {tried[-1]} (the ladder's last step): raise "
                         "vars.fit.tune, extend vars.fit.target_accept_ladder beyond it (e.g. 0.999; each step "
                         "costs more gradients per draw) or reparametrise where the 'driven by' divergences "
                         "concentrate (vars.fit.hierarchy)")
        else:
            none = "is empty" if not ladder else f"has no step above {tried[-1]}"
            parts.append(f"{ind}: vars.fit.target_accept_ladder {none}: add one (e.g. [0.99, 0.995]) or raise "
                         "vars.fit.tune")
    return "next: " + "; ".join(parts)


def describe_attempts(tried: Sequence[float]) -> str:
    """'attempts at target_accept 0.97 -> 0.99' ('' for a single attempt)."""
    return "" if len(tried) < 2 else "attempts at target_accept " + " -> ".join(f"{t:g}" for t in tried)
