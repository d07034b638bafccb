"""The target_accept ladder (issue 12 item 4), without sampling.

Which gate verdicts are retried (a few divergences and nothing else, judged over every indicator),
which are not (r_hat, ESS, many divergences), ladder exhaustion and the advice of a final
rejection; the settings' validation; and the fit node's loop over attempts with a stand-in fit
(fit_runs rows per attempt, statuses, the target_accept recorded, fit_decision).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

from tierpool.calibration.ladder import (
    DEFAULT_TARGET_ACCEPT_LADDER,
    RETRY_MAX_DIVERGENCE_SHARE,
    check_ladder,
    decide,
    describe_attempts,
)
from tierpool.calibration.settings import read_settings
from tierpool.errors import ConfigError
from tierpool.fit import GateThresholds, GateVerdict

GATE = GateThresholds(max_r_hat=1.01, min_ess_bulk=400, max_divergences=0)
TRANSITIONS = 4 * 4000  # 1% = 160 divergences
LADDER = DEFAULT_TARGET_ACCEPT_LADDER


def verdict(r_hat=1.001, ess=2000.0, div=0) -> GateVerdict:
    reasons = []
    if r_hat > GATE.max_r_hat:
        reasons.append(f"max r_hat {r_hat} > 1.01 (worst: sigma_model[m1])")
    if ess < GATE.min_ess_bulk:
        reasons.append(f"min ess_bulk {ess:.0f} < 400 (worst: mu_region[r1])")
    if div > GATE.max_divergences:
        reasons.append(f"{div} divergent transition(s) > 0 allowed")
    return GateVerdict(not reasons, reasons, r_hat, ess, div, "sigma_model[m1]", "mu_region[r1]")


def test_the_default_ladder_is_099_then_0995():
    assert DEFAULT_TARGET_ACCEPT_LADDER == (0.99, 0.995) and RETRY_MAX_DIVERGENCE_SHARE == 0.01


def test_a_passing_fit_is_final_without_advice():
    step = decide({"a": verdict(), "b": verdict()}, GATE, TRANSITIONS, [0.97], LADDER)
    assert step.retry_at is None and step.advice == ""


def test_a_few_divergences_climb_the_ladder_for_every_indicator():
    verdicts = {"energy_wh": verdict(div=3), "gco2e": verdict()}  # gco2e passes; refitted all the same
    assert decide(verdicts, GATE, TRANSITIONS, [0.97], LADDER).retry_at == 0.99
    assert decide(verdicts, GATE, TRANSITIONS, [0.97, 0.99], LADDER).retry_at == 0.995
    # up to 1% of the transitions is "a few"; one more is not
    assert decide({"a": verdict(div=160)}, GATE, TRANSITIONS, [0.97], LADDER).retry_at == 0.99
    assert decide({"a": verdict(div=161)}, GATE, TRANSITIONS, [0.97], LADDER).retry_at is None


def test_steps_at_or_below_the_configured_target_accept_are_skipped():
    assert decide({"a": verdict(div=1)}, GATE, TRANSITIONS, [0.8], (0.8, 0.9, 0.99)).retry_at == 0.9
    assert decide({"a": verdict(div=1)}, GATE, TRANSITIONS, [0.99], LADDER).retry_at == 0.995
    step = decide({"a": verdict(div=1)}, GATE, TRANSITIONS, [0.995], LADDER)
    assert step.retry_at is None and "has no step above 0.995" in step.advice
    step = decide({"a": verdict(div=1)}, GATE, TRANSITIONS, [0.97], ())
    assert step.retry_at is None and "vars.fit.target_accept_ladder is empty" in step.advice


def test_an_exhausted_ladder_rejects_with_what_to_try_next():
    step = decide({"gco2e": verdict(div=2)}, GATE, TRANSITIONS, [0.97, 0.99, 0.995], LADDER)
    assert step.retry_at is None
    assert step.advice.startswith("next: gco2e: divergences persist at target_accept 0.995")
    assert "extend vars.fit.target_accept_ladder" in step.advice and "vars.fit.tune" in step.advice
    assert describe_attempts([0.97, 0.99, 0.995]) == "attempts at target_accept 0.97 -> 0.99 -> 0.995"
    assert describe_attempts([0.97]) == ""


@pytest.mark.parametrize(("verdicts", "expected"), [
    ({"a": verdict(r_hat=1.05)}, "a: chains disagree (r_hat): raise vars.fit.tune and vars.fit.draws"),
    ({"a": verdict(ess=120)}, "a: too few effective draws (ess_bulk): raise vars.fit.draws"),
    # divergences with chains that disagree: not what a smaller step fixes
    ({"a": verdict(r_hat=1.05, div=2)}, "a: divergences are retried at a higher target_accept only when r_hat"),
    # a few divergences on one indicator, r_hat failing on the other: the fit is judged as a whole
    ({"a": verdict(div=2), "b": verdict(r_hat=1.2)}, "b: chains disagree (r_hat)"),
    ({"a": verdict(div=900)}, ("a: 900 divergent transitions (5.6% of 16000) are more than a higher target_accept "
                               "fixes")),
])
def test_other_failures_are_not_retried(verdicts, expected):
    step = decide(verdicts, GATE, TRANSITIONS, [0.97], LADDER)
    assert step.retry_at is None and step.advice.startswith("next: ") and expected in step.advice, step.advice


def test_nan_diagnostics_fail_as_in_the_gate():
    nan = GateVerdict(False, ["max r_hat nan"], float("nan"), 2000.0, 1)
    assert decide({"a": nan}, GATE, TRANSITIONS, [0.97], LADDER).retry_at is None


@pytest.mark.parametrize(("value", "message"), [
    (0.99, "must be a list of target_accept values"),
    ("0.99", "must be a list"),
    ([0.99, 1.0], r"every step must be a number in \(0, 1\), got 1.0"),
    ([0.99, True], "got True"),
    ([0.995, 0.99], "must increase strictly"),
    ([0.99, 0.99], "must increase strictly"),
])
def test_a_bad_ladder_is_a_config_error_naming_the_key(value, message):
    with pytest.raises(ConfigError, match=r"vars\.fit\.target_accept_ladder.*" + message):
        read_settings({"fit": {"target_accept_ladder": value}}, {})


def test_the_ladder_setting_and_the_fingerprint():
    default = read_settings({}, {})
    assert default.ladder() == DEFAULT_TARGET_ACCEPT_LADDER
    assert "target_accept_ladder" not in default.fingerprint_settings()  # existing fingerprints unchanged
    custom = read_settings({"fit": {"target_accept_ladder": [0.98, 0.999]}}, {})
    assert custom.ladder() == (0.98, 0.999)
    assert custom.fingerprint_settings()["target_accept_ladder"] == [0.98, 0.999]  # extending it refits
    assert read_settings({"fit": {"target_accept_ladder": []}}, {}).ladder() == ()
    assert check_ladder([0.9, 0.99]) == (0.9, 0.99)


# -- the fit node's loop, with a stand-in for the sampler ------------------------------------------

from test_gate_semantics import _Ctx  # noqa: E402  (the slice of the model context the fit node reads)


def _fake_fit(divergences_at):
    """fit_hierarchical stand-in: divergences = divergences_at(indicator, target_accept)."""
    calls = []

    def fit(cells, spec, settings, thresholds=None, rows=None):
        indicator = "energy_wh" if cells["model_id"].iloc[0] == "m-e" else "gco2e"
        calls.append((indicator, settings.target_accept))
        div = divergences_at(indicator, settings.target_accept)
        gate = GateVerdict(div <= thresholds.max_divergences, [f"{div} divergent transition(s) > 0 allowed"] * (div > 0),
                           1.001, 900.0, div)
        level = pd.DataFrame({"group": ["x"], "parameter": ["mu"], "mean": [0.0]})
        return SimpleNamespace(gate=gate, timings={"sampling": 1.0}, versions={"nutpie": "test"},
                               levels={k: level for k in ("family", "model", "region_class", "region")},
                               predictive=pd.DataFrame({"kind": ["model_region"], "mean": [0.0]}),
                               save=lambda path: path.write_bytes(b"draws"))

    return fit, calls


CELLS = pd.DataFrame({
    "indicator": ["energy_wh", "gco2e"], "model_id": ["m-e", "m-g"], "family_id": ["f", "f"],
    "region_id": ["r", "r"], "region_class_id": ["c", "c"], "quarter_start": pd.to_datetime(["2026-07-01"] * 2),
    "n": [10, 10], "mean": [0.1, 0.2], "S": [0.5, 0.5],
})
FIT_VARS = {"as_of": "2026-11-21", "tune": 100, "draws": 100, "chains": 2, "target_accept": 0.8,
            "gate": {"max_r_hat": 1.05, "min_ess_bulk": 100, "max_divergences": 0}}


def _run(tmp_path, monkeypatch, divergences_at, **fit_vars):
    import tierpool.fit
    from tierpool.calibration.fit_node import run_calibration_fit

    fit, calls = _fake_fit(divergences_at)
    monkeypatch.setattr(tierpool.fit, "fit_hierarchical", fit)
    ctx = _Ctx(tmp_path, {**FIT_VARS, **fit_vars})
    frames = run_calibration_fit(ctx, CELLS, ("fit_runs", "fit_decision", "methodology_releases"))
    return ctx, frames, calls


def test_the_node_refits_every_indicator_up_the_ladder_and_records_each_attempt(tmp_path, monkeypatch):
    # gco2e diverges below 0.995; energy_wh never does, and is refitted with it all the same
    ctx, frames, calls = _run(tmp_path, monkeypatch, lambda ind, ta: 2 if ind == "gco2e" and ta < 0.995 else 0)
    assert calls == [(i, ta) for ta in (0.8, 0.99, 0.995) for i in ("energy_wh", "gco2e")]
    runs = frames["fit_runs"]
    assert list(zip(runs.attempt, runs.indicator, runs.status)) == [
        (1, "energy_wh", "retried"), (1, "gco2e", "retried"), (2, "energy_wh", "retried"), (2, "gco2e", "retried"),
        (3, "energy_wh", "published"), (3, "gco2e", "published")]
    assert [json.loads(s)["target_accept"] for s in runs.settings] == [0.8, 0.8, 0.99, 0.99, 0.995, 0.995]
    assert "retried at target_accept 0.99 (divergences only)" in runs.reason[0] and runs.reason[4] is None
    assert runs.fingerprint.nunique() == 1  # one fit: later builds reuse it whatever attempt published it
    assert (runs.started_at.diff().dropna() >= pd.Timedelta(0)).all()
    decision = frames["fit_decision"]
    assert list(decision.indicator) == ["energy_wh", "gco2e"] and set(decision.status) == {"published"}
    assert ctx.message == "published fit 2026Q3 as methodology 1.4.3 (attempt 3, target_accept 0.995)"
    assert len(frames["methodology_releases"]) == 1
    assert sum("failed the gate on divergences only" in line for line in ctx.logs) == 2


def test_the_node_rejects_after_the_last_rung_with_what_to_try_next(tmp_path, monkeypatch):
    ctx, frames, _ = _run(tmp_path, monkeypatch, lambda ind, ta: 1 if ind == "energy_wh" else 0,
                              target_accept_ladder=[0.9])
    runs = frames["fit_runs"]
    assert list(zip(runs.attempt, runs.status)) == [(1, "retried")] * 2 + [(2, "rejected")] * 2
    reason = runs.reason.iloc[-1]
    assert reason.startswith("energy_wh: 1 divergent transition(s) > 0 allowed; attempts at target_accept 0.8 -> 0.9")
    assert "next: energy_wh: divergences persist at target_accept 0.9" in reason
    assert list(frames["fit_decision"].status) == ["rejected", "rejected"]
    assert ctx.message.startswith("fit 2026Q3 REJECTED by the gate: energy_wh: ")
    assert frames["methodology_releases"].empty


def test_an_empty_ladder_rejects_at_once(tmp_path, monkeypatch):
    _, frames, calls = _run(tmp_path, monkeypatch, lambda ind, ta: 1, target_accept_ladder=[])
    assert len(calls) == 2 and list(frames["fit_runs"].status) == ["rejected", "rejected"]
    assert "target_accept_ladder is empty" in frames["fit_runs"].reason.iloc[0]
