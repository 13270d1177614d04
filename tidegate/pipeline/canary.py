"""The canary pipeline's decision: a candidate's simulated trading against the release checklist's gates.

Pure functions over plain data. ``run_canary`` (canary_run.py) builds the days and
scores them; everything that decides lives here and is tested without models.

Per (source, regime) group, and pooled per source and overall, each model's
approved entries are counted the way tidegate/risk/trading.py defines the live
numbers: an approval is a post-only entry at the touch (an accepted order); a
*trade* is an entry that filled; **fill rate** = trades / entries; **win rate**
= winning trades / trades (a win is a fee-adjusted markout > 0 at the close
horizon); **avg markout** = mean fee-adjusted markout of the trades, in bps.

Gates (seed release checklist), each with the four-valued verdicts of the
release engine (tidegate.release.verdicts):

- ``winrate``: candidate win rate >= ``winrate_target``;
- ``markout``: candidate avg markout >= ``markout_min_bps`` (0: never lose on average);
- ``fill_rate``: candidate fill rate >= ``fill_rate_min``;
- ``winrate_vs_active``: candidate win rate >= active win rate - ``winrate_delta_pp``/100
  (the live canary's rollback rule 1, applied before any money is at risk; only
  when an active model is given).

A group with fewer than ``min_trades`` trades is INSUFFICIENT: it neither passes
nor fails (a model that abstains in a regime where nothing pays, as a good one
does in the synthetic ``normal`` regime, has not failed). The run passes only
when no group FAILs *and* every source's pooled group PASSes: each market the
canary replays must give enough evidence, so a model that barely trades cannot
pass by silence.

Every group also carries the *market*: what approving every candidate entry would
have done. It decides nothing; it tells a failed candidate's operator whether the
model chose badly or whether no entry in that market pays (as on the recorded
capture, docs/release-policy.md section 7), and the summary says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tidegate.release.verdicts import GateVerdict, Verdict
from tidegate.risk.trading import fill_rate, ratio, win_rate

ALL = "all"


@dataclass(frozen=True)
class CanaryGates:
    winrate_target: float = 0.5
    markout_min_bps: float = 0.0
    fill_rate_min: float = 0.25
    min_trades: int = 50
    winrate_delta_pp: float | None = 5.0  # None: no comparison with the active model

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TradeOutcome:
    """What a model's approvals would have done on some candidates (additive, so groups pool exactly)."""

    candidates: int = 0
    entries: int = 0  # approved post-only entries
    trades: int = 0  # entries that filled
    wins: int = 0
    markout_sum_bps: float = 0.0

    def __add__(self, other: TradeOutcome) -> TradeOutcome:
        return TradeOutcome(self.candidates + other.candidates, self.entries + other.entries,
                            self.trades + other.trades, self.wins + other.wins,
                            self.markout_sum_bps + other.markout_sum_bps)

    @property
    def fill_rate(self) -> float:
        return fill_rate(self.entries, self.trades)

    @property
    def win_rate(self) -> float:
        return win_rate(self.wins, self.trades)

    @property
    def avg_markout_bps(self) -> float:
        return ratio(self.markout_sum_bps, self.trades)

    def to_json(self) -> dict[str, object]:
        return {"candidates": self.candidates, "entries": self.entries, "trades": self.trades, "wins": self.wins,
                "fill_rate": json_number(self.fill_rate), "win_rate": json_number(self.win_rate),
                "avg_markout_bps": json_number(self.avg_markout_bps)}


def outcome(approved: np.ndarray, filled: np.ndarray, markout_bps: np.ndarray, won: np.ndarray) -> TradeOutcome:
    """Count approvals, fills, wins and the markout sum (markouts of unfilled entries are ignored)."""
    approved = np.asarray(approved, bool)
    traded = approved & np.asarray(filled, bool)
    return TradeOutcome(candidates=len(approved), entries=int(approved.sum()), trades=int(traded.sum()),
                        wins=int((traded & np.asarray(won, bool)).sum()),
                        markout_sum_bps=float(np.sum(np.asarray(markout_bps, np.float64)[traded])))


def json_number(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else round(float(x), 6)


def judge(candidate: TradeOutcome, active: TradeOutcome | None, gates: CanaryGates) -> tuple[GateVerdict, ...]:
    """The verdict of every gate for one group."""
    n = candidate.trades
    checks = [("winrate", candidate.win_rate, gates.winrate_target, "win_rate"),
              ("markout", candidate.avg_markout_bps, gates.markout_min_bps, "avg_markout_bps"),
              ("fill_rate", candidate.fill_rate, gates.fill_rate_min, "fill_rate")]
    out: list[GateVerdict] = []
    for gate, value, threshold, word in checks:
        expr = f"{word} >= {threshold:g}"
        if n < gates.min_trades:
            out.append(GateVerdict(gate, Verdict.INSUFFICIENT, json_number(value), n, threshold, expr,
                                   f"{n} trades < min_trades {gates.min_trades}"))
        else:
            ok = value >= threshold
            out.append(GateVerdict(gate, Verdict.PASS if ok else Verdict.FAIL, value, n, threshold, expr,
                                   f"{word} {value:.4f} {'>=' if ok else '<'} {threshold:g}"))
    if active is not None and gates.winrate_delta_pp is not None:
        expr = f"win_rate >= active win_rate - {gates.winrate_delta_pp:g}pp"
        if n < gates.min_trades or active.trades < gates.min_trades:
            who, k = ("candidate", n) if n < gates.min_trades else ("active model", active.trades)
            out.append(GateVerdict("winrate_vs_active", Verdict.INSUFFICIENT, json_number(candidate.win_rate), n, None,
                                   expr, f"{who} has {k} trades < min_trades {gates.min_trades}"))
        else:
            threshold = active.win_rate - gates.winrate_delta_pp / 100.0
            verdict = Verdict.PASS if candidate.win_rate >= threshold else Verdict.FAIL
            cmp = ">=" if verdict == Verdict.PASS else "<"
            out.append(GateVerdict("winrate_vs_active", verdict, candidate.win_rate, n, threshold, expr,
                                   f"win_rate {candidate.win_rate:.4f} {cmp} active {active.win_rate:.4f} - "
                                   f"{gates.winrate_delta_pp:g}pp = {threshold:.4f}"))
    return tuple(out)


def group_verdict(verdicts: Sequence[GateVerdict]) -> Verdict:
    kinds = {v.verdict for v in verdicts}
    if Verdict.FAIL in kinds:
        return Verdict.FAIL
    if Verdict.INSUFFICIENT in kinds:
        return Verdict.INSUFFICIENT
    return Verdict.PASS


@dataclass(frozen=True)
class GroupResult:
    source: str  # synthetic | replay | all
    regime: str  # normal | event | high-vol | all
    sessions: tuple[str, ...]
    candidate: TradeOutcome
    active: TradeOutcome | None
    gates: tuple[GateVerdict, ...]
    in_sample: tuple[str, ...] = ()  # sessions the candidate was trained on
    market: TradeOutcome | None = None  # every candidate entry approved (a reference, not a gate)

    @property
    def verdict(self) -> Verdict:
        return group_verdict(self.gates)

    @property
    def name(self) -> str:
        return f"{self.source}/{self.regime}"

    def to_json(self) -> dict[str, object]:
        return {"group": self.name, "source": self.source, "regime": self.regime, "verdict": str(self.verdict),
                "sessions": list(self.sessions), "candidate": self.candidate.to_json(),
                "active": self.active.to_json() if self.active is not None else None,
                "gates": [{"gate": v.gate, "verdict": str(v.verdict),
                           "value": json_number(v.value) if v.value is not None else None,
                           "threshold": v.threshold, "trades": v.sample, "rule": v.query,
                           "reason": v.reason} for v in self.gates],
                "in_sample_sessions": list(self.in_sample),
                "market": self.market.to_json() if self.market is not None else None}


@dataclass(frozen=True)
class DayOutcome:
    """One (source, regime) day type scored by both models."""

    source: str
    regime: str
    sessions: tuple[str, ...]
    candidate: TradeOutcome
    active: TradeOutcome | None
    market: TradeOutcome | None = None  # every candidate entry approved


def _pool(days: Sequence[DayOutcome], source: str, regime: str, gates: CanaryGates,
          trained_on: frozenset[str]) -> GroupResult:
    cand = sum((d.candidate for d in days), TradeOutcome())
    has_active = all(d.active is not None for d in days)
    act = sum((d.active for d in days if d.active is not None), TradeOutcome()) if has_active else None
    has_market = all(d.market is not None for d in days)
    market = sum((d.market for d in days if d.market is not None), TradeOutcome()) if has_market else None
    sessions = tuple(sorted({s for d in days for s in d.sessions}))
    return GroupResult(source, regime, sessions, cand, act, judge(cand, act, gates),
                       tuple(s for s in sessions if s in trained_on), market)


def market_note(group: GroupResult, gates: CanaryGates) -> str | None:
    """A sentence when approving every entry of ``group`` fails a gate too: the market, not only the model."""
    m = group.market
    if m is None or m.trades < gates.min_trades:
        return None
    failing = [v.gate for v in judge(m, None, gates) if v.verdict == Verdict.FAIL]
    if not failing:
        return None
    return (f"{group.name}: every entry approved would fail {', '.join(failing)} too (win rate {m.win_rate:.3f}, "
            f"avg markout {m.avg_markout_bps:+.3f} bps, fill rate {m.fill_rate:.3f} over {m.trades} trades)")


def evaluate(days: Sequence[DayOutcome], gates: CanaryGates, *, trained_on: Sequence[str] = ()
             ) -> tuple[list[GroupResult], bool, str]:
    """Groups per day type, per source and overall; whether the run passes; a one-line summary."""
    if not days:
        raise ValueError("no canary days to evaluate")
    seen = frozenset(trained_on)
    groups = [_pool([d], d.source, d.regime, gates, seen) for d in days]
    sources = list(dict.fromkeys(d.source for d in days))
    pooled = [_pool([d for d in days if d.source == s], s, ALL, gates, seen) for s in sources]
    overall = _pool(days, ALL, ALL, gates, seen)
    every = [*groups, *pooled, overall]
    failed = [g for g in every if g.verdict == Verdict.FAIL]
    thin = [g for g in pooled if g.verdict != Verdict.PASS and g.verdict != Verdict.FAIL]
    passed = not failed and not thin and overall.verdict == Verdict.PASS
    if passed:
        summary = (f"canary PASS: {overall.candidate.trades} trades, win rate {overall.candidate.win_rate:.3f}, "
                   f"avg markout {overall.candidate.avg_markout_bps:+.3f} bps, fill rate "
                   f"{overall.candidate.fill_rate:.3f} over {len(groups)} day type(s)")
    else:
        why = [f"{g.name} {v.gate} {v.verdict}: {v.reason}" for g in failed for v in g.gates
               if v.verdict == Verdict.FAIL]
        why += [f"{g.name}: not enough evidence ({g.candidate.trades} trades < min_trades {gates.min_trades})"
                for g in thin]
        summary = "canary FAIL: " + "; ".join(why[:6]) + (f"; ... {len(why) - 6} more" if len(why) > 6 else "")
        market = [n for g in pooled if g.verdict != Verdict.PASS and (n := market_note(g, gates))]
        if market:
            summary += " | market: " + "; ".join(market)
    return every, passed, summary
