"""Fill-model calibration and execution scenarios: the paper exchange replayed against history.

Why: the probabilistic queue model (queue.py, ``ProbQueue``) has one free
parameter, ``prob_power`` (how likely a cancellation is ahead of us). Instead of
guessing it, ``calibrate`` replays the *same* orders that were really placed
(time, side, price, quantity, cancel time) against the same market data with
each candidate power, builds the empirical fill curve from the real fills
(share of orders first filled within h, for several horizons h) and the curve
the simulator produces, and picks the power with the smallest squared error.
The result is a config fragment (``executor.simulator.queue_model: prob``,
``prob_power``) that the executor's simulator reads.

``run_scenario`` drives the executor's decision core (ExecutionEngine) with a
market stream and a signal schedule under a latency model and an optional price
shock, and scores the outcome with the risk service's book (RiskBook), so a
Monte-Carlo study (scripts/simulate_execution.py) measures the same numbers the
risk service exports.

Everything here is pure computation over lists of messages; the scripts do the I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tidegate.bus.messages import ApprovedMsg, BookMsg, FillMsg, OrderMsg, TradeMsg
from tidegate.execution.simulator import OrderRequest, PaperExchange
from tidegate.execution.simulator.latency import ConstantLatency
from tidegate.execution.simulator.queue import QueueModel, make_queue_model

HORIZONS_S: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
POWERS: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
NS = 1_000_000_000
Market = Sequence[BookMsg | TradeMsg]


@dataclass(frozen=True)
class PlacedOrder:
    """An entry order as it was really placed: when, where, how much, and when it was cancelled."""

    coid: str
    side: str
    price: float
    qty: float
    placed_ns: int
    cancel_ns: int | None


def placed_orders(orders: Iterable[OrderMsg]) -> list[PlacedOrder]:
    """Post-only entry orders (not reduce-only) from an order-event history, in placement order."""
    new: dict[str, OrderMsg] = {}
    cancel: dict[str, int] = {}
    for o in orders:
        if o.status == "new" and not o.reduce_only and o.post_only:
            new.setdefault(o.client_order_id, o)
        elif o.status == "cancelled":
            cancel[o.client_order_id] = o.ts_ns
    return sorted((PlacedOrder(c, o.side, o.price, o.qty, o.ts_ns, cancel.get(c)) for c, o in new.items()),
                  key=lambda p: (p.placed_ns, p.coid))


def first_fill_delays(placed: Sequence[PlacedOrder], fills: Iterable[FillMsg]) -> dict[str, float]:
    """Seconds from placement to the first fill, per filled order."""
    at = {p.coid: p.placed_ns for p in placed}
    out: dict[str, float] = {}
    for f in fills:
        if f.client_order_id in at:
            d = (f.ts_ns - at[f.client_order_id]) / NS
            out[f.client_order_id] = min(out.get(f.client_order_id, math.inf), d)
    return out


def fill_curve(n_orders: int, delays: Iterable[float], horizons: Sequence[float] = HORIZONS_S) -> list[float]:
    """Share of the ``n_orders`` first filled within each horizon (the empirical fill curve)."""
    d = np.asarray(list(delays), dtype=float)
    if n_orders == 0:
        return [math.nan] * len(horizons)
    return [float(np.sum(d <= h)) / n_orders for h in horizons]


def replay_orders(market: Market, placed: Sequence[PlacedOrder], queue: QueueModel, *,
                  entry_latency_ms: float = 0.0) -> dict[str, float]:
    """Replay the placed orders against the market with one queue model; first-fill delays (s)."""
    ex = PaperExchange(queue=queue, latency=ConstantLatency(entry_latency_ms, 0.0))
    todo = sorted(placed, key=lambda p: p.placed_ns)
    cancels = sorted((p.cancel_ns, p.coid) for p in placed if p.cancel_ns is not None)
    at = {p.coid: p.placed_ns for p in placed}
    i = j = 0
    out: dict[str, float] = {}
    for m in market:
        t = m.recv_ns
        while i < len(todo) and todo[i].placed_ns <= t:
            p = todo[i]
            ex.submit(OrderRequest(p.coid, p.side, p.price, p.qty, post_only=True), p.placed_ns)  # type: ignore[arg-type]
            i += 1
        while j < len(cancels) and cancels[j][0] <= t:
            ex.cancel(cancels[j][1], cancels[j][0])
            j += 1
        if isinstance(m, BookMsg):
            bb = m.bids[0][0] if m.bids else None
            ba = m.asks[0][0] if m.asks else None
            reports = ex.on_book(t, m.bid_changes, m.ask_changes, bb, ba)
        else:
            reports = ex.on_trade(t, m.price, m.qty, m.aggressor)
        for r in reports:
            if r.kind == "fill" and r.client_order_id not in out:
                out[r.client_order_id] = (r.ts_ns - at[r.client_order_id]) / NS
    return out


@dataclass(frozen=True)
class Calibration:
    empirical: list[float]
    curves: dict[str, list[float]]     # "prob:2.0", "risk_averse", "optimistic" -> simulated curve
    errors: dict[str, float]           # squared error of each prob curve against the empirical one
    best_power: float
    orders: int
    horizons_s: tuple[float, ...] = HORIZONS_S

    def config(self) -> dict[str, Any]:
        """The config fragment the executor's simulator reads."""
        return {"executor": {"simulator": {"queue_model": "prob", "prob_power": self.best_power}}}

    def to_json(self) -> dict[str, Any]:
        return {"orders": self.orders, "horizons_s": list(self.horizons_s), "empirical_fill_curve": self.empirical,
                "simulated_fill_curves": self.curves, "squared_error": self.errors,
                "best": {"queue_model": "prob", "prob_power": self.best_power}, "config": self.config()}


def calibrate(market: Market, orders: Iterable[OrderMsg], fills: Iterable[FillMsg], *,
              powers: Sequence[float] = POWERS, entry_latency_ms: float = 0.0) -> Calibration:
    """Pick the prob-queue power whose simulated fill curve is closest to the real one."""
    placed = placed_orders(orders)
    if not placed:
        raise ValueError("no post-only entry orders in the history: nothing to calibrate against")
    emp = fill_curve(len(placed), first_fill_delays(placed, fills).values())
    curves: dict[str, list[float]] = {}
    errors: dict[str, float] = {}
    for name in ("risk_averse", "optimistic"):
        sim = replay_orders(market, placed, make_queue_model(name), entry_latency_ms=entry_latency_ms)
        curves[name] = fill_curve(len(placed), sim.values())
    for p in powers:
        sim = replay_orders(market, placed, make_queue_model("prob", power=p), entry_latency_ms=entry_latency_ms)
        curve = fill_curve(len(placed), sim.values())
        curves[f"prob:{p:g}"] = curve
        errors[f"prob:{p:g}"] = float(sum((a - b) ** 2 for a, b in zip(curve, emp, strict=True)))
    best = min(powers, key=lambda p: (errors[f"prob:{p:g}"], abs(p - 2.0)))
    return Calibration(emp, curves, errors, float(best), len(placed))


# -- scenarios --------------------------------------------------------------------------------------
def shocked(market: Market, at_ns: int, bps: float) -> list[BookMsg | TradeMsg]:
    """The market with every price from ``at_ns`` on moved by ``bps`` (an instantaneous jump)."""
    k = 1.0 + bps / 1e4
    out: list[BookMsg | TradeMsg] = []
    for m in market:
        if m.recv_ns < at_ns:
            out.append(m)
        elif isinstance(m, TradeMsg):
            out.append(m.model_copy(update={"price": m.price * k}))
        else:
            def mv(levels: list[tuple[float, float]]) -> list[tuple[float, float]]:
                return [(p * k, q) for p, q in levels]

            out.append(m.model_copy(update={"bids": mv(m.bids), "asks": mv(m.asks),
                                            "bid_changes": mv(m.bid_changes), "ask_changes": mv(m.ask_changes)}))
    return out


def signal_schedule(market: Market, every_ms: float, symbol: str) -> list[ApprovedMsg]:
    """Alternating buy/sell approved signals every ``every_ms`` of market time, at the mid."""
    out: list[ApprovedMsg] = []
    last = None
    for m in market:
        if isinstance(m, BookMsg) and m.bids and m.asks and (last is None or m.recv_ns - last >= every_ms * 1e6):
            last = m.recv_ns
            n = len(out)
            out.append(ApprovedMsg(signal_id=f"sim-{n}", symbol=symbol, side="buy" if n % 2 == 0 else "sell",
                                   ts_ns=m.ts_ns, recv_ns=m.recv_ns, emitted_ns=0, scored_ns=0,
                                   price=(m.bids[0][0] + m.asks[0][0]) / 2, route="paper", model_id="sim",
                                   score=0.5, tau_entry=0.5, bucket=0))
    return out


def run_scenario(cfg: Any, rules: dict[str, Any], market: Market, signals: Sequence[ApprovedMsg]) -> dict[str, float]:
    """Drive the executor's core with ``market`` and ``signals``; score it with the risk book.

    ``cfg`` is an AppConfig (its executor.simulator section picks the latency and queue models).
    """
    from tidegate.execution.engine import ExecutionEngine
    from tidegate.risk.book import RiskBook
    from tidegate.risk.trading import FillRecord

    engine = ExecutionEngine(cfg, rules, started_wall=-1e18)
    book = RiskBook(window_trades=10**9, window_orders=10**9)
    sigs = sorted(signals, key=lambda s: s.recv_ns)
    k = 0
    opened = 0

    def absorb(d: Any) -> None:
        for o in d.orders:
            book.on_order(o.client_order_id, o.route, o.status)
        for f in d.fills:
            book.on_fill(f.symbol, f.client_order_id, FillRecord(f.ts_ns, f.side, f.price, f.qty, f.fee_rate, f.route,
                                                                  f.score), entry=not f.reduce_only)

    for m in market:
        if isinstance(m, BookMsg):
            absorb(engine.on_book(m))
            mid = m.mid
            if mid is not None:
                book.on_mid(m.symbol, m.recv_ns, mid)
            while k < len(sigs) and sigs[k].recv_ns <= m.recv_ns:
                d = engine.on_approved(sigs[k], 0.0)
                opened += sum(1 for name, _, _ in d.counts if name == "trades_opened_total")
                absorb(d)
                k += 1
        else:
            absorb(engine.on_trade(m))
    snap = book.route_snapshot("paper")
    return {"signals": float(len(sigs)), "trades_opened": float(opened), "trades_closed": snap["sample"],
            "fill_rate": snap["fill_rate_rolling"], "win_rate": snap["winrate_rolling"],
            **{f"avg_markout_{h}ms": snap[f"avg_markout_{h}ms"] for h in (100, 500, 1000)}}
