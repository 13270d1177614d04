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

Reported: (a) the probability that an *equal* canary is ever rolled back within the
stage, per rule, with its binomial standard error; (b) for canaries 4, 8 and 12 points
worse, the median canary trades and minutes to rollback and the fraction rolled back
within the stage; (c) detection trades and the A/A rate against tau; a PNG of
P(rolled back within the stage) against the true drop per rule. The targets
(equal canary <= 5 % for sequential and > 5 % for every other rule; 8-point drop
caught in <= 700 canary trades at the median) are recorded with their figures under
``targets``. Writes bench/results/gates.json and docs/gates-rollback.png.

    .venv/bin/python bench/bench_gates.py [--reps 10000] [--reps-drop 2000] [--trades-per-hour 2400]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tidegate.release.sequential import (  # noqa: E402
    DEFAULT_ALPHA,
    DEFAULT_TAU,
    sequential_fail_mask,
    threshold_fail_mask,
)

BASELINE_RATE = 0.52
CANARY_SHARE = 0.10
INTERVAL_S = 30.0
DELTA = 0.05
MIN_SAMPLE = 200
FLAGGER_THRESHOLD = 5
ARGO_FAILURE_LIMIT = 3
STAGES_H = (2.0, 4.0)
DROPS_PP = (4, 8, 12)
CURVE_DROPS_PP = (0, 2, 4, 6, 8, 10, 12, 14)
TAUS = (0.02, 0.03, 0.05, 0.08, 0.12, 0.2)
RULES = ("sequential", "threshold", "flagger_like", "argo_like")

TARGET_EQUAL_SEQUENTIAL_MAX = 0.05
TARGET_EQUAL_OTHERS_MIN = 0.05
TARGET_DETECT_8PP_MEDIAN_MAX = 700


@dataclass(frozen=True)
class Streams:
    """Cumulative counts at each look, shape (reps, looks)."""

    wins_c: np.ndarray
    n_c: np.ndarray
    wins_b: np.ndarray
    n_b: np.ndarray


def simulate(rng: np.random.Generator, reps: int, looks: int, trades_per_hour: float, p_canary: float,
             p_baseline: float = BASELINE_RATE) -> Streams:
    per_look = trades_per_hour * INTERVAL_S / 3600.0
    nc = rng.poisson(per_look * CANARY_SHARE, (reps, looks))
    nb = rng.poisson(per_look * (1 - CANARY_SHARE), (reps, looks))
    wc, wb = rng.binomial(nc, p_canary), rng.binomial(nb, p_baseline)
    return Streams(*(np.cumsum(a, axis=1, dtype=np.int64) for a in (wc, nc, wb, nb)))


def _first(mask: np.ndarray) -> np.ndarray:
    """Index of the first True look per replication, -1 when none."""
    return np.where(mask.any(axis=1), mask.argmax(axis=1), -1)


def rollback_look(rule: str, s: Streams, tau: float = DEFAULT_TAU) -> np.ndarray:
    """Per replication, the look at which ``rule`` rolls back (-1: never within the stage)."""
    if rule == "sequential":
        return _first(sequential_fail_mask(s.wins_c, s.n_c, s.wins_b, s.n_b, delta=DELTA, alpha=DEFAULT_ALPHA,
                                           tau=tau))
    failed = threshold_fail_mask(s.wins_c, s.n_c, s.wins_b, s.n_b, delta=DELTA, min_sample=MIN_SAMPLE)
    if rule == "threshold":
        return _first(failed)
    count = np.cumsum(failed, axis=1)
    if rule == "flagger_like":
        return _first(count >= FLAGGER_THRESHOLD)
    if rule == "argo_like":
        return _first(count > ARGO_FAILURE_LIMIT)
    raise ValueError(rule)


def _median_or_none(values: np.ndarray, reps: int) -> float | None:
    """Median over *all* replications, a never-rolled-back one counting as +inf (None if not reached)."""
    if values.size * 2 <= reps:
        return None
    padded = np.concatenate([np.sort(values), np.full(reps - values.size, np.inf)])
    med = float(np.median(padded))
    return med if math.isfinite(med) else None


def summarise(look: np.ndarray, s: Streams, looks: int) -> dict[str, Any]:
    reps = look.size
    within = (look >= 0) & (look < looks)
    p = float(within.mean())
    idx = look[within]
    trades = s.n_c[np.flatnonzero(within), idx].astype(float)
    minutes = (idx + 1) * INTERVAL_S / 60.0
    return {"rolled_back": p, "rolled_back_se": math.sqrt(p * (1 - p) / reps),
            "median_canary_trades": _median_or_none(trades, reps),
            "median_minutes": _median_or_none(minutes, reps),
            "median_canary_trades_when_rolled_back": float(np.median(trades)) if trades.size else None,
            "median_minutes_when_rolled_back": float(np.median(minutes)) if minutes.size else None}


def per_rule(s: Streams, stage_looks: dict[str, int], rules: tuple[str, ...] = RULES,
             tau: float = DEFAULT_TAU) -> dict[str, dict[str, Any]]:
    """{stage: {rule: summary}}; the shorter stage is the prefix of the longer one (same streams)."""
    out: dict[str, dict[str, Any]] = {stage: {} for stage in stage_looks}
    for rule in rules:
        look = rollback_look(rule, s, tau)
        for stage, looks in stage_looks.items():
            cut = np.where((look >= 0) & (look < looks), look, -1)
            out[stage][rule] = summarise(cut, s, looks)
    return out


def _stage_key(hours: float) -> str:
    return f"stage_{hours:g}h"


def run(reps: int, reps_drop: int, trades_per_hour: float, seed: int,
        log: Callable[[str], None] = print) -> dict[str, Any]:
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

    stage = _stage_key(max(STAGES_H))
    seq_equal = equal[stage]["sequential"]["rolled_back"]
    others_equal = min(equal[stage][r]["rolled_back"] for r in RULES if r != "sequential")
    seq_8pp = drops["drop_8pp"][stage]["sequential"]["median_canary_trades"]
    targets = {
        "equal_rollback_sequential": {"value": seq_equal, "limit": TARGET_EQUAL_SEQUENTIAL_MAX, "better": "lower",
                                      "met": seq_equal <= TARGET_EQUAL_SEQUENTIAL_MAX},
        "equal_rollback_other_rules_min": {"value": others_equal, "limit": TARGET_EQUAL_OTHERS_MIN,
                                           "better": "higher", "met": others_equal > TARGET_EQUAL_OTHERS_MIN},
        "detect_8pp_median_canary_trades": {"value": seq_8pp, "limit": TARGET_DETECT_8PP_MEDIAN_MAX,
                                            "better": "lower",
                                            "met": seq_8pp is not None and seq_8pp <= TARGET_DETECT_8PP_MEDIAN_MAX},
    }
    return {
        "benchmark": "winrate_gate_rules_monte_carlo",
        "setup": {"trades_per_hour_total": trades_per_hour, "canary_share": CANARY_SHARE,
                  "canary_trades_per_hour": trades_per_hour * CANARY_SHARE, "interval_seconds": INTERVAL_S,
                  "stages_hours": {_stage_key(h): h for h in STAGES_H}, "baseline_winrate": BASELINE_RATE,
                  "delta": DELTA, "min_sample": MIN_SAMPLE, "alpha": DEFAULT_ALPHA, "tau": DEFAULT_TAU,
                  "flagger_threshold": FLAGGER_THRESHOLD, "argo_failure_limit": ARGO_FAILURE_LIMIT,
                  "reps_equal": reps, "reps_drop": reps_drop, "seed": seed},
        "equal_canary": equal,
        "drops": drops,
        "rollback_curve_4h": curve,
        "tau_table_4h": tau_table,
        "targets": targets,
        "all_targets_met": all(t["met"] for t in targets.values()),
        "wall_seconds": time.perf_counter() - t0,
    }


def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    styles = {"sequential": ("tab:green", "o"), "threshold": ("tab:red", "s"), "flagger_like": ("tab:blue", "^"),
              "argo_like": ("tab:orange", "v")}
    xs = list(CURVE_DROPS_PP)
    for rule, (color, marker) in styles.items():
        ys = [result["rollback_curve_4h"][rule][f"drop_{pp}pp"] for pp in xs]
        ax.plot(xs, ys, marker=marker, color=color, label=rule.replace("_", "-"))
    setup = result["setup"]
    ax.axhline(setup["alpha"], color="grey", linestyle=":", linewidth=1)
    ax.axvline(setup["delta"] * 100, color="grey", linestyle="--", linewidth=1)
    ax.text(setup["delta"] * 100 + 0.1, 0.5, "margin", color="grey", rotation=90, va="center")
    ax.text(xs[0] + 0.2, setup["alpha"] + 0.015, f"alpha = {setup['alpha']:g}", color="grey")
    ax.set_xlabel("true win-rate drop of the canary (percentage points, baseline 52 %)")
    ax.set_ylabel("P(rolled back within the 4 h stage)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Win-rate gate rules, checked every {setup['interval_seconds']:g} s "
                 f"({setup['canary_trades_per_hour']:g} canary trades/h)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight", facecolor="white")
    plt.close(fig)


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def report(result: dict[str, Any]) -> None:
    stages = list(result["equal_canary"])
    print("equal canary ever rolled back (± binomial SE):")
    for rule in RULES:
        cells = [f"{result['equal_canary'][st][rule]['rolled_back']:.3f} ± "
                 f"{result['equal_canary'][st][rule]['rolled_back_se']:.3f} ({st})" for st in stages]
        print(f"  {rule:<13} " + "   ".join(cells))
    st = stages[-1]
    print(f"drops ({st}): median canary trades / minutes to rollback (never = +inf), fraction rolled back")
    for key, res in result["drops"].items():
        for rule in RULES:
            r = res[st][rule]
            print(f"  {key:<10} {rule:<13} {_fmt(r['median_canary_trades'], '.0f'):>6} trades "
                  f"{_fmt(r['median_minutes'], '.1f'):>6} min  rolled back {r['rolled_back']:.3f}")
    print("tau table (sequential, 4 h): equal rolled back; median canary trades (rolled back) for 6/8/12 pp")
    for key, row in result["tau_table_4h"].items():
        cells = [f"{_fmt(row[d]['median_canary_trades'], '.0f')} ({row[d]['rolled_back']:.2f})"
                 for d in ("drop_6pp", "drop_8pp", "drop_12pp")]
        print(f"  {key:<9} {row['equal_rolled_back']:.3f}   " + "   ".join(cells))
    for name, t in result["targets"].items():
        print(f"  {'PASS' if t['met'] else 'MISS':<5} {name}: {t['value']} ({t['better']} than {t['limit']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10000, help="replications of the equal canary")
    ap.add_argument("--reps-drop", type=int, default=2000, help="replications per drop and per tau")
    ap.add_argument("--trades-per-hour", type=float, default=2400.0, help="closed trades/hour, all routes")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gates.json")
    ap.add_argument("--plot", type=Path, default=REPO / "docs" / "gates-rollback.png")
    args = ap.parse_args()
    result = run(args.reps, args.reps_drop, args.trades_per_hour, args.seed)
    plot(result, args.plot)
    result["plot"] = str(args.plot.relative_to(REPO)) if args.plot.is_relative_to(REPO) else str(args.plot)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(f"wrote {args.out} and {args.plot} in {result['wall_seconds']:.1f} s")


if __name__ == "__main__":
    main()
