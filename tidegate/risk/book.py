"""Rolling per-route book-keeping of the risk service: orders, fills, mids in; numbers out.

No I/O here: the service (tidegate.services.risk) feeds validated messages in and
copies ``snapshot()`` into Prometheus gauges. Keeping this a plain object makes
the numbers testable against an independent recomputation from the same inputs.

Event-time semantics: a fill becomes a *closed trade* when a mid newer than
``fill.ts + 1000 ms`` has been seen (mids arrive in time order, so no earlier mid
can still arrive); its markouts use the last mid at or before each horizon.
An order counts toward the fill rate once it is *done* (fully filled or
cancelled): done orders with any fill ÷ done orders.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from tidegate.risk import drift
from tidegate.risk.trading import HORIZONS_MS, MS, FillRecord, fill_markouts, is_win, mean, ratio

ROUTES = ("paper", "canary", "full")


@dataclass(frozen=True)
class ClosedTrade:
    route: str
    ts_ns: int
    markouts: dict[int, float]
    won: bool
    score: float


@dataclass
class _Order:
    route: str
    coid: str = ""
    filled: bool = False
    done: bool = False
    cancelled: bool = False
    accepted: bool = False
    end: str = ""      # "filled" or "cancelled" once known


@dataclass
class RouteTotals:
    trades: int = 0
    wins: int = 0
    accepted: int = 0
    rejected: int = 0


@dataclass
class RiskBook:
    window_trades: int = 500
    window_orders: int = 2000
    mid_history_ns: int = 120 * 1_000_000_000   # mids kept behind the newest, for late-arriving fills
    mids_t: dict[str, list[int]] = field(default_factory=dict)
    mids: dict[str, list[float]] = field(default_factory=dict)
    pending: dict[str, deque[FillRecord]] = field(default_factory=dict)
    closed: deque[ClosedTrade] = field(default_factory=deque)
    orders: dict[str, _Order] = field(default_factory=dict)
    done_orders: deque[_Order] = field(default_factory=deque)
    totals: dict[str, RouteTotals] = field(default_factory=lambda: {r: RouteTotals() for r in ROUTES})
    trade_times: deque[int] = field(default_factory=deque)
    filled_coids: set[str] = field(default_factory=set)
    last_ts_ns: int = 0
    unmarked: int = 0   # entry fills with no mid at or before them (cannot be marked; logged by the service)

    # -- inputs ---------------------------------------------------------------------------------
    def on_mid(self, symbol: str, ts_ns: int, mid: float) -> list[ClosedTrade]:
        times = self.mids_t.setdefault(symbol, [])
        values = self.mids.setdefault(symbol, [])
        if times and ts_ns < times[-1]:
            ts_ns = times[-1]  # never let the clock run backwards
        times.append(ts_ns)
        values.append(mid)
        self.last_ts_ns = max(self.last_ts_ns, ts_ns)
        closed = self._close_due(symbol, ts_ns)
        self._trim(symbol)
        return closed

    def on_order(self, coid: str, route: str, status: str) -> None:
        """One order event; order-insensitive (a redelivery can bring "filled" before "accepted").

        An order is *done* once both its acceptance and its end (filled or cancelled) are known.
        """
        if status == "rejected":
            if coid not in self.orders:
                self.totals[route].rejected += 1
            return
        if status not in ("accepted", "filled", "cancelled"):
            return
        o = self.orders.get(coid)
        if o is None:
            o = self.orders[coid] = _Order(route, coid)
        if status == "accepted":
            if o.accepted:
                return
            o.accepted = True
            self.totals[route].accepted += 1
        elif not o.end:
            o.end = status
        if o.accepted and o.end and not o.done:
            o.done = True
            o.cancelled = o.end == "cancelled"
            self._done(coid, o)

    def on_fill(self, symbol: str, coid: str, fill: FillRecord, *, entry: bool) -> list[ClosedTrade]:
        """Record a fill; an entry fill becomes a trade, closed as soon as a late enough mid is known."""
        self.filled_coids.add(coid)
        o = self.orders.get(coid)
        if o is not None:
            o.filled = True
        if not entry:
            return []
        queue = self.pending.setdefault(symbol, deque())
        queue.append(fill)
        if len(queue) > 1 and queue[-2].ts_ns > fill.ts_ns:  # keep pending fills in time order
            queue = deque(sorted(queue, key=lambda f: f.ts_ns))
            self.pending[symbol] = queue
        self.trade_times.append(fill.ts_ns)
        times = self.mids_t.get(symbol)
        return self._close_due(symbol, times[-1]) if times else []

    def _done(self, coid: str, o: _Order) -> None:
        o.filled = o.filled or coid in self.filled_coids
        self.done_orders.append(o)
        del self.orders[coid]
        while len(self.done_orders) > self.window_orders:
            self.done_orders.popleft()

    def _close_due(self, symbol: str, now_ns: int) -> list[ClosedTrade]:
        queue = self.pending.get(symbol)
        out: list[ClosedTrade] = []
        horizon = max(HORIZONS_MS) * MS
        while queue and queue[0].ts_ns + horizon < now_ns:
            fill = queue.popleft()
            marks = fill_markouts(fill, self.mids_t[symbol], self.mids[symbol])
            if marks is None:
                self.unmarked += 1
                continue
            trade = ClosedTrade(fill.route, fill.ts_ns, marks, is_win(marks[max(HORIZONS_MS)]), fill.score)
            self.closed.append(trade)
            totals = self.totals[fill.route]
            totals.trades += 1
            totals.wins += int(trade.won)
            out.append(trade)
        while len(self.closed) > self.window_trades:
            self.closed.popleft()
        return out

    def _trim(self, symbol: str) -> None:
        queue = self.pending.get(symbol)
        times = self.mids_t[symbol]
        # Fills reach risk later than the mids of the same market time (they go through the
        # executor and JetStream), so keep ``mid_history_ns`` of mids behind the newest one as
        # well as one mid at or before the oldest pending fill; drop the rest once the list grows.
        oldest = times[-1] - self.mid_history_ns
        if queue:
            oldest = min(oldest, queue[0].ts_ns)
        if len(times) > 4096:
            import bisect
            cut = max(0, bisect.bisect_right(times, oldest) - 2)
            if cut:
                del times[:cut]
                del self.mids[symbol][:cut]

    # -- outputs --------------------------------------------------------------------------------
    def route_snapshot(self, route: str) -> dict[str, float]:
        trades = [t for t in self.closed if t.route == route]
        done = [o for o in self.done_orders if o.route == route]
        filled = sum(1 for o in done if o.filled or o.coid in self.filled_coids)
        cancelled = sum(1 for o in done if o.cancelled)
        snap = {
            "winrate_rolling": ratio(sum(t.won for t in trades), len(trades)),
            "fill_rate_rolling": ratio(filled, len(done)),
            "cancel_to_fill_ratio": ratio(cancelled, filled),
            "sample": float(len(trades)),
        }
        for h in HORIZONS_MS:
            snap[f"avg_markout_{h}ms"] = mean([t.markouts[h] for t in trades])
        return snap

    def supervision(self) -> dict[str, float]:
        canary = [t for t in self.closed if t.route == "canary"]
        active = [t for t in self.closed if t.route != "canary"]
        if canary:
            # Same-window baseline: compare the canary with the active model's trades over the
            # same stretch of market, not with history. Otherwise a canary that starts in a hard
            # minute is judged against an easier past (Kayenta's principle; BRIEF section 9).
            since = min(t.ts_ns for t in canary)
            active = [t for t in active if t.ts_ns >= since]
        scores = [t.score for t in self.closed]
        wins = [int(t.won) for t in self.closed]
        hour_ago = self.last_ts_ns - 3600 * 1_000_000_000
        while self.trade_times and self.trade_times[0] < hour_ago:
            self.trade_times.popleft()
        return {
            "winrate_canary": ratio(sum(t.won for t in canary), len(canary)),
            "sample_canary": float(len(canary)),
            "winrate_baseline_active": ratio(sum(t.won for t in active), len(active)),
            "sample_baseline_active": float(len(active)),
            "brier_online": drift.brier(scores, wins),
            "ece_online": drift.ece(scores, wins),
            "brier_baseline_active": drift.brier([t.score for t in active], [int(t.won) for t in active]),
            "trades_per_hour": float(len(self.trade_times)),
        }


def p95(values: Sequence[float]) -> float:
    """Nearest-rank 95th percentile (NaN for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)])


@dataclass
class HourlyCounts:
    """Trades opened per market-time hour, per active model; the p95 of the previous release's hours."""

    hours: dict[str, dict[int, int]] = field(default_factory=dict)
    previous_model: str | None = None
    current_model: str | None = None

    def set_active(self, model_id: str | None) -> None:
        if model_id != self.current_model:
            if self.current_model is not None:
                self.previous_model = self.current_model
            self.current_model = model_id

    def add(self, ts_ns: int) -> None:
        key = self.current_model or "none"
        hour = ts_ns // (3600 * 1_000_000_000)
        per = self.hours.setdefault(key, {})
        per[hour] = per.get(hour, 0) + 1

    def prev_release_p95(self) -> float:
        if self.previous_model is None:
            return math.nan
        return p95([float(v) for v in self.hours.get(self.previous_model, {}).values()])
