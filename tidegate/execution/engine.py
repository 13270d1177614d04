"""The executor's decisions, free of I/O: approved signal in, order and fill events out.

``ExecutionEngine`` holds one paper exchange per (symbol, route, position side):
a canary's reduce-only exits never net against the stable model's position, and
(as in a venue's hedge mode) a buy entry's reduce-only sell exit closes the long
leg even when a sell entry on the same route has since filled (one-way netting
would turn that exit into a position increase and reject it). It decides,
for each approved signal, in this order:

1. duplicate signal id → ignored (idempotency: client order ids derive from the
   signal id, so a redelivered signal can never double an order);
2. warm-up (``warmup_seconds`` after start) → ``warmup_skip_total{symbol}``;
3. stale (older than ``max_signal_age`` in market time) → dropped;
4. venue: ``real`` only when ``EXCHANGE_MODE=real``, the route is canary/full,
   the engine's own rollout view routes the signal the same way, and the
   fail-safe is off; otherwise the paper simulator. A fail-safe override is
   counted in ``fail_safe_route_total{symbol}`` and the trade is labelled paper;
5. sizing (``compute_order_qty`` semantics; dropped below exchange minimums),
   the near-liquidation guard and ``liquidity_by_side``;
6. with ``executor.hold.entries``: a signal its own model has since scored below ``tau_hold``
   (a newer hold mark of the same side) is not entered (``orders_rejected_total{reason="below_tau_hold"}``);
7. a post-only entry ladder; each fill gets a reduce-only post-only exit.
   Entries resting longer than ``order_ttl`` are cancelled; exits older than
   ``exit_ttl`` are re-quoted at the touch (still passive).

Hold marks (``on_hold``: each live model's newest score per side, from the scorer) give
``tau_hold`` its meaning, the hysteresis of a trade: a position is kept while its model scores
its side at or above ``tau_hold``; below it, its take-profit exit is moved to the touch at once
(as an ``exit_ttl`` re-quote would, still passive and reduce-only), counted in
``hold_exit_total{route,leg="exit"}``. Resting entries get the same rule only with
``executor.hold.entries`` (off by default: a later candidate's score is the win probability
of a *new* order at the back of the queue, not of one resting with queue priority, and
cancelling on it halved the demo's trades and lowered their win rate, docs/release-policy.md).

All clocks but the warm-up and the fail-safe cooldown (wall clock: they are
operational timers) are market time, so a replay at any speed trades the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tidegate.bus.dedupe import RecentIds
from tidegate.bus.messages import ApprovedMsg, BookMsg, FillMsg, HoldMark, HoldMsg, OrderMsg, TradeMsg
from tidegate.config.schema import AppConfig
from tidegate.execution import gates, ladder
from tidegate.execution.simulator import ExecReport, OrderRequest, PaperExchange
from tidegate.execution.simulator.latency import make_latency_model
from tidegate.execution.simulator.queue import make_queue_model
from tidegate.execution.sizing import SizingParams, size_order
from tidegate.execution.venue import MarketRules

NS = 1_000_000_000
ADOPTED = -2   # placed_ns of an order reconciled from the venue before any book: the TTL starts at the next book


def position_side(side: str, reduce_only: bool) -> str:
    """The hedge-mode leg an order trades: buy entries and sell exits are the long leg."""
    return "long" if (side == "buy") != reduce_only else "short"


def entry_side(order: OrderMsg) -> str:
    """The side of the signal an order belongs to (an exit trades against its entry)."""
    if not order.reduce_only:
        return order.side
    return "sell" if order.side == "buy" else "buy"


def breaks_hold(mark: HoldMark | None, signal_ts_ns: int) -> bool:
    """A newer score of the signal's own model and side, below that model's ``tau_hold``."""
    return mark is not None and mark.ts_ns > signal_ts_ns and mark.score < mark.tau_hold


@dataclass
class _Live:
    """An order the engine placed and still tracks."""

    msg: OrderMsg
    placed_ns: int
    entry: bool
    signal_ts_ns: int = 0      # market time of the signal's candidate: hold marks newer than it apply
    fills: int = 0
    filled_qty: float = 0.0


@dataclass
class Decision:
    """What one input produced: events to publish and counters to bump (name, labels, amount)."""

    orders: list[OrderMsg] = field(default_factory=list)
    fills: list[FillMsg] = field(default_factory=list)
    counts: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    cancels: list[OrderMsg] = field(default_factory=list)   # real venue only: cancels for the shell to send

    def count(self, name: str, **labels: str) -> None:
        self.counts.append((name, labels, 1.0))

    def extend(self, other: Decision) -> None:
        self.orders += other.orders
        self.fills += other.fills
        self.counts += other.counts
        self.log += other.log
        self.cancels += other.cancels


class ExecutionEngine:
    def __init__(self, cfg: AppConfig, rules: dict[str, MarketRules], *, started_wall: float,
                 route_of: Callable[[str], str] | None = None, real_mode: bool = False):
        self.cfg = cfg
        self.rules = rules
        self.started_wall = started_wall
        self.route_of = route_of
        self.real_mode = real_mode
        self.fail_safe_until = 0.0
        self.books: dict[str, BookMsg] = {}
        self.exchanges: dict[tuple[str, str, str], PaperExchange] = {}
        self.live: dict[str, _Live] = {}
        self.seen = RecentIds()
        self.exit_seq: dict[str, int] = {}
        self.holds: dict[tuple[str, str, str], HoldMark] = {}   # (symbol, model, side) -> newest mark
        self.hold_broken = RecentIds(capacity=50_000)           # signals whose hold ended: act once
        # real mode: the venue's free balance (USDT available) and positions, as last read from it;
        # None until read (sizing then falls back to paper_free_balance_usd)
        self.venue_free_usd: float | None = None
        self.venue_liq_price: dict[tuple[str, str], float] = {}   # (symbol, "buy"/"sell" side of the position)
        s = cfg.executor.sizing
        self.sizing = SizingParams(s.leverage, s.notional_cap_usd, s.use_all_in, s.min_free_balance_usd,
                                   s.lot_size_rounding)

    # -- plumbing --------------------------------------------------------------------------------
    def exchange(self, symbol: str, route: str, leg: str) -> PaperExchange:
        key = (symbol, route, leg)
        ex = self.exchanges.get(key)
        if ex is None:
            sim = self.cfg.executor.simulator
            samples: list[float] = []
            if sim.latency_model == "empirical" and sim.latency_samples_file:
                import json
                from pathlib import Path

                samples = list(json.loads(Path(sim.latency_samples_file).read_text())["samples_ms"])
            r = self.rules[symbol]
            ex = PaperExchange(queue=make_queue_model(sim.queue_model, power=sim.prob_power),
                               latency=make_latency_model(sim.latency_model, entry_ms=sim.entry_latency_ms,
                                                          response_ms=sim.response_latency_ms,
                                                          sigma=sim.latency_sigma, samples_ms=samples,
                                                          seed=sim.seed),
                               maker_fee=r.maker_fee, taker_fee=r.taker_fee)
            book = self.books.get(symbol)
            if book is not None:
                ex.on_book(book.recv_ns, book.bids, book.asks, book.bids[0][0], book.asks[0][0])
            self.exchanges[key] = ex
        return ex

    def fail_safe_active(self, now_wall: float) -> bool:
        return now_wall < self.fail_safe_until

    def trip_fail_safe(self, reason: str, now_wall: float) -> Decision:
        d = Decision()
        self.fail_safe_until = now_wall + self.cfg.executor.fail_safe_cooldown
        d.count("fail_safe_switch_total", reason=reason or "crit")
        d.log.append(f"fail-safe: all executions to paper for {self.cfg.executor.fail_safe_cooldown:.0f}s "
                     f"({reason or 'CRIT'})")
        return d

    # -- market data -----------------------------------------------------------------------------
    def on_book(self, msg: BookMsg) -> Decision:
        self.books[msg.symbol] = msg
        d = Decision()
        bb = msg.bids[0][0] if msg.bids else None
        ba = msg.asks[0][0] if msg.asks else None
        for (symbol, route, _leg), ex in list(self.exchanges.items()):
            if symbol == msg.symbol:
                self._apply(d, symbol, route, ex.on_book(msg.recv_ns, msg.bid_changes, msg.ask_changes, bb, ba))
        self._expire(d, msg.symbol, msg.recv_ns)
        return d

    def on_trade(self, msg: TradeMsg) -> Decision:
        d = Decision()
        for (symbol, route, _leg), ex in list(self.exchanges.items()):
            if symbol == msg.symbol:
                self._apply(d, symbol, route, ex.on_trade(msg.recv_ns, msg.price, msg.qty, msg.aggressor))
        return d

    # -- signals ---------------------------------------------------------------------------------
    def on_approved(self, sig: ApprovedMsg, now_wall: float) -> Decision:
        d = Decision()
        if sig.signal_id in self.seen:
            return d
        self.seen.add(sig.signal_id)  # idempotent: a redelivered signal never doubles an order
        if now_wall - self.started_wall < self.cfg.executor.warmup_seconds:
            d.count("warmup_skip_total", symbol=sig.symbol)
            return d
        book = self.books.get(sig.symbol)
        rules = self.rules.get(sig.symbol)
        if book is None or rules is None or not book.bids or not book.asks:
            d.count("orders_rejected_total", route=sig.route, reason="no_book" if rules else "unknown_symbol")
            return d
        now = book.recv_ns
        if now - sig.recv_ns > self.cfg.executor.max_signal_age * NS:
            d.count("orders_rejected_total", route=sig.route, reason="stale_signal")
            return d
        if self.cfg.executor.hold.entries and \
                breaks_hold(self.holds.get((sig.symbol, sig.model_id, sig.side)), sig.ts_ns):
            d.count("orders_rejected_total", route=sig.route, reason="below_tau_hold")
            return d
        route = sig.route
        venue = "paper"
        if self.fail_safe_active(now_wall):
            if route != "paper":
                d.count("fail_safe_route_total", symbol=sig.symbol)
            route = "paper"
        elif self.real_mode and route in ("canary", "full"):
            agreed = self.route_of is None or self.route_of(sig.signal_id) == route
            venue = "real" if agreed else "paper"
            if not agreed:
                route = "paper"
        best_bid, best_ask = book.bids[0][0], book.asks[0][0]
        entry = best_bid if sig.side == "buy" else best_ask
        free = self.cfg.executor.paper_free_balance_usd
        if venue == "real" and self.venue_free_usd is not None:
            free = self.venue_free_usd
        size = size_order(entry, free, rules.lot_step, self.sizing, min_qty=rules.min_qty,
                          min_notional=rules.min_notional)
        if size.dropped:
            d.count("orders_rejected_total", route=route, reason=size.reason)
            return d
        guard = self.cfg.risk.near_liq_guard
        if guard.enabled:
            liq = gates.estimate_liq_price(entry, sig.side, self.sizing.leverage,
                                           self.cfg.executor.maintenance_margin_rate)
            venue_liq = self.venue_liq_price.get((sig.symbol, sig.side)) if venue == "real" else None
            if venue_liq:   # an open venue position on this side: its own liquidation price, if nearer
                liq = max(liq, venue_liq) if sig.side == "buy" else min(liq, venue_liq)
            g = gates.near_liq_guard(entry, liq, sig.side, assumed_sl_pct=self.cfg.risk.assumed_sl_pct,
                                     sl_buffer_multiplier=guard.sl_buffer_multiplier)
            if not g.passed:
                d.count("orders_rejected_total", route=route, reason=g.reason)
                return d
        lq = self.cfg.executor.gates.liquidity_by_side
        if lq.enabled:
            g = gates.liquidity_by_side(sig.side, size.qty, book.bids, book.asks, alpha=lq.alpha, levels=lq.levels)
            if not g.passed:
                d.count("orders_rejected_total", route=route, reason=g.reason)
                return d
        lc = self.cfg.executor.ladder
        rungs = ladder.entry_ladder(sig.side, size.qty, best_bid, best_ask, tick=rules.tick_size,
                                    lot_step=rules.lot_step, min_qty=rules.min_qty, rungs=lc.rungs,
                                    step_ticks=lc.step_ticks)
        if not rungs:
            d.count("orders_rejected_total", route=route, reason="below_min_qty")
            return d
        d.count("trades_opened_total", route=route)
        ex = self.exchange(sig.symbol, route, position_side(sig.side, False)) if venue == "paper" else None
        for rung in rungs:
            coid = f"{sig.signal_id}-e{rung.index}"
            msg = OrderMsg(client_order_id=coid, signal_id=sig.signal_id, symbol=sig.symbol, route=route,  # type: ignore[arg-type]
                           venue=venue, side=rung.side, price=rung.price, qty=rung.qty, status="new",  # type: ignore[arg-type]
                           post_only=True, rung=rung.index, bucket=rung.bucket, model_id=sig.model_id,
                           score=sig.score, ts_ns=now)
            self.live[coid] = _Live(msg, now, entry=True, signal_ts_ns=sig.ts_ns)
            d.orders.append(msg)
            d.count("exec_ladder_aggressiveness_total", bucket=rung.bucket)
            if ex is not None:
                ex.submit(OrderRequest(coid, rung.side, rung.price, rung.qty, post_only=True), now)
        return d

    def on_hold(self, msg: HoldMsg) -> Decision:
        """Newer scores per (model, side): end the hold of every order whose model fell below tau_hold."""
        d = Decision()
        fresh: list[HoldMark] = []
        for mark in msg.marks:
            key = (msg.symbol, mark.model_id, mark.side)
            old = self.holds.get(key)
            if old is None or mark.ts_ns >= old.ts_ns:
                self.holds[key] = mark
                if mark.score < mark.tau_hold:
                    fresh.append(mark)
        if not fresh:
            return d
        book = self.books.get(msg.symbol)
        now = book.recv_ns if book is not None else 0
        hold = self.cfg.executor.hold
        ended: list[tuple[str, _Live]] = []
        for coid, live in self.live.items():
            m = live.msg
            if m.symbol != msg.symbol or live.placed_ns < 0:
                continue
            if not (hold.entries if live.entry else hold.positions):
                continue
            if not live.entry and m.signal_id in self.hold_broken:
                continue          # this position's exit was already moved to the touch
            if breaks_hold(self.holds.get((m.symbol, m.model_id, entry_side(m))), live.signal_ts_ns):
                ended.append((coid, live))
        for coid, live in ended:
            m = live.msg
            self.hold_broken.add(m.signal_id)
            d.count("hold_exit_total", route=m.route, leg="entry" if live.entry else "exit")
            if m.venue == "real":
                d.cancels.append(m)
            else:
                self.exchange(m.symbol, m.route, position_side(m.side, m.reduce_only)).cancel(coid, now)
            live.placed_ns = -1   # cancelled: an exit is re-quoted at the touch when the cancel lands
        return d

    # -- the real venue (EXCHANGE_MODE=real) ---------------------------------------------------------
    def market_now(self, symbol: str) -> int:
        """Market time of the newest book: venue events are stamped with it, so risk's markouts line up."""
        book = self.books.get(symbol)
        return book.recv_ns if book is not None else 0

    def venue_reports(self, symbol: str, reports: list[ExecReport], fill_ids: dict[int, str] | None = None
                      ) -> Decision:
        """What the venue said about our real orders (stream or REST catch-up), as on paper: fills place
        exits, cancelled exits are re-quoted, rejections are counted. Unknown client ids are ignored."""
        d = Decision()
        for i, rep in enumerate(reports):
            live = self.live.get(rep.client_order_id)
            if live is None or live.msg.venue != "real":
                continue
            ids = {0: fill_ids[i]} if fill_ids and i in fill_ids else None
            self._apply(d, symbol, live.msg.route, [rep], ids)
        return d

    def is_live(self, client_order_id: str) -> bool:
        return client_order_id in self.live

    def live_real(self) -> list[OrderMsg]:
        return [lv.msg for lv in self.live.values() if lv.msg.venue == "real"]

    def live_order(self, client_order_id: str) -> OrderMsg | None:
        live = self.live.get(client_order_id)
        return live.msg if live is not None else None

    def filled_qty(self, client_order_id: str) -> float:
        live = self.live.get(client_order_id)
        return live.filled_qty if live is not None else 0.0

    def adopt(self, msg: OrderMsg, *, filled_qty: float = 0.0) -> None:
        """Track an order found open on the venue after a restart (reconciliation by orderLinkId).

        Its signal counts as seen (a redelivered signal places nothing), later exits of the same
        signal get new ids, and its TTL starts at the next book."""
        entry = not msg.reduce_only
        self.live[msg.client_order_id] = _Live(msg, ADOPTED, entry=entry, signal_ts_ns=msg.ts_ns,
                                               filled_qty=filled_qty)
        self.seen.add(msg.signal_id)
        tag = msg.client_order_id.rsplit("-", 1)[-1]
        if tag.startswith("x") and tag[1:].isdigit():
            self.exit_seq[msg.signal_id] = max(self.exit_seq.get(msg.signal_id, 0), int(tag[1:]))

    def cover_position(self, symbol: str, route: str, side: str, qty: float, signal_id: str,
                       model_id: str = "") -> Decision:
        """A reduce-only exit at the touch for venue position ``qty`` that no resting exit covers
        (a restart lost the exit that was being placed); ``side`` is the exit's side."""
        d = Decision()
        book = self.books.get(symbol)
        if book is None or not book.bids or not book.asks or qty <= 0:
            return d
        now = book.recv_ns
        parent = OrderMsg(client_order_id=f"{signal_id}-e0", signal_id=signal_id, symbol=symbol,
                          route=route, venue="real", side=side, price=book.bids[0][0], qty=qty,  # type: ignore[arg-type]
                          status="new", reduce_only=True, model_id=model_id, ts_ns=now)
        self.seen.add(signal_id)
        self._requote_exit(d, parent, qty, now, now)
        return d

    # -- reports ---------------------------------------------------------------------------------
    def _apply(self, d: Decision, symbol: str, route: str, reports: list[ExecReport],
               fill_ids: dict[int, str] | None = None) -> None:
        """Reports (paper exchange or venue) into events; ``fill_ids``: report index -> the venue's execution id."""
        for i, rep in enumerate(reports):
            live = self.live.get(rep.client_order_id)
            if live is None:
                continue
            base = live.msg
            if rep.kind == "accepted":
                d.orders.append(base.model_copy(update={"status": "accepted", "qty": rep.qty, "ts_ns": rep.ts_ns}))
            elif rep.kind == "rejected":
                d.orders.append(base.model_copy(update={"status": "rejected", "reason": rep.reason,
                                                        "ts_ns": rep.ts_ns}))
                d.count("orders_rejected_total", route=route, reason=rep.reason)
                self.live.pop(rep.client_order_id, None)
            elif rep.kind == "cancelled":
                d.orders.append(base.model_copy(update={"status": "cancelled", "ts_ns": rep.ts_ns}))
                self.live.pop(rep.client_order_id, None)
                if not live.entry and live.filled_qty < base.qty - 1e-12:
                    self._requote_exit(d, base, base.qty - live.filled_qty, rep.ts_ns, live.signal_ts_ns)
            elif rep.kind == "fill":
                live.fills += 1
                live.filled_qty += rep.qty
                exec_id = (fill_ids or {}).get(i)
                d.fills.append(FillMsg(
                    fill_id=f"{rep.client_order_id}-{exec_id}" if exec_id else f"{rep.client_order_id}-f{live.fills}",
                    client_order_id=rep.client_order_id,
                    signal_id=base.signal_id, symbol=symbol, route=base.route, venue=base.venue, side=base.side,
                    price=rep.price, qty=rep.qty, fee=rep.fee, fee_rate=rep.fee_rate,
                    liquidity=rep.liquidity or "maker", reduce_only=base.reduce_only, model_id=base.model_id,
                    score=base.score, ts_ns=rep.ts_ns))
                if rep.remaining <= 1e-12:
                    d.orders.append(base.model_copy(update={"status": "filled", "ts_ns": rep.ts_ns}))
                    self.live.pop(rep.client_order_id, None)
                if live.entry:
                    if base.signal_id in self.hold_broken:   # filled while its cancel was in flight
                        self._requote_exit(d, base.model_copy(update={"side": "sell" if base.side == "buy" else "buy",
                                                                       "reduce_only": True}),
                                           rep.qty, rep.ts_ns, live.signal_ts_ns)
                    else:
                        self._place_exit(d, base, rep.price, rep.qty, rep.ts_ns, live.signal_ts_ns)

    def _place_exit(self, d: Decision, entry: OrderMsg, price: float, qty: float, now: int, signal_ts: int) -> None:
        book = self.books.get(entry.symbol)
        rules = self.rules[entry.symbol]
        bb = book.bids[0][0] if book and book.bids else 0.0
        ba = book.asks[0][0] if book and book.asks else 0.0
        rung = ladder.exit_rung(entry.side, price, qty, bb, ba, tick=rules.tick_size,
                                exit_ticks=self.cfg.executor.ladder.exit_ticks)
        self._submit_exit(d, entry, rung.side, rung.price, qty, rung.bucket, now, signal_ts)

    def _requote_exit(self, d: Decision, exit_msg: OrderMsg, qty: float, now: int, signal_ts: int) -> None:
        book = self.books.get(exit_msg.symbol)
        if book is None or not book.bids or not book.asks:
            return
        price = book.asks[0][0] if exit_msg.side == "sell" else book.bids[0][0]
        self._submit_exit(d, exit_msg, exit_msg.side, price, qty, "high", now, signal_ts)

    def _submit_exit(self, d: Decision, parent: OrderMsg, side: str, price: float, qty: float, bucket: str,
                     now: int, signal_ts: int) -> None:
        n = self.exit_seq.get(parent.signal_id, 0) + 1
        self.exit_seq[parent.signal_id] = n
        coid = f"{parent.signal_id}-x{n}"
        msg = OrderMsg(client_order_id=coid, signal_id=parent.signal_id, symbol=parent.symbol, route=parent.route,
                       venue=parent.venue, side=side, price=price, qty=qty, status="new",  # type: ignore[arg-type]
                       reduce_only=True, post_only=True, rung=0, bucket=bucket, model_id=parent.model_id,
                       score=parent.score, ts_ns=now)
        self.live[coid] = _Live(msg, now, entry=False, signal_ts_ns=signal_ts)
        d.orders.append(msg)
        d.count("exec_ladder_aggressiveness_total", bucket=bucket)
        if parent.venue == "paper":
            self.exchange(parent.symbol, parent.route, position_side(side, True)).submit(
                OrderRequest(coid, side, price, qty, post_only=True, reduce_only=True), now)  # type: ignore[arg-type]

    def _expire(self, d: Decision, symbol: str, now: int) -> None:
        lc = self.cfg.executor.ladder
        for coid, live in list(self.live.items()):
            m = live.msg
            if m.symbol != symbol:
                continue
            if live.placed_ns == ADOPTED:    # reconciled after a restart: its TTL runs from now
                live.placed_ns = now
            if live.placed_ns < 0:
                continue
            ttl = lc.order_ttl if live.entry else lc.exit_ttl
            if now - live.placed_ns > ttl * NS:
                if m.venue == "real":
                    d.cancels.append(m)
                else:
                    self.exchange(symbol, m.route, position_side(m.side, m.reduce_only)).cancel(coid, now)
                live.placed_ns = -1  # cancel in flight; do not send it twice
