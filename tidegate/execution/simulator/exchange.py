"""The paper exchange: a queue-aware matching simulator driven by replayed depth and trades.

Rules, and where they come from (../shared/design/notes/trading-ml-anchors.md):

- Commands (new, cancel, modify) travel to the exchange with the latency
  model's *entry* delay and are processed, in order, when market time reaches
  their arrival time; reports carry the exchange time and, in ``visible_ns``,
  the time the strategy would see them (plus the *response* delay).
- A post-only order that would cross the opposite best price on arrival is
  rejected, never filled (nautilus ``engine.rs``; hftbacktest GTX expiry).
- An accepted order joins the back of its level: the quantity ahead is the
  level size at acceptance (nautilus "queue position tracking"). The queue model
  (queue.py) advances it on trades at that price and on level shrinkage.
- A trade at our price fills us only with what exceeds the quantity ahead,
  and only up to the trade's size, so fills are partial when the trade is
  small. A trade strictly *through* our price, or the opposite best moving
  through it, fills the remainder (hftbacktest's rule; the replay has no
  market impact, so the price having traded through means we were hit).
- When our level is deleted from the book, the queue ahead clears.
- A modify goes to the back of the queue at its (new) price.
- Fees are ``qty × price × rate``, maker or taker (ccxt's ``calculate_fee`` is
  wrong for buys on linear swaps, so it is not used).
- Reduce-only orders may only shrink the simulated position; one that would
  increase it is rejected, one larger than the position is clipped to it.

The simulator trades one symbol; the executor owns one per symbol.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from tidegate.execution.simulator.latency import ConstantLatency, LatencyModel
from tidegate.execution.simulator.queue import QueueModel, QueuePos, RiskAverseQueue

Side = Literal["buy", "sell"]
ReportKind = Literal["accepted", "rejected", "fill", "cancelled", "modified"]
_EPS = 1e-12


@dataclass(frozen=True)
class OrderRequest:
    client_order_id: str
    side: Side
    price: float
    qty: float
    post_only: bool = True
    reduce_only: bool = False


@dataclass(frozen=True)
class ExecReport:
    kind: ReportKind
    client_order_id: str
    ts_ns: int               # exchange time of the event
    visible_ns: int          # when the strategy learns of it
    price: float = 0.0
    qty: float = 0.0         # filled quantity for "fill"; order quantity otherwise
    remaining: float = 0.0
    fee: float = 0.0
    fee_rate: float = 0.0
    liquidity: Literal["maker", "taker", ""] = ""
    reason: str = ""


@dataclass
class _Resting:
    req: OrderRequest
    price: float
    qty: float
    filled: float = 0.0
    pos: QueuePos = field(default_factory=QueuePos)
    seq: int = 0

    @property
    def remaining(self) -> float:
        return self.qty - self.filled


@dataclass(order=True)
class _Command:
    arrival_ns: int
    seq: int
    kind: str = field(compare=False)
    req: OrderRequest | None = field(compare=False, default=None)
    coid: str = field(compare=False, default="")
    new_price: float | None = field(compare=False, default=None)
    new_qty: float | None = field(compare=False, default=None)


class PaperExchange:
    def __init__(self, *, queue: QueueModel | None = None, latency: LatencyModel | None = None,
                 maker_fee: float = 0.0001, taker_fee: float = 0.0006):
        self.queue = queue or RiskAverseQueue()
        self.latency = latency or ConstantLatency(0.0, 0.0)
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.levels: dict[Side, dict[float, float]] = {"buy": {}, "sell": {}}
        self.best_bid: float | None = None
        self.best_ask: float | None = None
        self.now_ns = 0
        self.position = 0.0
        self.orders: dict[str, _Resting] = {}
        self._by_price: dict[Side, dict[float, list[_Resting]]] = {"buy": {}, "sell": {}}
        self._pending: list[_Command] = []
        self._seq = itertools.count()
        self.events = 0

    # -- commands from the strategy -------------------------------------------------------------
    def submit(self, req: OrderRequest, now_ns: int) -> None:
        if req.qty <= 0 or req.price <= 0:
            raise ValueError(f"order {req.client_order_id}: price and qty must be > 0")
        self._schedule(now_ns, "new", req=req, coid=req.client_order_id)

    def cancel(self, coid: str, now_ns: int) -> None:
        self._schedule(now_ns, "cancel", coid=coid)

    def modify(self, coid: str, now_ns: int, *, price: float | None = None, qty: float | None = None) -> None:
        self._schedule(now_ns, "modify", coid=coid, new_price=price, new_qty=qty)

    def _schedule(self, now_ns: int, kind: str, **kw: object) -> None:
        arrival = max(now_ns, self.now_ns) + self.latency.entry_ns(now_ns)
        heapq.heappush(self._pending, _Command(arrival, next(self._seq), kind, **kw))  # type: ignore[arg-type]

    # -- market events --------------------------------------------------------------------------
    def on_book(self, ts_ns: int, bid_changes: Iterable[tuple[float, float]],
                ask_changes: Iterable[tuple[float, float]], best_bid: float | None,
                best_ask: float | None) -> list[ExecReport]:
        """Apply one depth update (diffs, quantity 0 deletes) and the resulting best prices."""
        out = self.advance(ts_ns)
        self.events += 1
        for side, changes in (("buy", bid_changes), ("sell", ask_changes)):
            levels = self.levels[side]  # type: ignore[index]
            resting = self._by_price[side]  # type: ignore[index]
            for price, qty in changes:
                prev = levels.get(price, 0.0)
                if qty <= 0.0:
                    levels.pop(price, None)
                else:
                    levels[price] = qty
                orders = resting.get(price)
                if orders:
                    for o in orders:
                        if qty <= 0.0:
                            o.pos.ahead = 0.0          # level deleted: nobody is ahead any more
                            o.pos.traded_since_depth = 0.0
                        else:
                            self.queue.depth(o.pos, prev, qty)
        self.best_bid, self.best_ask = best_bid, best_ask
        out.extend(self._fill_crossed(ts_ns))
        return out

    def on_trade(self, ts_ns: int, price: float, qty: float, aggressor: Side) -> list[ExecReport]:
        """A public trade; ``aggressor="sell"`` means it hit bids (our buys can fill)."""
        out = self.advance(ts_ns)
        self.events += 1
        passive: Side = "buy" if aggressor == "sell" else "sell"
        book = self._by_price[passive]
        if not book:
            return out
        for level_price in list(book):
            through = level_price > price if passive == "buy" else level_price < price
            at = abs(level_price - price) <= _EPS * max(1.0, price)
            if not (through or at):
                continue
            for o in list(book.get(level_price, ())):
                if through:
                    out.append(self._fill(o, o.remaining, ts_ns))
                else:
                    reach = self.queue.trade(o.pos, qty)
                    fill = min(o.remaining, reach)
                    if fill > _EPS:
                        out.append(self._fill(o, fill, ts_ns))
        return out

    def advance(self, ts_ns: int) -> list[ExecReport]:
        """Move market time forward, processing every command that has arrived by then."""
        out: list[ExecReport] = []
        while self._pending and self._pending[0].arrival_ns <= ts_ns:
            cmd = heapq.heappop(self._pending)
            self.now_ns = max(self.now_ns, cmd.arrival_ns)
            out.extend(self._process(cmd))
        self.now_ns = max(self.now_ns, ts_ns)
        return out

    # -- matching -------------------------------------------------------------------------------
    def _report(self, kind: ReportKind, coid: str, ts_ns: int, **kw: object) -> ExecReport:
        return ExecReport(kind, coid, ts_ns, ts_ns + self.latency.response_ns(ts_ns), **kw)  # type: ignore[arg-type]

    def _would_cross(self, side: Side, price: float) -> bool:
        if side == "buy":
            return self.best_ask is not None and price >= self.best_ask
        return self.best_bid is not None and price <= self.best_bid

    def _process(self, cmd: _Command) -> list[ExecReport]:
        t = cmd.arrival_ns
        if cmd.kind == "new":
            assert cmd.req is not None
            return self._accept(cmd.req, t)
        order = self.orders.get(cmd.coid)
        if order is None:
            return [self._report("rejected", cmd.coid, t, reason="unknown_order")]
        if cmd.kind == "cancel":
            self._remove(order)
            return [self._report("cancelled", cmd.coid, t, price=order.price, qty=order.qty,
                                 remaining=order.remaining)]
        # modify: re-check post-only at the new price, then go to the back of the queue
        new_price = cmd.new_price if cmd.new_price is not None else order.price
        new_qty = cmd.new_qty if cmd.new_qty is not None else order.qty
        if new_qty <= order.filled + _EPS:
            return [self._report("rejected", cmd.coid, t, reason="modify_below_filled")]
        if order.req.post_only and self._would_cross(order.req.side, new_price):
            return [self._report("rejected", cmd.coid, t, price=new_price, reason="post_only_would_cross")]
        self._remove(order)
        order.price, order.qty = new_price, new_qty
        order.pos = self.queue.new_order(self.levels[order.req.side].get(new_price, 0.0))
        self.orders[cmd.coid] = order
        self._rest(order)
        return [self._report("modified", cmd.coid, t, price=new_price, qty=new_qty, remaining=order.remaining)]

    def _accept(self, req: OrderRequest, t: int) -> list[ExecReport]:
        if req.client_order_id in self.orders:
            return [self._report("rejected", req.client_order_id, t, reason="duplicate_client_order_id")]
        qty = req.qty
        if req.reduce_only:
            reducing = (req.side == "sell" and self.position > _EPS) or (req.side == "buy" and self.position < -_EPS)
            if not reducing:
                return [self._report("rejected", req.client_order_id, t, price=req.price, qty=qty,
                                     reason="reduce_only_would_increase")]
            qty = min(qty, abs(self.position))
        if self._would_cross(req.side, req.price):
            if req.post_only:
                return [self._report("rejected", req.client_order_id, t, price=req.price, qty=qty,
                                     reason="post_only_would_cross")]
            # a crossing non-post-only limit takes the opposite best as taker
            take = self.best_ask if req.side == "buy" else self.best_bid
            assert take is not None
            o = _Resting(req, req.price, qty, seq=next(self._seq))
            self.orders[req.client_order_id] = o
            acc = self._report("accepted", req.client_order_id, t, price=req.price, qty=qty, remaining=qty)
            return [acc, self._fill(o, qty, t, price=take, liquidity="taker")]
        o = _Resting(req, req.price, qty, seq=next(self._seq))
        o.pos = self.queue.new_order(self.levels[req.side].get(req.price, 0.0))
        self.orders[req.client_order_id] = o
        self._rest(o)
        return [self._report("accepted", req.client_order_id, t, price=req.price, qty=qty, remaining=qty)]

    def _rest(self, o: _Resting) -> None:
        self._by_price[o.req.side].setdefault(o.price, []).append(o)

    def _remove(self, o: _Resting) -> None:
        self.orders.pop(o.req.client_order_id, None)
        level = self._by_price[o.req.side].get(o.price)
        if level is not None:
            if o in level:
                level.remove(o)
            if not level:
                del self._by_price[o.req.side][o.price]

    def _fill(self, o: _Resting, qty: float, t: int, *, price: float | None = None,
              liquidity: Literal["maker", "taker"] = "maker") -> ExecReport:
        px = o.price if price is None else price
        rate = self.maker_fee if liquidity == "maker" else self.taker_fee
        o.filled += qty
        self.position += qty if o.req.side == "buy" else -qty
        remaining = max(0.0, o.remaining)
        if remaining <= _EPS:
            self._remove(o)
        return self._report("fill", o.req.client_order_id, t, price=px, qty=qty, remaining=remaining,
                            fee=qty * px * rate, fee_rate=rate, liquidity=liquidity)

    def _fill_crossed(self, t: int) -> list[ExecReport]:
        out: list[ExecReport] = []
        if self.best_ask is not None and self._by_price["buy"]:
            for price in [p for p in self._by_price["buy"] if p >= self.best_ask]:
                for o in list(self._by_price["buy"].get(price, ())):
                    out.append(self._fill(o, o.remaining, t))
        if self.best_bid is not None and self._by_price["sell"]:
            for price in [p for p in self._by_price["sell"] if p <= self.best_bid]:
                for o in list(self._by_price["sell"].get(price, ())):
                    out.append(self._fill(o, o.remaining, t))
        return out

    # -- introspection (tests, executor) ---------------------------------------------------------
    def queue_ahead(self, coid: str) -> float:
        return self.orders[coid].pos.ahead

    def open_orders(self) -> list[str]:
        return list(self.orders)
