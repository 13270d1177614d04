"""Guard rails as pure functions: PromQL builders and verdict judges.

The seed's three automatic rollback conditions, plus fill rate, markout and
calibration, each become one gate. ``gate_queries`` says which instant queries a
gate needs (each with a freshness query that returns the age in seconds of the
newest underlying sample); a provider runs them and hands back :class:`Sample`s;
``judge`` turns the samples into a GateVerdict. No I/O here, so every edge case
(NaN, empty, error, stale, small sample) is table-tested without a server.

PromQL has no wildcard metric names, so the seed's ``psi_feature_*`` is the
labelled ``psi_feature{feature=...}`` series and the query takes the max over
features. ``winrateDeltaPP`` is in percentage points, win rates are fractions:
``winrate_canary < winrate_baseline_active - winrateDeltaPP / 100``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tidegate.durations import format_duration
from tidegate.release.spec import Limits
from tidegate.release.verdicts import GateVerdict, Verdict

SHADOW_GATES = frozenset({"parity", "psi", "ks"})  # meaningful with no canary traffic


@dataclass(frozen=True)
class Query:
    role: str
    promql: str
    freshness: str  # evaluates to the age (s) of the newest sample behind promql


@dataclass(frozen=True)
class Sample:
    """One query's outcome: a value with its age, or an error, or nothing (empty result)."""

    value: float | None = None
    age: float | None = None
    error: str | None = None

    @classmethod
    def ok(cls, value: float, age: float = 0.0) -> Sample:
        return cls(value=value, age=age)

    @classmethod
    def empty(cls) -> Sample:
        return cls()

    @classmethod
    def failed(cls, error: str) -> Sample:
        return cls(error=error)


def _age(selector: str) -> str:
    return f"time() - max(timestamp({selector}))"


def selector(metric: str, limits: Limits, **matchers: str) -> str:
    """``metric{...}`` with the gate's own matchers plus the release's ``analysis.labels``."""
    pairs = [*matchers.items(), *limits.labels]
    if not pairs:
        return metric
    body = ",".join(f'{k}="{v}"' for k, v in pairs)
    return f"{metric}{{{body}}}"


def gate_queries(gate: str, limits: Limits) -> tuple[Query, ...]:
    """The instant queries one gate needs, with the release's windows and labels resolved."""
    def s(metric: str, **m: str) -> str:
        return selector(metric, limits, **m)

    canary_sample = Query("sample", f"sum({s('sample_canary')})", _age(s("sample_canary")))
    if gate == "winrate":
        return (Query("canary", f"min({s('winrate_canary')})", _age(s("winrate_canary"))),
                Query("baseline", f"max({s('winrate_baseline_active')})", _age(s("winrate_baseline_active"))),
                canary_sample)
    if gate == "parity":
        w = format_duration(limits.parity_window)
        sel = s("onnx_parity_fail_total")
        return (Query("value", f"sum(increase({sel}[{w}]))", _age(sel)),)
    if gate in ("psi", "ks"):
        w = format_duration(limits.drift_window)
        sel = s(f"{gate}_feature")
        return (Query("value", f"max(max_over_time({sel}[{w}]))", _age(sel)),)
    if gate == "fill_rate":
        sel = s("fill_rate_rolling", route="canary")
        return (Query("value", f"min({sel})", _age(sel)), canary_sample)
    if gate == "markout":
        sel = s("avg_markout_1000ms", route="canary")
        return (Query("value", f"min({sel})", _age(sel)), canary_sample)
    if gate == "ece":
        sel = s("ece_online")
        return (Query("value", f"max({sel})", _age(sel)), canary_sample)
    raise ValueError(f"unknown gate {gate!r}")


def gates_for_stage(weight: int, limits: Limits) -> tuple[str, ...]:
    """Shadow (weight 0) has no canary trades, so only parity and drift can be judged there."""
    return tuple(g for g in limits.gates if weight > 0 or g in SHADOW_GATES)


def _unusable(role: str, s: Sample | None, stale_after: float) -> str | None:
    if s is None:
        return f"{role}: not queried"
    if s.error is not None:
        return f"{role}: query failed: {s.error}"
    if s.value is None:
        return f"{role}: no data (empty result)"
    if math.isnan(s.value) or math.isinf(s.value):
        return f"{role}: value is {s.value}"
    if s.age is None or math.isnan(s.age):
        return f"{role}: sample age unknown"
    if s.age > stale_after:
        return f"{role}: stale (newest sample {s.age:.1f}s old > staleAfter {stale_after:g}s)"
    return None


def judge(gate: str, limits: Limits, samples: dict[str, Sample]) -> GateVerdict:
    """The verdict of one gate from its query samples. Missing data is never a PASS."""
    queries = gate_queries(gate, limits)
    problems = [p for q in queries if (p := _unusable(q.role, samples.get(q.role), limits.stale_after))]
    v = {q.role: samples[q.role].value for q in queries if q.role in samples}
    sample = v.get("sample")
    if gate == "winrate":
        threshold_expr = f"{queries[1].promql} - {limits.winrate_delta_pp:g}/100"
        query = f"{queries[2].promql} >= {limits.min_sample} and {queries[0].promql} < {threshold_expr}"
    elif gate == "parity":
        query = f"{queries[0].promql} > 0"
    else:
        op = "<" if gate in ("fill_rate", "markout") else ">"
        query = f"{queries[0].promql} {op} {_limit(gate, limits):g}"
    if problems:
        return GateVerdict(gate, Verdict.UNAVAILABLE, v.get("canary", v.get("value")), sample, None, query,
                           "; ".join(problems))
    if gate == "winrate":
        canary, baseline = float(v["canary"]), float(v["baseline"])
        threshold = baseline - limits.winrate_delta_pp / 100.0
        if sample is not None and sample < limits.min_sample:
            return GateVerdict(gate, Verdict.INSUFFICIENT, canary, sample, threshold, query,
                               f"sample_canary {sample:g} < minSample {limits.min_sample}")
        if canary < threshold:
            return GateVerdict(gate, Verdict.FAIL, canary, sample, threshold, query,
                               f"winrate_canary {canary:.4f} < baseline {baseline:.4f} - "
                               f"{limits.winrate_delta_pp:g}pp = {threshold:.4f}")
        return GateVerdict(gate, Verdict.PASS, canary, sample, threshold, query,
                           f"winrate_canary {canary:.4f} >= {threshold:.4f}")
    value = float(v["value"])
    threshold = _limit(gate, limits)
    if gate == "parity":
        if value > 0:
            return GateVerdict(gate, Verdict.FAIL, value, None, 0.0, query,
                               f"onnx_parity_fail_total increased by {value:g} (critical)")
        return GateVerdict(gate, Verdict.PASS, value, None, 0.0, query, "no parity failures")
    if sample is not None and sample < limits.min_sample:
        return GateVerdict(gate, Verdict.INSUFFICIENT, value, sample, threshold, query,
                           f"sample_canary {sample:g} < minSample {limits.min_sample}")
    lower_is_bad = gate in ("fill_rate", "markout")
    bad = value < threshold if lower_is_bad else value > threshold
    word = {"psi": "PSI", "ks": "KS", "fill_rate": "fill rate", "markout": "avg markout 1000ms (bps)",
            "ece": "ECE"}[gate]
    if bad:
        cmp = "<" if lower_is_bad else ">"
        return GateVerdict(gate, Verdict.FAIL, value, sample, threshold, query,
                           f"{word} {value:.4g} {cmp} {threshold:g}")
    return GateVerdict(gate, Verdict.PASS, value, sample, threshold, query, f"{word} {value:.4g} within {threshold:g}")


def _limit(gate: str, limits: Limits) -> float:
    return {"psi": limits.psi_block, "ks": limits.ks_block, "fill_rate": limits.fill_rate_min,
            "markout": limits.markout_min_bps, "ece": limits.ece_max, "parity": 0.0,
            "winrate": limits.winrate_delta_pp}[gate]
