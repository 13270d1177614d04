"""Table-driven gate verdicts: every way data can be missing is UNAVAILABLE, never PASS."""

from __future__ import annotations

import math

import pytest

from tidegate.release.gates import Sample, gate_queries, gates_for_stage, judge
from tidegate.release.spec import effective_limits, parse_release
from tidegate.release.verdicts import Verdict

LIMITS = effective_limits(parse_release({"metadata": {"name": "t"}, "spec": {
    "modelId": "m", "analysis": {"staleAfter": 10, "windows": {"parity": "10m", "drift": "30m"}},
    "guardRails": {"winrateDeltaPP": 5, "minSample": 200, "psiBlock": 0.3, "ksBlock": 0.2, "eceMax": 0.05,
                   "fillRateMin": 0.25, "markoutMinBps": 0}}}).spec)
OK = Sample.ok


BASE, N500 = OK(0.55), OK(500)


def wr(canary: Sample, baseline: Sample = BASE, sample: Sample = N500) -> dict[str, Sample]:
    return {"canary": canary, "baseline": baseline, "sample": sample}


CASES = [
    # gate, samples, verdict, reason fragment
    ("winrate", wr(OK(0.56)), Verdict.PASS, ">="),
    ("winrate", wr(OK(0.50)), Verdict.PASS, ">="),                       # exactly baseline - 5pp is not below
    ("winrate", wr(OK(0.4999)), Verdict.FAIL, "< baseline"),
    ("winrate", wr(OK(0.40), sample=OK(199)), Verdict.INSUFFICIENT, "minSample 200"),
    ("winrate", wr(OK(0.40), sample=OK(200)), Verdict.FAIL, "< baseline"),
    ("winrate", wr(OK(math.nan)), Verdict.UNAVAILABLE, "nan"),
    ("winrate", wr(Sample.empty()), Verdict.UNAVAILABLE, "empty"),
    ("winrate", wr(Sample.failed("ConnectionError: refused")), Verdict.UNAVAILABLE, "query failed"),
    ("winrate", wr(OK(0.56, age=11)), Verdict.UNAVAILABLE, "stale"),
    ("winrate", wr(OK(0.56), baseline=OK(0.5, age=math.nan)), Verdict.UNAVAILABLE, "age unknown"),
    ("winrate", wr(OK(0.40), sample=Sample.empty()), Verdict.UNAVAILABLE, "sample: no data"),
    ("winrate", {"canary": OK(0.5)}, Verdict.UNAVAILABLE, "not queried"),
    ("parity", {"value": OK(0.0)}, Verdict.PASS, "no parity"),
    ("parity", {"value": OK(1.0)}, Verdict.FAIL, "critical"),
    ("parity", {"value": OK(math.inf)}, Verdict.UNAVAILABLE, "inf"),
    ("parity", {"value": Sample.empty()}, Verdict.UNAVAILABLE, "empty"),
    ("psi", {"value": OK(0.30)}, Verdict.PASS, "within"),
    ("psi", {"value": OK(0.31)}, Verdict.FAIL, "PSI 0.31 > 0.3"),
    ("ks", {"value": OK(0.21)}, Verdict.FAIL, "KS"),
    ("ks", {"value": OK(0.1, age=60)}, Verdict.UNAVAILABLE, "stale"),
    ("fill_rate", {"value": OK(0.24), "sample": OK(500)}, Verdict.FAIL, "fill rate"),
    ("fill_rate", {"value": OK(0.24), "sample": OK(10)}, Verdict.INSUFFICIENT, "minSample"),
    ("fill_rate", {"value": OK(0.25), "sample": OK(500)}, Verdict.PASS, "within"),
    ("markout", {"value": OK(-0.1), "sample": OK(500)}, Verdict.FAIL, "markout"),
    ("markout", {"value": OK(0.0), "sample": OK(500)}, Verdict.PASS, "within"),
    ("ece", {"value": OK(0.06), "sample": OK(500)}, Verdict.FAIL, "ECE"),
    ("ece", {"value": OK(0.04), "sample": Sample.failed("timeout")}, Verdict.UNAVAILABLE, "timeout"),
]


@pytest.mark.parametrize(("gate", "samples", "verdict", "fragment"), CASES)
def test_gate_verdicts(gate: str, samples: dict[str, Sample], verdict: Verdict, fragment: str) -> None:
    v = judge(gate, LIMITS, samples)
    assert v.verdict == verdict, v.reason
    assert fragment.lower() in v.reason.lower()
    assert v.gate == gate and v.query


def test_winrate_verdict_carries_value_sample_threshold_and_resolved_query() -> None:
    v = judge("winrate", LIMITS, wr(OK(0.45), OK(0.55), OK(400)))
    assert (v.verdict, v.value, v.sample) == (Verdict.FAIL, 0.45, 400)
    assert v.threshold == pytest.approx(0.50)
    assert v.query == ("sum(sample_canary) >= 200 and min(winrate_canary) < "
                       "max(winrate_baseline_active) - 5/100")


def test_queries_use_the_release_windows_and_labels() -> None:
    assert gate_queries("parity", LIMITS)[0].promql == "sum(increase(onnx_parity_fail_total[10m]))"
    assert gate_queries("psi", LIMITS)[0].promql == "max(max_over_time(psi_feature[30m]))"
    assert gate_queries("ks", LIMITS)[0].freshness == "time() - max(timestamp(ks_feature))"
    scoped = effective_limits(parse_release({"metadata": {"name": "t"}, "spec": {
        "modelId": "m", "analysis": {"labels": {"namespace": "prod"}}}}).spec)
    assert gate_queries("fill_rate", scoped)[0].promql == 'min(fill_rate_rolling{route="canary",namespace="prod"})'


def test_shadow_evaluates_only_gates_that_need_no_canary_traffic() -> None:
    assert set(gates_for_stage(0, LIMITS)) == {"parity", "psi", "ks"}
    assert set(gates_for_stage(10, LIMITS)) == {"winrate", "parity", "psi", "ks", "fill_rate", "markout", "ece"}


def test_config_defaults_fill_unset_guard_rails() -> None:
    from tidegate.config.schema import RolloutGuardConfig

    spec = parse_release({"metadata": {"name": "t"}, "spec": {"modelId": "m", "guardRails": {"minSample": 50}}}).spec
    lim = effective_limits(spec, RolloutGuardConfig(winrate_delta_pp=3, min_sample=999, cooldown="20m"))
    assert (lim.winrate_delta_pp, lim.min_sample, lim.cooldown) == (3, 50, 1200)
