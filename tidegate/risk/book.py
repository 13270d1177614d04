"""Per-route book-keeping of the risk service: orders, fills, mids in; numbers out.

No I/O here: the service (tidegate.services.risk) feeds validated messages in and
copies the outputs into Prometheus. Keeping this a plain object makes the numbers
testable against an independent recomputation from the same inputs.

A *trade* is one filled entry order (docs/trading-metrics.md), not one fill: an
order filled in 15 pieces by 15 small public trades is one decision with one
outcome. Its markout is the quantity-weighted mean of its fills' markouts. It
closes once its order is done (filled, or cancelled with a partial fill) and a mid
newer than its last fill + 1000 ms has been seen (mids arrive in time order, so no
earlier mid can still arrive); an order whose end never arrives is closed
``orphan_ns`` after its last fill. Counting fills as trades (as this book once did)
made 126 orders look like 360 trades in a demo run, up to 15 of them one order's
pieces sharing one outcome, which is how two equal models came to differ by 45
points over a minute of canary.

Trades close in *clusters*: orders placed in the same burst of the market share its
move. The book therefore also groups each (route, model)'s closed trades into
clusters (a new cluster starts when a trade's entry is more than ``cluster_gap_ns``
after the previous one) and accumulates, per closed cluster, the sums a
cluster-robust variance needs (trades, wins, trades², wins², wins·trades). They are
monotone counters, so the gates can read them through PromQL ``increase()`` over a
release stage, across restarts of this service.

An order counts toward the fill rate once it is *done* (fully filled or
cancelled): done orders with any fill ÷ done orders.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from tidegate.risk import drift
from tidegate.risk.trading import HORIZONS_MS, MS, FillRecord, is_win, mean, ratio, trade_markouts

ROUTES = ("paper", "canary", "full")
CLUSTER_STATS = ("clusters", "trades", "wins", "trades_sq", "wins_sq", "wins_trades")
S = 1_000_000_000


@dataclass(frozen=True)
class ClosedTrade:
    route: str
    ts_ns: int
    markouts: dict[int, float]
    won: bool
    score: float
    model: str = ""
    coid: str = ""


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
class _OpenTrade:
    """An entry order with at least one fill, waiting for its end and its last markout."""

    route: str
    model: str
    coid: str
    score: float
    fills: list[FillRecord] = field(default_factory=list)
    end: str = ""
    qty: float = 0.0          # the order's quantity when known (its "new" event)

    @property
    def first_ns(self) -> int:
        return min(f.ts_ns for f in self.fills)

    @property
    def last_ns(self) -> int:
        return max(f.ts_ns for f in self.fills)

    def complete(self) -> bool:
        """Every fill of the order is known: it was cancelled, or its fills add up to its quantity."""
        if self.end == "cancelled":
            return True
        if self.end == "filled":
            return self.qty <= 0 or sum(f.qty for f in self.fills) >= self.qty * (1 - 1e-9)
        return False


@dataclass
class RouteTotals:
    trades: int = 0
    wins: int = 0
    accepted: int = 0
    rejected: int = 0


@dataclass
class _Cluster:
    first_ns: int
    last_ns: int
    trades: int = 0
    wins: int = 0


@dataclass
class Attempt:
    """The release attempt being supervised: its candidate, the active model, since when (market time)."""

    key: str = ""
    candidate: str | None = None
    active: str | None = None
    since_ns: int = 0
    canary_trades: int = 0
    canary_wins: int = 0
    baseline_trades: int = 0
    baseline_wins: int = 0


@dataclass
class RiskBook:
    window_trades: int = 500
    window_orders: int = 2000
    # Fills reach risk through the executor, which may run behind the market feed risk reads
    # directly (measured: 25 % of the book messages behind at a 12x replay on 2 cores). Mids
    # are kept this far behind the newest, so a late fill is still marked, not dropped.
    mid_history_ns: int = 900 * S
    cluster_gap_ns: int = 2 * S     # trades entered further apart than this are separate clusters
    # An order whose end never arrives is closed this long after its last fill *on the executor's
    # clock* (its newest fill): on the market clock a lagging executor made every trade an orphan at
    # its first fill. ``orphan_market_ns`` on the market clock bounds the wait if fills stop.
    orphan_ns: int = 60 * S
    orphan_market_ns: int = 900 * S
    # A burst closes once the executor's clock passed its gap, or after this much market time
    # without any fill (a quiet market: no later trade is coming to join it).
    cluster_wait_market_ns: int = 120 * S
    scan_ns: int = 50 * MS          # how often (market time) open trades are checked for closing
    mids_t: dict[str, list[int]] = field(default_factory=dict)
    mids: dict[str, list[float]] = field(default_factory=dict)
    open_trades: dict[str, dict[str, _OpenTrade]] = field(default_factory=dict)   # symbol -> coid -> trade
    closed: deque[ClosedTrade] = field(default_factory=deque)
    orders: dict[str, _Order] = field(default_factory=dict)
    done_orders: deque[_Order] = field(default_factory=deque)
    totals: dict[str, RouteTotals] = field(default_factory=lambda: {r: RouteTotals() for r in ROUTES})
    by_model: dict[tuple[str, str], list[int]] = field(default_factory=dict)        # (route, model) -> [trades, wins]
    clusters: dict[tuple[str, str], _Cluster] = field(default_factory=dict)         # the open cluster
    cluster_sums: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    attempt: Attempt = field(default_factory=Attempt)
    trade_times: deque[int] = field(default_factory=deque)
    filled_coids: set[str] = field(default_factory=set)
    entry_meta: dict[str, tuple[float, str]] = field(default_factory=dict)          # coid -> (qty, end)
    _next_scan: dict[str, int] = field(default_factory=dict)
    closed_coids: dict[str, None] = field(default_factory=dict)   # recently closed trades (insertion-ordered)
    late_fills: int = 0   # entry fills that arrived after their trade closed (not counted twice)
    last_ts_ns: int = 0
    exec_ts_ns: int = 0   # the executor's clock: the newest fill time seen
    unmarked: int = 0   # trades with no mid at or before a fill (cannot be marked; logged by the service)

    # -- inputs ---------------------------------------------------------------------------------
    def on_mid(self, symbol: str, ts_ns: int, mid: float) -> list[ClosedTrade]:
        times = self.mids_t.setdefault(symbol, [])
        values = self.mids.setdefault(symbol, [])
        if times and ts_ns < times[-1]:
            ts_ns = times[-1]  # never let the clock run backwards
        times.append(ts_ns)
        values.append(mid)
        self.last_ts_ns = max(self.last_ts_ns, ts_ns)
        # Scanning every open trade on every mid cost O(open trades) per book update: with a model
        # that keeps hundreds of orders open, risk fell behind its core subscriptions at replay speed.
        # Due trades are looked for at most every ``scan_ns`` of market time (a trade closes at most
        # that much later; its markouts do not depend on when it is closed).
        if ts_ns < self._next_scan.get(symbol, 0):
            return []
        self._next_scan[symbol] = ts_ns + self.scan_ns
        closed = self._close_due(symbol, ts_ns)
        self._flush_clusters(ts_ns)
        self._trim(symbol)
        return closed

    def on_order(self, coid: str, route: str, status: str, *, qty: float = 0.0, entry: bool | None = None) -> None:
        """One order event; order-insensitive (a redelivery can bring "filled" before "accepted").

        An order is *done* once both its acceptance and its end (filled or cancelled) are known.
        ``qty``/``entry`` (from the "new" event) tell the trade book how much fill to expect.
        """
        if entry is not False and status in ("new", "filled", "cancelled"):
            symbol = self._entry_event(coid, status, qty)
            times = self.mids_t.get(symbol or "")
            if times:   # the end can come after the last mid (another stream): close it on what is known
                self._close_due(symbol, times[-1], only=coid)
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

    def _entry_event(self, coid: str, status: str, qty: float) -> str | None:
        """Apply an entry order's event to its open trade (its symbol returned) or keep it for one."""
        for symbol, trades in self.open_trades.items():
            t = trades.get(coid)
            if t is not None:
                if status == "new":
                    t.qty = qty or t.qty
                elif not t.end:
                    t.end = status
                return symbol
        old_qty, old_end = self.entry_meta.get(coid, (0.0, ""))
        self.entry_meta[coid] = (qty or old_qty, old_end or ("" if status == "new" else status))
        while len(self.entry_meta) > 4 * self.window_orders + 10_000:
            self.entry_meta.pop(next(iter(self.entry_meta)))
        return None

    def on_fill(self, symbol: str, coid: str, fill: FillRecord, *, entry: bool) -> list[ClosedTrade]:
        """Record a fill; an entry fill joins its order's trade, closed once the order is done and marked."""
        self.filled_coids.add(coid)
        self.exec_ts_ns = max(self.exec_ts_ns, fill.ts_ns)
        o = self.orders.get(coid)
        if o is not None:
            o.filled = True
        if not entry:
            return []
        trades = self.open_trades.setdefault(symbol, {})
        t = trades.get(coid)
        if t is None and coid in self.closed_coids:
            self.late_fills += 1   # its trade already closed (the cancel overtook this fill): never a second trade
            return []
        if t is None:
            qty, end = self.entry_meta.pop(coid, (0.0, ""))
            t = trades[coid] = _OpenTrade(fill.route, fill.model, coid, fill.score, qty=qty, end=end)
            self.trade_times.append(fill.ts_ns)
        t.fills.append(fill)
        times = self.mids_t.get(symbol)
        return self._close_due(symbol, times[-1], only=coid) if times else []

    def begin_attempt(self, key: str, candidate: str | None, active: str | None) -> None:
        """Start counting a release attempt's evidence (canary = candidate's canary trades; baseline = the
        active model's other trades) from now; the same key again changes nothing."""
        if key == self.attempt.key and candidate == self.attempt.candidate and active == self.attempt.active:
            return
        self.attempt = Attempt(key, candidate, active, self.last_ts_ns)

    def _done(self, coid: str, o: _Order) -> None:
        o.filled = o.filled or coid in self.filled_coids
        self.done_orders.append(o)
        del self.orders[coid]
        while len(self.done_orders) > self.window_orders:
            self.done_orders.popleft()

    def _close_due(self, symbol: str, now_ns: int, only: str | None = None) -> list[ClosedTrade]:
        trades = self.open_trades.get(symbol)
        if not trades:
            return []
        horizon = max(HORIZONS_MS) * MS
        pool = trades.values() if only is None else [trades[only]] if only in trades else []
        due = [t for t in pool
               if (t.complete() and t.last_ns + horizon < now_ns) or t.last_ns + self.orphan_ns < self.exec_ts_ns
               or t.last_ns + self.orphan_market_ns < now_ns]
        out: list[ClosedTrade] = []
        for t in sorted(due, key=lambda t: t.first_ns):
            del trades[t.coid]
            self.closed_coids[t.coid] = None
            while len(self.closed_coids) > 4 * self.window_orders + 10_000:
                self.closed_coids.pop(next(iter(self.closed_coids)))
            marks = trade_markouts(t.fills, self.mids_t[symbol], self.mids[symbol])
            if marks is None:
                self.unmarked += 1
                continue
            trade = ClosedTrade(t.route, t.first_ns, marks, is_win(marks[max(HORIZONS_MS)]), t.score, t.model, t.coid)
            self._count(trade)
            out.append(trade)
        while len(self.closed) > self.window_trades:
            self.closed.popleft()
        return out

    def _count(self, trade: ClosedTrade) -> None:
        self.closed.append(trade)
        totals = self.totals[trade.route]
        totals.trades += 1
        totals.wins += int(trade.won)
        per = self.by_model.setdefault((trade.route, trade.model), [0, 0])
        per[0] += 1
        per[1] += int(trade.won)
        a = self.attempt
        if a.key and trade.ts_ns >= a.since_ns:
            if trade.route == "canary" and trade.model == a.candidate:
                a.canary_trades += 1
                a.canary_wins += int(trade.won)
            elif trade.route != "canary" and trade.model == a.active:
                a.baseline_trades += 1
                a.baseline_wins += int(trade.won)
        key = (trade.route, trade.model)
        c = self.clusters.get(key)
        if c is not None and trade.ts_ns > c.last_ns + self.cluster_gap_ns:
            self._close_cluster(key)
            c = None
        if c is None:
            c = self.clusters[key] = _Cluster(trade.ts_ns, trade.ts_ns)
        c.last_ns = max(c.last_ns, trade.ts_ns)
        c.trades += 1
        c.wins += int(trade.won)

    def _close_cluster(self, key: tuple[str, str]) -> None:
        c = self.clusters.pop(key)
        sums = self.cluster_sums.setdefault(key, dict.fromkeys(CLUSTER_STATS, 0))
        sums["clusters"] += 1
        sums["trades"] += c.trades
        sums["wins"] += c.wins
        sums["trades_sq"] += c.trades * c.trades
        sums["wins_sq"] += c.wins * c.wins
        sums["wins_trades"] += c.wins * c.trades

    def _flush_clusters(self, now_ns: int) -> None:
        """Close clusters no later trade can join: a trade entered after the gap would have closed by now
        (entry TTL and the markout horizon are seconds; ``orphan_ns`` bounds the wait). The executor's
        clock must have passed the gap too: fills arrive in its order, so a lagging executor may still
        deliver a trade of this burst (closing early would split the burst and understate the design
        effect); ``cluster_wait_market_ns`` bounds the wait if fills stop."""
        horizon = max(HORIZONS_MS) * MS
        oldest_open = min((t.first_ns for ts in self.open_trades.values() for t in ts.values()), default=None)
        for key, c in list(self.clusters.items()):
            end = c.last_ns + self.cluster_gap_ns
            if ((now_ns > end + horizon and self.exec_ts_ns > end) or now_ns > end + self.cluster_wait_market_ns) and (
                    oldest_open is None or oldest_open > end):
                self._close_cluster(key)

    def _trim(self, symbol: str) -> None:
        trades = self.open_trades.get(symbol)
        times = self.mids_t[symbol]
        # Fills reach risk later than the mids of the same market time (they go through the
        # executor and JetStream), so keep ``mid_history_ns`` of mids behind the newest one as
        # well as one mid at or before the oldest open trade; drop the rest once the list grows.
        oldest = times[-1] - self.mid_history_ns
        if trades:
            oldest = min(oldest, min(t.first_ns for t in trades.values()))
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
        """The seed's supervision gauges. During a release attempt (``begin_attempt``) the canary and its
        baseline count every trade since the attempt began, not a trade-count window (a 10 % canary's share
        of the last 500 trades never reaches a ``min_sample`` of 200); otherwise the rolling window."""
        a = self.attempt
        if a.key:
            canary = (a.canary_wins, a.canary_trades)
            active = (a.baseline_wins, a.baseline_trades)
        else:
            c = [t for t in self.closed if t.route == "canary"]
            act = [t for t in self.closed if t.route != "canary"]
            if c:   # same-window baseline (Kayenta's principle; BRIEF section 9)
                since = min(t.ts_ns for t in c)
                act = [t for t in act if t.ts_ns >= since]
            canary = (sum(t.won for t in c), len(c))
            active = (sum(t.won for t in act), len(act))
        recent = [t for t in self.closed if t.route != "canary"]
        scores = [t.score for t in self.closed]
        wins = [int(t.won) for t in self.closed]
        hour_ago = self.last_ts_ns - 3600 * S
        while self.trade_times and self.trade_times[0] < hour_ago:
            self.trade_times.popleft()
        return {
            "winrate_canary": ratio(*canary),
            "sample_canary": float(canary[1]),
            "winrate_baseline_active": ratio(*active),
            "sample_baseline_active": float(active[1]),
            "brier_online": drift.brier(scores, wins),
            "ece_online": drift.ece(scores, wins),
            "brier_baseline_active": drift.brier([t.score for t in recent], [int(t.won) for t in recent]),
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

    # ThroughputSpike compares this release's hours with the previous release's p95: a restart of
    # risk that forgot them could never fire it, so they persist (``risk.state_file``).
    MAX_HOURS = 24 * 30
    MAX_MODELS = 8

    def to_doc(self) -> dict[str, object]:
        """A JSON-able snapshot, bounded: the newest ``MAX_HOURS`` hours of the ``MAX_MODELS`` newest models."""
        keep = [m for m in (self.current_model, self.previous_model) if m]
        others = sorted((m for m in self.hours if m not in keep), key=lambda m: max(self.hours[m], default=0))
        room = max(0, self.MAX_MODELS - len(keep))
        models = keep + (others[len(others) - room:] if room else [])
        return {"version": 1, "current_model": self.current_model, "previous_model": self.previous_model,
                "hours": {m: {str(h): n for h, n in sorted(self.hours.get(m, {}).items())[-self.MAX_HOURS:]}
                          for m in models if m in self.hours}}

    @classmethod
    def from_doc(cls, doc: object) -> HourlyCounts:
        """The inverse of :meth:`to_doc`; raises ValueError naming what is wrong with a bad document."""
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise ValueError("risk state: expected an object with version 1")
        out = cls(previous_model=doc.get("previous_model"), current_model=doc.get("current_model"))
        hours = doc.get("hours", {})
        if not isinstance(hours, dict):
            raise ValueError("risk state: 'hours' must be an object of model -> {hour: count}")
        for model, per in hours.items():
            if not isinstance(per, dict):
                raise ValueError(f"risk state: hours[{model!r}] must be an object of hour -> count")
            try:
                out.hours[str(model)] = {int(h): int(n) for h, n in per.items()}
            except (TypeError, ValueError) as exc:
                raise ValueError(f"risk state: hours[{model!r}]: {exc}") from exc
        return out
