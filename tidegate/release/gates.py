"""Guard rails as pure functions: PromQL builders and verdict judges.

The seed's three automatic rollback conditions, plus fill rate, markout and
calibration, each become one gate. ``gate_queries`` says which instant queries a
gate needs (each with a freshness query that returns the age in seconds of the
newest underlying sample); a provider runs them and hands back :class:`Sample`s;
``judge`` turns the samples into a GateVerdict. No I/O here, so every edge case
(NaN, empty, error, stale, small sample) is table-tested without a server.

The win-rate gate judges *evidence of this release attempt*: the canary's and the
active model's closed trades and wins counted by the risk service
(``trades_closed_total{route,model}``, ``trades_won_total``), read with
``increase()`` over the time since the attempt's canary stage began, so a restart
of risk loses nothing, and the cluster sums ``trade_clusters_total{stat}`` for a
cluster-robust variance. ``test: sequential`` (default) decides with the always-valid
mSPRT of tidegate.release.sequential; ``test: threshold`` is the seed's rule
``sample_canary >= min_sample and winrate_canary < winrate_baseline_active - delta``
on the same counts, re-checked at every look.

PromQL has no wildcard metric names, so the seed's ``psi_feature_*`` is the
labelled ``psi_feature{feature=...}`` series and the query takes the max over
features. ``winrateDeltaPP`` is in percentage points, win rates are fractions:
``winrate_canary < winrate_baseline_active - winrateDeltaPP / 100``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tidegate.durations import format_duration
from tidegate.release import sequential
from tidegate.release.spec import Limits
from tidegate.release.verdicts import GateVerdict, Verdict

SHADOW_GATES = frozenset({"parity", "psi", "ks"})  # meaningful with no canary traffic


@dataclass(frozen=True)
class Query:
    role: str
    promql: str
    freshness: str  # evaluates to the age (s) of the newest sample behind promql
    by: str = ""     # a label: the query returns one value per value of it (Sample.values)
    optional: bool = False  # an empty result is information (e.g. no cluster closed yet), not an outage


@dataclass(frozen=True)
class GateContext:
    """What a gate needs to know about the release attempt: whose trades count, and since when."""

    candidate: str | None = None
    active: str | None = None
    since_s: float | None = None   # seconds since the attempt's canary stage began (None: winrate_window)
    attempt_s: float | None = None  # seconds since the attempt started (None: the gates' own windows)


@dataclass(frozen=True)
class Sample:
    """One query's outcome: a value with its age, or an error, or nothing (empty result)."""

    value: float | None = None
    age: float | None = None
    error: str | None = None
    values: dict[str, float] | None = None   # for a ``by`` query

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
    # a key ending in "!" is a negative matcher: {"route!": "canary"} -> route!="canary"
    body = ",".join(f'{k[:-1]}!="{v}"' if k.endswith("!") else f'{k}="{v}"' for k, v in pairs)
    return f"{metric}{{{body}}}"


def evidence_window(limits: Limits, ctx: GateContext | None) -> str:
    """The range of the win-rate counters: the attempt's canary stage so far, else ``winrate_window``."""
    if ctx is not None and ctx.since_s is not None:
        return f"{max(1, math.ceil(ctx.since_s))}s"
    return format_duration(limits.winrate_window)


def _arm_selectors(limits: Limits, ctx: GateContext | None) -> dict[str, dict[str, str]]:
    """Label matchers of the two arms: the candidate's canary trades, the active model's others."""
    canary: dict[str, str] = {"route": "canary"}
    baseline: dict[str, str] = {"route!": "canary"}
    if ctx is not None and ctx.candidate:
        canary["model"] = ctx.candidate
    if ctx is not None and ctx.active:
        baseline["model"] = ctx.active
    return {"c": canary, "b": baseline}


def winrate_queries(limits: Limits, ctx: GateContext | None = None) -> tuple[Query, ...]:
    w = evidence_window(limits, ctx)
    out: list[Query] = []
    for arm, m in _arm_selectors(limits, ctx).items():
        for role, metric in (("n", "trades_closed_total"), ("w", "trades_won_total")):
            sel = selector(metric, limits, **m)
            out.append(Query(f"{role}_{arm}", f"sum(increase({sel}[{w}]))", _age(sel)))
        sel = selector("trade_clusters_total", limits, **m)
        out.append(Query(f"clusters_{arm}", f"sum by (stat) (increase({sel}[{w}]))", _age(sel), by="stat",
                         optional=True))
    return tuple(out)


def gate_queries(gate: str, limits: Limits, ctx: GateContext | None = None) -> tuple[Query, ...]:
    """The instant queries one gate needs, with the release's windows, labels and attempt resolved."""
    def s(metric: str, **m: str) -> str:
        return selector(metric, limits, **m)

    n_c = winrate_queries(limits, ctx)[0]   # the canary's trades in this attempt
    canary_sample = Query("sample", n_c.promql, n_c.freshness)
    if gate == "winrate":
        return winrate_queries(limits, ctx)
    if gate == "parity":
        # The counter has no model label: a failure from the model of an earlier attempt (a
        # rolled-back broken candidate) must not fail this one, so the window never reaches
        # back past this attempt's start (the cluster tier's next release failed on it).
        window = limits.parity_window
        if ctx is not None and ctx.attempt_s is not None:
            window = min(window, max(1.0, math.ceil(ctx.attempt_s)))
        w = format_duration(window)
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
    if s.values is not None:
        return None
    if s.value is None:
        return f"{role}: no data (empty result)"
    if math.isnan(s.value) or math.isinf(s.value):
        return f"{role}: value is {s.value}"
    if s.age is None or math.isnan(s.age):
        return f"{role}: sample age unknown"
    if s.age > stale_after:
        return f"{role}: stale (newest sample {s.age:.1f}s old > staleAfter {stale_after:g}s)"
    return None


def judge_winrate(limits: Limits, samples: dict[str, Sample], ctx: GateContext | None = None) -> GateVerdict:
    """The win-rate gate on this attempt's counts: sequential (always-valid) or the seed's threshold."""
    queries = winrate_queries(limits, ctx)
    q = {x.role: x for x in queries}
    query = (f"canary {q['w_c'].promql} / {q['n_c'].promql} vs baseline {q['w_b'].promql} / {q['n_b'].promql}"
             f" ({limits.winrate_test}, alpha {limits.winrate_alpha:g}, margin {limits.winrate_delta_pp:g}pp)")
    # an optional query (cluster sums) that is absent or empty is information: no cluster closed yet
    problems = [p for x in queries if not (x.optional and (samples.get(x.role) is None
                                                           or samples[x.role].error is None))
                and (p := _unusable(x.role, samples.get(x.role), limits.stale_after))]
    if problems:
        return GateVerdict("winrate", Verdict.UNAVAILABLE, None, None, None, query, "; ".join(problems))

    def count(role: str) -> int:
        return max(0, round(float(samples[role].value or 0.0)))

    nc, nb = count("n_c"), count("n_b")
    wc, wb = min(count("w_c"), nc), min(count("w_b"), nb)
    delta = limits.winrate_delta_pp / 100.0
    rc = wc / nc if nc else math.nan
    rb = wb / nb if nb else math.nan
    threshold = rb - delta if nb else None
    deff_c = sequential.design_effect(samples["clusters_c"].values if "clusters_c" in samples else None, nc)
    deff_b = sequential.design_effect(samples["clusters_b"].values if "clusters_b" in samples else None, nb)
    test = sequential.winrate_test(wc, nc, wb, nb, alpha=limits.winrate_alpha, tau=limits.winrate_tau,
                                   deff_canary=deff_c, deff_baseline=deff_b)
    clusters = {arm: float(((samples.get(f"clusters_{arm}") or Sample()).values or {}).get("clusters", 0.0))
                for arm in ("c", "b")}
    evidence = {"n_canary": float(nc), "n_baseline": float(nb), "wins_canary": float(wc), "wins_baseline": float(wb),
                "winrate_canary": rc, "winrate_baseline_active": rb, "diff": test.diff, "lower": test.lower,
                "upper": test.upper, "upper_one_sided": test.upper_one_sided,
                "log_lambda_one_sided": test.log_lambda_one_sided, "log_bound": test.log_bound,
                "alpha": limits.winrate_alpha, "tau": limits.winrate_tau, "design_effect_canary": deff_c,
                "design_effect_baseline": deff_b, "clusters_canary": clusters["c"],
                "clusters_baseline": clusters["b"], "non_inferior": float(test.non_inferior(delta)),
                "window_s": float(ctx.since_s) if ctx is not None and ctx.since_s is not None
                else limits.winrate_window}
    if limits.winrate_test == "threshold":
        word, reason = sequential.threshold_decision(wc, nc, wb, nb, delta=delta, min_sample=limits.min_sample)
    else:
        word, reason = sequential.sequential_decision(test, delta=delta, min_sample=limits.min_sample,
                                                      early_promote=limits.early_promote)
        if max(deff_c, deff_b) > 1.05:
            reason += f"; design effect canary {deff_c:.2f} / baseline {deff_b:.2f} (clustered trades)"
    return GateVerdict("winrate", Verdict(word), rc, float(nc), threshold, query, reason, evidence)


def judge(gate: str, limits: Limits, samples: dict[str, Sample], ctx: GateContext | None = None) -> GateVerdict:
    """The verdict of one gate from its query samples. Missing data is never a PASS."""
    if gate == "winrate":
        return judge_winrate(limits, samples, ctx)
    queries = gate_queries(gate, limits, ctx)
    problems = [p for q in queries if (p := _unusable(q.role, samples.get(q.role), limits.stale_after))]
    v = {q.role: samples[q.role].value for q in queries if q.role in samples}
    sample = v.get("sample")
    if gate == "parity":
        query = f"{queries[0].promql} > 0"
    else:
        op = "<" if gate in ("fill_rate", "markout") else ">"
        query = f"{queries[0].promql} {op} {_limit(gate, limits):g}"
    if problems:
        return GateVerdict(gate, Verdict.UNAVAILABLE, v.get("value"), sample, None, query,
                           "; ".join(problems))
    value = float(v["value"])
    threshold = _limit(gate, limits)
    if gate == "parity":
        if value > 0:
            return GateVerdict(gate, Verdict.FAIL, value, None, 0.0, query,
                               f"onnx_parity_fail_total increased by {value:g} (critical)")
        return GateVerdict(gate, Verdict.PASS, value, None, 0.0, query, "no parity failures")
    if sample is not None and sample < limits.min_sample:
        return GateVerdict(gate, Verdict.INSUFFICIENT, value, sample, threshold, query,
                           f"canary trades {sample:g} < minSample {limits.min_sample}")
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
