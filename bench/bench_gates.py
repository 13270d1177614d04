"""Benchmark: false rollbacks and detection speed of win-rate gate rules, by Monte-Carlo.

Simulated Bernoulli trade streams at the seed policy's cadence: a total closed-trade
rate (``--trades-per-hour``, default 2,400 across routes), 10 % routed to the canary
(so 240 canary trades/hour: ``min_sample`` 200 is reached in 50 minutes), the gate
evaluated every 30 s on the counts accumulated since the canary stage started, a stage
of 2 h and of 4 h (the seed's maxDuration). Per 30 s interval the canary and baseline
trade counts are Poisson, wins binomial; baseline win rate 0.52, margin delta 5 points,
min_sample 200. Rules, each evaluated at every look (t = 30 s, 60 s, … stage end; the
Argo-style measurement "at once" at t = 0 sees no trades and cannot fail):

* ``sequential``: tidegate.release.sequential.sequential_decision (alpha 0.05,
  DEFAULT_TAU): roll back on the first FAIL.
* ``threshold``: the seed's rule (``n_c >= min_sample and rate_c < rate_b - delta``),
  roll back on the first FAIL.
* ``flagger_like``: the threshold check every interval; a failed check increments
  ``failedChecks`` (cumulative over the stage, never reset, as Flagger's status counter);
  roll back when ``failedChecks >= threshold`` = 5. Below min_sample the seed's guard
  makes the check pass (it is not counted as failed).
* ``argo_like``: the threshold measured every interval; roll back when failed
  measurements > ``failureLimit`` = 3 (i.e. on the 4th failed measurement, counted over
  the stage). Below min_sample the measurement is not failed.

Clustered trades (``clustered``): in the real system orders placed in one market burst
share its outcome (a demo run: 35 of 35 won, 18 of 18 lost). Same trade rate, but trades
arrive in clusters: per 30 s the closed canary and baseline clusters are Poisson (trade
rate / mean cluster size, 10 % of the clusters to the canary), sizes geometric with mean
``--mean-cluster-size`` (5), and every trade of a cluster wins or loses together
(intra-cluster correlation 1: the design effect of the win rate is E[n²]/E[n] = 9).
The risk service's per-cluster sums (clusters, trades, wins, trades², wins², wins·trades)
are accumulated per look, and the rules are:

* ``sequential_deff``: the gate as it runs: tidegate.release.sequential.design_effect on
  each arm's running sums, then winrate_test(..., deff_canary=, deff_baseline=) and
  sequential_decision (vectorised here, checked against the scalar path on a sample);
* ``sequential``: the same test without the design effect (deff 1);
* ``threshold``, ``flagger_like``, ``argo_like``: as above, on the clustered counts.

Reported: (a) the probability that an *equal* canary is ever rolled back within the
stage, per rule, with its binomial standard error (independent and clustered); (b) for
canaries 4, 6, 8 and 12 points worse, the median canary trades and minutes to rollback
and the fraction rolled back within the stage; (c) detection trades and the A/A rate
against tau; (d) ``detection``: canary trades to rollback by the sequential gate over a
long horizon (``DETECT_HOURS``, so that the figure is not cut off by the stage), median
and 90th percentile, independent and clustered; a PNG of P(rolled back within the stage)
against the true drop per rule, independent and clustered. The trade-rate assumption is
recorded under ``setup.trade_rate``. The targets (equal canary <= 5 % for sequential,
independent and clustered with the design effect, and > 5 % for every other rule; 8-point
drop caught in <= 700 canary trades at the median) are recorded with their figures under
``targets``. Writes bench/results/gates.json and docs/gates-rollback.png (``--out`` and
``--plot`` override both).

    .venv/bin/python bench/bench_gates.py [--reps 10000] [--reps-drop 2000] [--trades-per-hour 2400]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tidegate.release.sequential import (  # noqa: E402
    DEFAULT_ALPHA,
    DEFAULT_TAU,
    design_effect,
    design_effect_array,
    sequential_decision,
    sequential_fail_mask,
    threshold_fail_mask,
    winrate_test,
)

BASELINE_RATE = 0.52
CANARY_SHARE = 0.10
INTERVAL_S = 30.0
DELTA = 0.05
MIN_SAMPLE = 200
FLAGGER_THRESHOLD = 5
ARGO_FAILURE_LIMIT = 3
STAGES_H = (2.0, 4.0)
DROPS_PP = (4, 6, 8, 12)
CURVE_DROPS_PP = (0, 2, 4, 6, 8, 10, 12, 14)
TAUS = (0.02, 0.03, 0.05, 0.08, 0.12, 0.2)
RULES = ("sequential", "threshold", "flagger_like", "argo_like")
CLUSTERED_RULES = ("sequential_deff", "sequential", "threshold", "flagger_like", "argo_like")
MEAN_CLUSTER_SIZE = 5.0
CLUSTER_STATS = ("clusters", "trades", "wins", "trades_sq", "wins_sq", "wins_trades")
DETECT_DROPS_PP = (4, 6, 8, 12)
DETECT_HOURS = 24.0
CHUNK = 2000

TARGET_EQUAL_SEQUENTIAL_MAX = 0.05
TARGET_EQUAL_OTHERS_MIN = 0.05
TARGET_DETECT_8PP_MEDIAN_MAX = 700
CLUSTER_MODEL = ("closed clusters per 30 s Poisson (trade rate / mean size; 10 % to the canary), sizes geometric, "
                 "every trade of a cluster wins or loses together (intra-cluster correlation 1)")


@dataclass(frozen=True)
class Streams:
    """Cumulative counts at each look, shape (reps, looks)."""

    wins_c: np.ndarray
    n_c: np.ndarray
    wins_b: np.ndarray
    n_b: np.ndarray


@dataclass(frozen=True)
class ClusteredStreams(Streams):
    """Also each arm's running cluster sums ({stat: (reps, looks)}, the stats of ``trade_clusters_total``)."""

    sums_c: dict[str, np.ndarray] = field(default_factory=dict)
    sums_b: dict[str, np.ndarray] = field(default_factory=dict)


def simulate(rng: np.random.Generator, reps: int, looks: int, trades_per_hour: float, p_canary: float,
             p_baseline: float = BASELINE_RATE) -> Streams:
    per_look = trades_per_hour * INTERVAL_S / 3600.0
    nc = rng.poisson(per_look * CANARY_SHARE, (reps, looks))
    nb = rng.poisson(per_look * (1 - CANARY_SHARE), (reps, looks))
    wc, wb = rng.binomial(nc, p_canary), rng.binomial(nb, p_baseline)
    return Streams(*(np.cumsum(a, axis=1, dtype=np.int64) for a in (wc, nc, wb, nb)))


def _cluster_sums(rng: np.random.Generator, reps: int, looks: int, clusters_per_look: float, p: float,
                  mean_size: float) -> dict[str, np.ndarray]:
    """One arm's running cluster sums: Poisson clusters per look, geometric sizes, a shared outcome."""
    k = rng.poisson(clusters_per_look, reps * looks)
    cell = np.repeat(np.arange(reps * looks), k)
    size = rng.geometric(1.0 / mean_size, cell.size).astype(np.int64)
    wins = size * (rng.random(cell.size) < p)
    per = {"clusters": k.astype(np.int64)}
    for stat, x in (("trades", size), ("wins", wins), ("trades_sq", size * size), ("wins_sq", wins * wins),
                    ("wins_trades", wins * size)):
        per[stat] = np.bincount(cell, weights=x, minlength=reps * looks).astype(np.int64)
    return {stat: np.cumsum(per[stat].reshape(reps, looks), axis=1) for stat in CLUSTER_STATS}


def simulate_clustered(rng: np.random.Generator, reps: int, looks: int, trades_per_hour: float, p_canary: float,
                       p_baseline: float = BASELINE_RATE,
                       mean_size: float = MEAN_CLUSTER_SIZE) -> ClusteredStreams:
    """The same trade rate in clusters of shared outcome; every trade is in a cluster closed by its look."""
    clusters_per_look = trades_per_hour / mean_size * INTERVAL_S / 3600.0
    sc = _cluster_sums(rng, reps, looks, clusters_per_look * CANARY_SHARE, p_canary, mean_size)
    sb = _cluster_sums(rng, reps, looks, clusters_per_look * (1 - CANARY_SHARE), p_baseline, mean_size)
    return ClusteredStreams(sc["wins"], sc["trades"], sb["wins"], sb["trades"], sc, sb)


def sequential_deff_fail_mask(s: ClusteredStreams, *, delta: float, alpha: float = DEFAULT_ALPHA,
                              tau: float = DEFAULT_TAU) -> np.ndarray:
    """Elementwise FAIL of the gate with design effects from the streams' cluster sums."""
    return sequential_fail_mask(s.wins_c, s.n_c, s.wins_b, s.n_b, delta=delta, alpha=alpha, tau=tau,
                                sums_canary=s.sums_c, sums_baseline=s.sums_b)


def check_scalar(s: ClusteredStreams, mask: np.ndarray, rng: np.random.Generator, cells: int = 200) -> int:
    """The vectorised gate is the scalar one (design_effect, winrate_test, sequential_decision) on a sample:
    random cells, every replication's first FAIL and the look before it (up to ``cells`` of those)."""
    reps, looks = mask.shape
    first = _first(mask)
    picks = list(zip(rng.integers(0, reps, cells).tolist(), rng.integers(0, looks, cells).tolist(), strict=True))
    for i in np.flatnonzero(first >= 0)[:cells]:
        picks += [(int(i), int(first[i])), (int(i), int(first[i]) - 1)]
    for i, j in picks:
        if j < 0:
            continue
        nc, nb = int(s.n_c[i, j]), int(s.n_b[i, j])
        t = winrate_test(int(s.wins_c[i, j]), nc, int(s.wins_b[i, j]), nb,
                         deff_canary=design_effect({k: float(v[i, j]) for k, v in s.sums_c.items()}, nc),
                         deff_baseline=design_effect({k: float(v[i, j]) for k, v in s.sums_b.items()}, nb))
        scalar = sequential_decision(t, delta=DELTA, min_sample=MIN_SAMPLE)[0] == "FAIL"
        if scalar != bool(mask[i, j]):
            raise AssertionError(f"vectorised gate disagrees with the scalar path at rep {i}, look {j}")
    return len(picks)


def _first(mask: np.ndarray) -> np.ndarray:
    """Index of the first True look per replication, -1 when none."""
    return np.where(mask.any(axis=1), mask.argmax(axis=1), -1)


def rollback_look(rule: str, s: Streams, tau: float = DEFAULT_TAU) -> np.ndarray:
    """Per replication, the look at which ``rule`` rolls back (-1: never within the stage)."""
    if rule == "sequential":
        return _first(sequential_fail_mask(s.wins_c, s.n_c, s.wins_b, s.n_b, delta=DELTA, alpha=DEFAULT_ALPHA,
                                           tau=tau))
    if rule == "sequential_deff":
        if not isinstance(s, ClusteredStreams):
            raise TypeError("sequential_deff needs cluster sums")
        return _first(sequential_deff_fail_mask(s, delta=DELTA, alpha=DEFAULT_ALPHA, tau=tau))
    failed = threshold_fail_mask(s.wins_c, s.n_c, s.wins_b, s.n_b, delta=DELTA, min_sample=MIN_SAMPLE)
    if rule == "threshold":
        return _first(failed)
    count = np.cumsum(failed, axis=1)
    if rule == "flagger_like":
        return _first(count >= FLAGGER_THRESHOLD)
    if rule == "argo_like":
        return _first(count > ARGO_FAILURE_LIMIT)
    raise ValueError(rule)


def _quantile_or_none(values: np.ndarray, reps: int, q: float = 0.5) -> float | None:
    """Quantile over *all* replications, a never-rolled-back one counting as +inf (None if not reached)."""
    padded = np.concatenate([np.sort(values.astype(float)), np.full(reps - values.size, np.inf)])
    if padded.size == 0:
        return None
    val = float(np.quantile(padded, q, method="inverted_cdf"))
    return val if math.isfinite(val) else None


def _median_or_none(values: np.ndarray, reps: int) -> float | None:
    """Median over *all* replications, a never-rolled-back one counting as +inf (None if not reached)."""
    if values.size * 2 <= reps:
        return None
    padded = np.concatenate([np.sort(values), np.full(reps - values.size, np.inf)])
    med = float(np.median(padded))
    return med if math.isfinite(med) else None


def summarise(look: np.ndarray, n_c: np.ndarray, looks: int) -> dict[str, Any]:
    reps = look.size
    within = (look >= 0) & (look < looks)
    p = float(within.mean())
    idx = look[within]
    trades = n_c[np.flatnonzero(within), idx].astype(float)
    minutes = (idx + 1) * INTERVAL_S / 60.0
    return {"rolled_back": p, "rolled_back_se": math.sqrt(p * (1 - p) / reps),
            "median_canary_trades": _median_or_none(trades, reps),
            "median_minutes": _median_or_none(minutes, reps),
            "median_canary_trades_when_rolled_back": float(np.median(trades)) if trades.size else None,
            "median_minutes_when_rolled_back": float(np.median(minutes)) if minutes.size else None}


def _cut(looks_by_rule: dict[str, np.ndarray], n_c: np.ndarray,
         stage_looks: dict[str, int]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {stage: {} for stage in stage_looks}
    for rule, look in looks_by_rule.items():
        for stage, looks in stage_looks.items():
            cut = np.where((look >= 0) & (look < looks), look, -1)
            out[stage][rule] = summarise(cut, n_c, looks)
    return out


def per_rule(s: Streams, stage_looks: dict[str, int], rules: tuple[str, ...] = RULES,
             tau: float = DEFAULT_TAU) -> dict[str, dict[str, Any]]:
    """{stage: {rule: summary}}; the shorter stage is the prefix of the longer one (same streams)."""
    return _cut({rule: rollback_look(rule, s, tau) for rule in rules}, s.n_c, stage_looks)


@dataclass
class Effective:
    """Per stage end: the canary's design effect and each arm's effective trades (n / design effect)."""

    deff_c: list[float] = field(default_factory=list)
    eff_c: list[float] = field(default_factory=list)
    eff_b: list[float] = field(default_factory=list)

    def add(self, s: ClusteredStreams, j: int) -> None:
        dc = design_effect_array({k: v[:, j] for k, v in s.sums_c.items()}, s.n_c[:, j])
        db = design_effect_array({k: v[:, j] for k, v in s.sums_b.items()}, s.n_b[:, j])
        self.deff_c += dc.tolist()
        self.eff_c += (s.n_c[:, j] / dc).tolist()
        self.eff_b += (s.n_b[:, j] / db).tolist()

    def to_json(self) -> dict[str, Any]:
        def q(x: list[float]) -> dict[str, float]:
            p10, p50, p90 = np.quantile(x, [0.1, 0.5, 0.9])
            return {"p10": float(p10), "median": float(p50), "p90": float(p90)}
        both = np.minimum(self.eff_c, self.eff_b) >= MIN_SAMPLE
        return {"design_effect_canary": q(self.deff_c), "effective_canary_trades": q(self.eff_c),
                "effective_baseline_trades": q(self.eff_b),
                "effective_min_sample_reached_both_arms": float(both.mean())}


def clustered_looks(rng: np.random.Generator, reps: int, looks: int, trades_per_hour: float, p_canary: float,
                    rules: tuple[str, ...], mean_size: float, checks: list[int] | None = None,
                    stage_looks: dict[str, int] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray,
                                                                          dict[str, Effective]]:
    """Rollback looks per rule and the canary trade counts for clustered streams, ``CHUNK`` reps at a time.

    Also, at the end of each stage in ``stage_looks``, the design effect and effective trades."""
    by_rule: dict[str, list[np.ndarray]] = {rule: [] for rule in rules}
    n_c: list[np.ndarray] = []
    effective = {stage: Effective() for stage in stage_looks or {}}
    for start in range(0, reps, CHUNK):
        s = simulate_clustered(rng, min(CHUNK, reps - start), looks, trades_per_hour, p_canary,
                               mean_size=mean_size)
        for rule in rules:
            by_rule[rule].append(rollback_look(rule, s))
        if checks is not None and "sequential_deff" in rules:
            checks.append(check_scalar(s, sequential_deff_fail_mask(s, delta=DELTA), rng, cells=50))
        n_c.append(s.n_c)
        for stage, end in (stage_looks or {}).items():
            effective[stage].add(s, end - 1)
    return {r: np.concatenate(v) for r, v in by_rule.items()}, np.concatenate(n_c), effective


def _stage_key(hours: float) -> str:
    return f"stage_{hours:g}h"


def _detection_row(look: np.ndarray, n_c: np.ndarray, stage_looks: int) -> dict[str, Any]:
    reps = look.size
    hit = look >= 0
    trades = n_c[np.flatnonzero(hit), look[hit]].astype(float)
    minutes = (look[hit] + 1) * INTERVAL_S / 60.0
    within_stage = float(((look >= 0) & (look < stage_looks)).mean())
    return {"median_canary_trades": _quantile_or_none(trades, reps, 0.5),
            "p90_canary_trades": _quantile_or_none(trades, reps, 0.9),
            "median_minutes": _quantile_or_none(minutes, reps, 0.5),
            "rolled_back_by_horizon": float(hit.mean()),
            "rolled_back_within_4h_stage": within_stage,
            "rolled_back_within_4h_stage_se": math.sqrt(within_stage * (1 - within_stage) / reps)}


def run_clustered(rng: np.random.Generator, reps: int, reps_drop: int, trades_per_hour: float, mean_size: float,
                  stage_looks: dict[str, int], log: Callable[[str], None], t0: float) -> dict[str, Any]:
    looks = max(stage_looks.values())
    checks: list[int] = []
    look, n_c, effective = clustered_looks(rng, reps, looks, trades_per_hour, BASELINE_RATE, CLUSTERED_RULES,
                                           mean_size, checks, stage_looks)
    equal = _cut(look, n_c, stage_looks)
    log(f"clustered equal canary done in {time.perf_counter() - t0:.1f} s")
    drops: dict[str, Any] = {}
    curve: dict[str, dict[str, float]] = {rule: {} for rule in CLUSTERED_RULES}
    for pp in sorted(set(DROPS_PP) | set(CURVE_DROPS_PP)):
        if pp == 0:
            res = equal
        else:
            lk, nc, _ = clustered_looks(rng, reps_drop, looks, trades_per_hour, BASELINE_RATE - pp / 100,
                                        CLUSTERED_RULES, mean_size, checks)
            res = _cut(lk, nc, stage_looks)
        if pp in DROPS_PP:
            drops[f"drop_{pp}pp"] = res
        for rule in CLUSTERED_RULES:
            curve[rule][f"drop_{pp}pp"] = res[_stage_key(max(STAGES_H))][rule]["rolled_back"]
    log(f"clustered drops done in {time.perf_counter() - t0:.1f} s")
    return {"model": CLUSTER_MODEL, "mean_cluster_size": mean_size,
            "design_effect_true": _true_design_effect(mean_size),
            "equal_canary_at_stage_end": {stage: e.to_json() for stage, e in effective.items()},
            "scalar_checks": int(sum(checks)), "equal_canary": equal, "drops": drops, "rollback_curve_4h": curve}


def _true_design_effect(mean_size: float) -> float:
    """E[n²]/E[n] for a geometric size of mean m on 1, 2, ...: (2m² − m)/m = 2m − 1 (shared outcomes)."""
    return 2.0 * mean_size - 1.0


def run_detection(rng: np.random.Generator, reps: int, trades_per_hour: float, mean_size: float,
                  log: Callable[[str], None], t0: float) -> dict[str, Any]:
    """Canary trades to rollback by the sequential gate over DETECT_HOURS (not cut off by the stage)."""
    looks = round(DETECT_HOURS * 3600 / INTERVAL_S)
    stage = round(max(STAGES_H) * 3600 / INTERVAL_S)
    out: dict[str, Any] = {"horizon_hours": DETECT_HOURS,
                           "horizon_canary_trades": trades_per_hour * CANARY_SHARE * DETECT_HOURS,
                           "independent": {}, "clustered": {}}
    for pp in DETECT_DROPS_PP:
        p = BASELINE_RATE - pp / 100
        looks_i, n_i = [], []
        for start in range(0, reps, CHUNK // 2):
            s = simulate(rng, min(CHUNK // 2, reps - start), looks, trades_per_hour, p)
            looks_i.append(rollback_look("sequential", s))
            n_i.append(s.n_c)
        out["independent"][f"drop_{pp}pp"] = _detection_row(np.concatenate(looks_i), np.concatenate(n_i), stage)
        lk, nc, _ = clustered_looks(rng, reps, looks, trades_per_hour, p, ("sequential_deff",), mean_size)
        out["clustered"][f"drop_{pp}pp"] = _detection_row(lk["sequential_deff"], nc, stage)
    log(f"detection table done in {time.perf_counter() - t0:.1f} s")
    return out


def run(reps: int, reps_drop: int, trades_per_hour: float, seed: int, mean_size: float = MEAN_CLUSTER_SIZE,
        reps_detect: int = 1000, log: Callable[[str], None] = print) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    stage_looks = {_stage_key(h): round(h * 3600 / INTERVAL_S) for h in STAGES_H}
    looks = max(stage_looks.values())
    t0 = time.perf_counter()

    equal = per_rule(simulate(rng, reps, looks, trades_per_hour, BASELINE_RATE), stage_looks)
    log(f"equal canary done in {time.perf_counter() - t0:.1f} s")
    drops: dict[str, Any] = {}
    curve: dict[str, dict[str, float]] = {rule: {} for rule in RULES}
    for pp in sorted(set(DROPS_PP) | set(CURVE_DROPS_PP)):
        if pp == 0:
            res = equal
        else:
            res = per_rule(simulate(rng, reps_drop, looks, trades_per_hour, BASELINE_RATE - pp / 100), stage_looks)
        if pp in DROPS_PP:
            drops[f"drop_{pp}pp"] = res
        for rule in RULES:
            curve[rule][f"drop_{pp}pp"] = res[_stage_key(max(STAGES_H))][rule]["rolled_back"]
    log(f"drops done in {time.perf_counter() - t0:.1f} s")

    tau_table: dict[str, Any] = {}
    longest = {_stage_key(max(STAGES_H)): looks}
    aa = simulate(rng, reps_drop, looks, trades_per_hour, BASELINE_RATE)
    drop_streams = {pp: simulate(rng, reps_drop, looks, trades_per_hour, BASELINE_RATE - pp / 100)
                    for pp in (6, 8, 12)}
    for tau in TAUS:
        row: dict[str, Any] = {"equal_rolled_back": per_rule(aa, longest, ("sequential",), tau)[
            _stage_key(max(STAGES_H))]["sequential"]["rolled_back"]}
        for pp, s in drop_streams.items():
            summ = per_rule(s, longest, ("sequential",), tau)[_stage_key(max(STAGES_H))]["sequential"]
            row[f"drop_{pp}pp"] = {"median_canary_trades": summ["median_canary_trades"],
                                   "rolled_back": summ["rolled_back"]}
        tau_table[f"tau_{tau:g}"] = row
    log(f"tau table done in {time.perf_counter() - t0:.1f} s")

    clustered = run_clustered(rng, reps, reps_drop, trades_per_hour, mean_size, stage_looks, log, t0)
    detection = run_detection(rng, reps_detect, trades_per_hour, mean_size, log, t0)

    stage = _stage_key(max(STAGES_H))
    seq_equal = equal[stage]["sequential"]["rolled_back"]
    others_equal = min(equal[stage][r]["rolled_back"] for r in RULES if r != "sequential")
    seq_8pp = drops["drop_8pp"][stage]["sequential"]["median_canary_trades"]
    c_equal = clustered["equal_canary"][stage]
    seq_equal_c = c_equal["sequential_deff"]["rolled_back"]
    others_equal_c = min(c_equal[r]["rolled_back"] for r in CLUSTERED_RULES if r != "sequential_deff")
    targets = {
        "equal_rollback_sequential": {"value": seq_equal, "limit": TARGET_EQUAL_SEQUENTIAL_MAX, "better": "lower",
                                      "met": seq_equal <= TARGET_EQUAL_SEQUENTIAL_MAX},
        "equal_rollback_other_rules_min": {"value": others_equal, "limit": TARGET_EQUAL_OTHERS_MIN,
                                           "better": "higher", "met": others_equal > TARGET_EQUAL_OTHERS_MIN},
        "equal_rollback_sequential_clustered": {"value": seq_equal_c, "limit": TARGET_EQUAL_SEQUENTIAL_MAX,
                                                "better": "lower",
                                                "met": seq_equal_c <= TARGET_EQUAL_SEQUENTIAL_MAX},
        "equal_rollback_other_rules_min_clustered": {"value": others_equal_c, "limit": TARGET_EQUAL_OTHERS_MIN,
                                                     "better": "higher",
                                                     "met": others_equal_c > TARGET_EQUAL_OTHERS_MIN},
        "detect_8pp_median_canary_trades": {"value": seq_8pp, "limit": TARGET_DETECT_8PP_MEDIAN_MAX,
                                            "better": "lower",
                                            "met": seq_8pp is not None and seq_8pp <= TARGET_DETECT_8PP_MEDIAN_MAX},
    }
    canary_per_hour = trades_per_hour * CANARY_SHARE
    clusters_per_hour = trades_per_hour / mean_size
    return {
        "benchmark": "winrate_gate_rules_monte_carlo",
        "setup": {"trades_per_hour_total": trades_per_hour, "canary_share": CANARY_SHARE,
                  "canary_trades_per_hour": canary_per_hour, "interval_seconds": INTERVAL_S,
                  "stages_hours": {_stage_key(h): h for h in STAGES_H}, "baseline_winrate": BASELINE_RATE,
                  "delta": DELTA, "min_sample": MIN_SAMPLE, "alpha": DEFAULT_ALPHA, "tau": DEFAULT_TAU,
                  "flagger_threshold": FLAGGER_THRESHOLD, "argo_failure_limit": ARGO_FAILURE_LIMIT,
                  "reps_equal": reps, "reps_drop": reps_drop, "reps_detect": reps_detect, "seed": seed,
                  "trade_rate": {
                      "stated": f"{trades_per_hour:g} closed trades/hour across routes, {CANARY_SHARE:.0%} to the "
                                f"canary ({canary_per_hour:g}/hour)",
                      "trades_per_hour_total": trades_per_hour, "canary_trades_per_hour": canary_per_hour,
                      "canary_minutes_to_min_sample": MIN_SAMPLE / canary_per_hour * 60.0,
                      "canary_trades_per_4h_stage": canary_per_hour * max(STAGES_H),
                      "mean_cluster_size": mean_size, "clusters_per_hour_total": clusters_per_hour,
                      "canary_clusters_per_hour": clusters_per_hour * CANARY_SHARE}},
        "equal_canary": equal,
        "drops": drops,
        "rollback_curve_4h": curve,
        "tau_table_4h": tau_table,
        "clustered": clustered,
        "detection": detection,
        "targets": targets,
        "all_targets_met": all(t["met"] for t in targets.values()),
        "wall_seconds": time.perf_counter() - t0,
    }


def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    styles = {"sequential_deff": ("tab:green", "o", "-"), "sequential": ("tab:green", "o", "-"),
              "threshold": ("tab:red", "s", "-"), "flagger_like": ("tab:blue", "^", "-"),
              "argo_like": ("tab:orange", "v", "-")}
    xs = list(CURVE_DROPS_PP)
    setup = result["setup"]
    panels = ((axes[0], result["rollback_curve_4h"], RULES, "independent trades"),
              (axes[1], result["clustered"]["rollback_curve_4h"], CLUSTERED_RULES,
               f"clustered trades (mean cluster size {result['clustered']['mean_cluster_size']:g}, shared outcome)"))
    for ax, curve, rules, title in panels:
        for rule in rules:
            color, marker, line = styles[rule]
            label = rule.replace("_", "-")
            if ax is axes[1] and rule == "sequential":
                line, color, label = "--", "tab:olive", "sequential without design effect"
            elif rule == "sequential_deff":
                label = "sequential with design effect"
            ys = [curve[rule][f"drop_{pp}pp"] for pp in xs]
            ax.plot(xs, ys, marker=marker, color=color, linestyle=line, label=label)
        ax.axhline(setup["alpha"], color="grey", linestyle=":", linewidth=1)
        ax.axvline(setup["delta"] * 100, color="grey", linestyle="--", linewidth=1)
        ax.text(setup["delta"] * 100 + 0.1, 0.5, "margin", color="grey", rotation=90, va="center")
        ax.text(xs[0] + 0.2, setup["alpha"] + 0.015, f"alpha = {setup['alpha']:g}", color="grey")
        ax.set_xlabel("true win-rate drop of the canary (percentage points, baseline 52 %)")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    axes[0].set_ylabel("P(rolled back within the 4 h stage)")
    fig.suptitle(f"Win-rate gate rules, checked every {setup['interval_seconds']:g} s "
                 f"({setup['canary_trades_per_hour']:g} canary trades/h)", fontsize=11)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight", facecolor="white")
    plt.close(fig)


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def _report_equal(equal: dict[str, Any], rules: tuple[str, ...]) -> None:
    for rule in rules:
        cells = [f"{equal[st][rule]['rolled_back']:.3f} ± {equal[st][rule]['rolled_back_se']:.3f} ({st})"
                 for st in equal]
        print(f"  {rule:<16} " + "   ".join(cells))


def _report_drops(drops: dict[str, Any], st: str, rules: tuple[str, ...]) -> None:
    for key, res in drops.items():
        for rule in rules:
            r = res[st][rule]
            print(f"  {key:<10} {rule:<16} {_fmt(r['median_canary_trades'], '.0f'):>6} trades "
                  f"{_fmt(r['median_minutes'], '.1f'):>6} min  rolled back {r['rolled_back']:.3f} "
                  f"± {r['rolled_back_se']:.3f}")


def report(result: dict[str, Any]) -> None:
    stages = list(result["equal_canary"])
    st = stages[-1]
    print("equal canary ever rolled back (± binomial SE):")
    _report_equal(result["equal_canary"], RULES)
    print(f"drops ({st}): median canary trades / minutes to rollback (never = +inf), fraction rolled back")
    _report_drops(result["drops"], st, RULES)
    print("tau table (sequential, 4 h): equal rolled back; median canary trades (rolled back) for 6/8/12 pp")
    for key, row in result["tau_table_4h"].items():
        cells = [f"{_fmt(row[d]['median_canary_trades'], '.0f')} ({row[d]['rolled_back']:.2f})"
                 for d in ("drop_6pp", "drop_8pp", "drop_12pp")]
        print(f"  {key:<9} {row['equal_rolled_back']:.3f}   " + "   ".join(cells))
    c = result["clustered"]
    print(f"clustered (mean size {c['mean_cluster_size']:g}, true design effect {c['design_effect_true']:g}; "
          f"{c['scalar_checks']} scalar checks); at each stage end, p10/median/p90:")
    for stage, e in c["equal_canary_at_stage_end"].items():
        de, ec, eb = e["design_effect_canary"], e["effective_canary_trades"], e["effective_baseline_trades"]
        print(f"  {stage}: canary design effect {de['p10']:.2f}/{de['median']:.2f}/{de['p90']:.2f}, effective "
              f"trades canary {ec['p10']:.0f}/{ec['median']:.0f}/{ec['p90']:.0f}, baseline "
              f"{eb['p10']:.0f}/{eb['median']:.0f}/{eb['p90']:.0f}; both arms >= min_sample in "
              f"{e['effective_min_sample_reached_both_arms']:.3f}")
    print("clustered: equal canary ever rolled back (± binomial SE):")
    _report_equal(c["equal_canary"], CLUSTERED_RULES)
    print(f"clustered drops ({st}):")
    _report_drops(c["drops"], st, CLUSTERED_RULES)
    d = result["detection"]
    print(f"detection (sequential gate, horizon {d['horizon_hours']:g} h = {d['horizon_canary_trades']:g} canary "
          "trades): median / p90 canary trades, rolled back by the horizon, within the 4 h stage")
    for kind in ("independent", "clustered"):
        for key, r in d[kind].items():
            print(f"  {kind:<11} {key:<10} {_fmt(r['median_canary_trades'], '.0f'):>6} / "
                  f"{_fmt(r['p90_canary_trades'], '.0f'):>6}   by horizon {r['rolled_back_by_horizon']:.3f}   "
                  f"within 4 h {r['rolled_back_within_4h_stage']:.3f} ± {r['rolled_back_within_4h_stage_se']:.3f}")
    for name, t in result["targets"].items():
        print(f"  {'PASS' if t['met'] else 'MISS':<5} {name}: {t['value']} ({t['better']} than {t['limit']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10000, help="replications of the equal canary")
    ap.add_argument("--reps-drop", type=int, default=2000, help="replications per drop and per tau")
    ap.add_argument("--reps-detect", type=int, default=1000, help="replications per drop of the detection table")
    ap.add_argument("--trades-per-hour", type=float, default=2400.0, help="closed trades/hour, all routes")
    ap.add_argument("--mean-cluster-size", type=float, default=MEAN_CLUSTER_SIZE,
                    help="mean trades per cluster in the clustered scenario")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gates.json")
    ap.add_argument("--plot", type=Path, default=REPO / "docs" / "gates-rollback.png")
    args = ap.parse_args()
    result = run(args.reps, args.reps_drop, args.trades_per_hour, args.seed, args.mean_cluster_size,
                 args.reps_detect)
    plot(result, args.plot)
    result["plot"] = str(args.plot.relative_to(REPO)) if args.plot.is_relative_to(REPO) else str(args.plot)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(f"wrote {args.out} and {args.plot} in {result['wall_seconds']:.1f} s")


if __name__ == "__main__":
    main()
