"""The emulated Bybit account: order rules, margin, position and wallet around the paper engine.

Why the paper engine does the matching: the canary's real orders must fill by the
same rules as the paper orders they are compared with, or the canary-vs-paper
comparison measures the emulator rather than the model. So every instrument has
one ``PaperExchange`` (the executor's queue-aware simulator, same queue model
names), fed the same ``BookMsg``/``TradeMsg`` stream the collector publishes, and
the account only adds what a venue does *around* matching:

- request validation with Bybit's codes (precision, minimums, reduce-only rule,
  duplicate ``orderLinkId``, insufficient available balance);
- order state as Bybit reports it (``New`` → ``PartiallyFilled`` → ``Filled``;
  ``Cancelled`` with ``cancelType``/``rejectReason``). A PostOnly order that would
  cross is accepted and then cancelled with ``EC_PostOnlyWillTakeLiquidity``, which
  is what Bybit does on linear contracts (the create call itself succeeds);
- a one-way position per symbol and a unified USDT wallet (cross margin:
  ``available = wallet + uPnL - position IM - order IM``);
- an outbox of private-stream messages (``order``, ``execution``, ``position``,
  ``wallet``) that the server drains to subscribed sockets.

Commands reach the matching engine with no modelled latency: the latency is the
real loopback HTTP round trip. Market time is the last message's receive time,
as in the executor's paper engine. Timestamps shown to clients are wall-clock
milliseconds, as a live venue's are. Everything here is synchronous and I/O-free.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from tidegate.bus.market_messages import MarketMessages
from tidegate.bus.messages import BookMsg, TradeMsg
from tidegate.execution.simulator import ExecReport, OrderRequest, PaperExchange, make_queue_model
from tidegate.market.events import MarketEvent
from tidegate.venue import codes
from tidegate.venue.codes import VenueRejected
from tidegate.venue.instruments import Instrument, num
from tidegate.venue.records import MMR, Execution, PositionState, VenueOrder

Outbox = list[tuple[str, dict[str, Any]]]


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _flag(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


class BybitAccount:
    def __init__(self, instruments: Mapping[str, Instrument], *, balance: float = 10_000.0, leverage: float = 10.0,
                 maker_fee: float = 0.0001, taker_fee: float = 0.0006, queue_model: str = "risk_averse",
                 clock: Callable[[], int] | None = None):
        self.instruments = dict(instruments)
        self.leverage = leverage
        self.maker_fee, self.taker_fee = maker_fee, taker_fee
        self.wallet = balance
        self.clock = clock or _wall_ms
        self.exchanges = {s: PaperExchange(queue=make_queue_model(queue_model), maker_fee=maker_fee,
                                           taker_fee=taker_fee) for s in self.instruments}
        self.positions = {s: PositionState(s) for s in self.instruments}
        self.books: dict[str, BookMsg] = {}
        self.last_trade: dict[str, float] = {}
        self.market_ns: dict[str, int] = dict.fromkeys(self.instruments, 0)
        self.orders: dict[str, VenueOrder] = {}
        self.by_link: dict[str, str] = {}
        self.executions: list[Execution] = []
        self.outbox: Outbox = []
        self._converters: dict[str, MarketMessages] = {}
        self._exec_seq = itertools.count(1)

    # -- lookups -------------------------------------------------------------------------------------
    def instrument(self, symbol: object) -> Instrument:
        inst = self.instruments.get(str(symbol or ""))
        if inst is None:
            raise VenueRejected(codes.PARAMS, "params error: symbol invalid")
        return inst

    def find(self, body: Mapping[str, Any]) -> VenueOrder | None:
        oid = str(body.get("orderId") or "")
        if not oid and body.get("orderLinkId"):
            oid = self.by_link.get(str(body["orderLinkId"]), "")
        o = self.orders.get(oid)
        if o is not None and body.get("symbol") and o.symbol != body["symbol"]:
            return None
        return o

    def mark(self, symbol: str) -> float:
        b = self.books.get(symbol)
        if b is not None and b.bids and b.asks:
            return (b.bids[0][0] + b.asks[0][0]) / 2.0
        return self.last_trade.get(symbol) or self.positions[symbol].avg

    # -- margin ----------------------------------------------------------------------------------------
    def _order_im(self, symbol: str, extra: VenueOrder | None = None) -> float:
        """Initial margin of a symbol's resting orders: the larger of the two sides' *opening* parts.

        An order on the side opposite the position first closes it and needs no margin for that
        part (one-way mode); fee to open is reserved at the taker rate."""
        pos = self.positions[symbol].size
        live = [o for o in self.orders.values() if o.symbol == symbol and not o.final and not o.reduce_only]
        if extra is not None:
            live.append(extra)
        cost = {"Buy": 0.0, "Sell": 0.0}
        for side, against in (("Buy", max(0.0, -pos)), ("Sell", max(0.0, pos))):
            orders = [o for o in live if o.side == side]
            qty = sum(o.leaves if o is not extra else o.qty for o in orders)
            if qty <= 0:
                continue
            value = sum((o.leaves if o is not extra else o.qty) * o.price for o in orders)
            opening = max(0.0, qty - against) / qty
            cost[side] = value * opening * (1.0 / self.leverage + self.taker_fee)
        return max(cost.values())

    def margin(self) -> dict[str, float]:
        upnl = pos_im = pos_mm = order_im = 0.0
        for s, p in self.positions.items():
            if p.size:
                upnl += p.size * (self.mark(s) - p.avg)
                pos_im += abs(p.size) * p.avg / self.leverage
                pos_mm += abs(p.size) * p.avg * MMR
            order_im += self._order_im(s)
        equity = self.wallet + upnl
        return {"wallet": self.wallet, "upnl": upnl, "equity": equity, "position_im": pos_im,
                "position_mm": pos_mm, "order_im": order_im, "available": equity - pos_im - order_im}

    # -- commands ---------------------------------------------------------------------------------------
    def create(self, body: Mapping[str, Any]) -> dict[str, str]:
        if str(body.get("category", "")) != "linear":
            raise VenueRejected(codes.PARAMS, "params error: the emulator serves category linear only")
        inst = self.instrument(body.get("symbol"))
        side = str(body.get("side", ""))
        if side not in ("Buy", "Sell"):
            raise VenueRejected(codes.PARAMS, "params error: side invalid")
        otype = str(body.get("orderType", ""))
        if otype not in ("Limit", "Market"):
            raise VenueRejected(codes.PARAMS, "params error: orderType invalid")
        tif = str(body.get("timeInForce") or ("GTC" if otype == "Limit" else "IOC"))
        if tif not in ("GTC", "PostOnly", "IOC") or (otype == "Market" and tif == "PostOnly"):
            raise VenueRejected(codes.PARAMS, f"params error: timeInForce {tif} is not supported here")
        qty_d = inst.check_qty(str(body.get("qty", "")))
        link = str(body.get("orderLinkId") or "")
        if len(link) > 36:
            raise VenueRejected(codes.PARAMS, "params error: orderLinkId too long")
        if link and link in self.by_link:
            raise VenueRejected(codes.DUPLICATE_LINK_ID, "OrderLinkedID is duplicate")
        symbol = inst.symbol
        if otype == "Limit":
            if body.get("price") in (None, ""):
                raise VenueRejected(codes.PARAMS, "params error: price is required for a limit order")
            price = float(inst.check_price(str(body["price"])))
        else:
            book = self.books.get(symbol)
            top = (book.asks if side == "Buy" else book.bids) if book is not None else []
            if not top:
                raise VenueRejected(codes.PARAMS, "params error: no order book to fill a market order")
            price = top[0][0]
        reduce_only = _flag(body.get("reduceOnly"))
        qty = float(qty_d)
        pos = self.positions[symbol].size
        if reduce_only:
            reducing = (side == "Sell" and pos > 1e-12) or (side == "Buy" and pos < -1e-12)
            if not reducing:
                raise VenueRejected(codes.REDUCE_ONLY, "current position is zero, cannot fix reduce-only order qty")
            qty = min(qty, abs(pos))   # clipped to the position, as Bybit "fixes" the qty
        else:
            inst.check_notional(qty_d, Decimal(repr(price)))
        now = self.clock()
        order = VenueOrder(str(uuid.uuid4()), link, symbol, side, otype, tif, price, qty, reduce_only, now, now)
        if not reduce_only:
            need = self._order_im(symbol, order) - self._order_im(symbol)
            if need > self.margin()["available"] + 1e-9:
                raise VenueRejected(codes.INSUFFICIENT, "ab not enough for new order")
        self.orders[order.order_id] = order
        if link:
            self.by_link[link] = order.order_id
        ex = self.exchanges[symbol]
        ex.submit(OrderRequest(order.order_id, "buy" if side == "Buy" else "sell", price, qty,
                               post_only=tif == "PostOnly", reduce_only=reduce_only), self.market_ns[symbol])
        self._apply(ex.advance(self.market_ns[symbol]))
        if tif == "IOC" and not order.final:
            self._cancel(order, "UNKNOWN")
        return {"orderId": order.order_id, "orderLinkId": link}

    def amend(self, body: Mapping[str, Any]) -> dict[str, str]:
        order = self.find(body)
        if order is None or order.final:
            raise VenueRejected(codes.ORDER_NOT_FOUND, "order not exists or too late to replace")
        inst = self.instruments[order.symbol]
        new_qty = float(inst.check_qty(str(body["qty"]))) if body.get("qty") not in (None, "") else None
        new_price = float(inst.check_price(str(body["price"]))) if body.get("price") not in (None, "") else None
        if new_qty is None and new_price is None:
            raise VenueRejected(codes.PARAMS, "params error: qty or price must be given")
        if new_qty is not None and new_qty <= order.cum_qty + 1e-12:
            raise VenueRejected(codes.MODIFY_BELOW_FILLED,
                                "The number of contracts modified cannot be less than or equal to the filled quantity")
        ex = self.exchanges[order.symbol]
        ex.modify(order.order_id, self.market_ns[order.symbol], price=new_price, qty=new_qty)
        reports = ex.advance(self.market_ns[order.symbol])
        crossed = any(r.kind == "rejected" and r.reason == "post_only_would_cross" for r in reports)
        self._apply([r for r in reports if r.kind != "rejected"])
        if crossed:   # a PostOnly amended onto the other side is cancelled, as a crossing create is
            order.reject_reason = codes.POST_ONLY_WOULD_TAKE
            self._cancel(order, "UNKNOWN")
        order.updated_ms = self.clock()
        return {"orderId": order.order_id, "orderLinkId": order.link_id}

    def cancel(self, body: Mapping[str, Any]) -> dict[str, str]:
        order = self.find(body)
        if order is None or order.final:
            raise VenueRejected(codes.ORDER_NOT_FOUND, "order not exists or too late to cancel")
        self._cancel(order, "CancelByUser")
        return {"orderId": order.order_id, "orderLinkId": order.link_id}

    def _cancel(self, order: VenueOrder, cancel_type: str) -> None:
        ex = self.exchanges[order.symbol]
        ex.cancel(order.order_id, self.market_ns[order.symbol])
        order.cancel_type = cancel_type
        self._apply(ex.advance(self.market_ns[order.symbol]))

    # -- market data ------------------------------------------------------------------------------------
    def on_book(self, msg: BookMsg) -> None:
        if msg.symbol not in self.exchanges:
            return
        self.books[msg.symbol] = msg
        self.market_ns[msg.symbol] = max(self.market_ns[msg.symbol], msg.recv_ns)
        bb = msg.bids[0][0] if msg.bids else None
        ba = msg.asks[0][0] if msg.asks else None
        self._apply(self.exchanges[msg.symbol].on_book(msg.recv_ns, msg.bid_changes, msg.ask_changes, bb, ba))

    def on_trade(self, msg: TradeMsg) -> None:
        if msg.symbol not in self.exchanges:
            return
        self.last_trade[msg.symbol] = msg.price
        self.market_ns[msg.symbol] = max(self.market_ns[msg.symbol], msg.recv_ns)
        self._apply(self.exchanges[msg.symbol].on_trade(msg.recv_ns, msg.price, msg.qty, msg.aggressor))

    def feed(self, ev: MarketEvent, *, symbol: str | None = None) -> None:
        """A replayed market event, converted exactly as the collector converts it (``symbol`` renames it)."""
        name = symbol or ev.symbol
        conv = self._converters.setdefault(name, MarketMessages(name, levels=50))
        msg = conv.convert(ev)
        if isinstance(msg, BookMsg):
            self.on_book(msg)
        elif isinstance(msg, TradeMsg):
            self.on_trade(msg)

    # -- reports from the matching engine -----------------------------------------------------------------
    def _apply(self, reports: Iterable[ExecReport]) -> None:
        touched: set[str] = set()
        for r in reports:
            o = self.orders.get(r.client_order_id)
            if o is None:
                continue
            o.updated_ms = self.clock()
            if r.kind == "accepted":
                o.qty = r.qty
                o.status = "New"
            elif r.kind == "rejected":
                if r.reason == "post_only_would_cross":
                    o.status, o.reject_reason = "Cancelled", codes.POST_ONLY_WOULD_TAKE
                else:
                    o.status, o.reject_reason = "Rejected", "EC_Others"
            elif r.kind == "cancelled":
                o.status = "Cancelled"
            elif r.kind == "modified":
                o.price, o.qty = r.price, r.qty
            elif r.kind == "fill":
                self._fill(o, r)
                touched.add(o.symbol)
                continue
            self.outbox.append(("order", self._order_msg(o)))
        for symbol in touched:
            self._after_position_change(symbol)

    def _fill(self, o: VenueOrder, r: ExecReport) -> None:
        inst = self.instruments[o.symbol]
        pos = self.positions[o.symbol]
        now = self.clock()
        before = pos.size
        signed = r.qty if o.side == "Buy" else -r.qty
        realised = pos.apply_fill(signed, r.price, r.fee, now)
        self.wallet += realised - r.fee
        o.cum_qty += r.qty
        o.cum_value += r.qty * r.price
        o.cum_fee += r.fee
        o.status = "Filled" if r.remaining <= 1e-12 else "PartiallyFilled"
        closed = min(abs(signed), abs(before)) if before and (before > 0) != (signed > 0) else 0.0
        ex = Execution(str(uuid.uuid4()), o, r.price, r.qty, r.fee, r.fee_rate, r.liquidity == "maker",
                       o.leaves, closed, self.mark(o.symbol), now, next(self._exec_seq))
        self.executions.append(ex)
        self.outbox.append(("execution", ex.v5(inst)))
        self.outbox.append(("order", self._order_msg(o)))

    def _after_position_change(self, symbol: str) -> None:
        """Cancel reduce-only orders that can no longer reduce; publish position and wallet."""
        pos = self.positions[symbol].size
        for o in list(self.orders.values()):
            if o.symbol == symbol and o.reduce_only and not o.final:
                still = (o.side == "Sell" and pos > 1e-12) or (o.side == "Buy" and pos < -1e-12)
                if not still:
                    self._cancel(o, "CancelByReduceOnly")
        self.outbox.append(("position", self.position_v5(symbol)))
        self.outbox.append(("wallet", self.wallet_v5()))

    # -- views -----------------------------------------------------------------------------------------------
    def _order_msg(self, o: VenueOrder) -> dict[str, Any]:
        return o.v5(self.instruments[o.symbol])

    def order_v5(self, o: VenueOrder) -> dict[str, Any]:
        return self._order_msg(o)

    def position_v5(self, symbol: str) -> dict[str, Any]:
        return self.positions[symbol].v5(self.instruments[symbol], mark=self.mark(symbol), leverage=self.leverage,
                                         wallet=self.wallet)

    def wallet_v5(self) -> dict[str, Any]:
        m = self.margin()
        coin = {
            "coin": "USDT", "equity": num(m["equity"]), "usdValue": num(m["equity"]),
            "walletBalance": num(m["wallet"]), "locked": "0", "borrowAmount": "0", "availableToWithdraw": "",
            "availableToBorrow": "", "accruedInterest": "0", "totalOrderIM": num(m["order_im"]),
            "totalPositionIM": num(m["position_im"]), "totalPositionMM": num(m["position_mm"]),
            "unrealisedPnl": num(m["upnl"]),
            "cumRealisedPnl": num(sum(p.cum_realised for p in self.positions.values())), "bonus": "0",
            "marginCollateral": True, "collateralSwitch": True, "spotHedgingQty": "0",
        }
        im_rate = (m["position_im"] + m["order_im"]) / m["equity"] if m["equity"] > 0 else 0.0
        mm_rate = m["position_mm"] / m["equity"] if m["equity"] > 0 else 0.0
        return {
            "accountType": "UNIFIED", "accountLTV": "0", "accountIMRate": num(im_rate), "accountMMRate": num(mm_rate),
            "totalEquity": num(m["equity"]), "totalWalletBalance": num(m["wallet"]),
            "totalMarginBalance": num(m["equity"]), "totalAvailableBalance": num(max(0.0, m["available"])),
            "totalPerpUPL": num(m["upnl"]), "totalInitialMargin": num(m["position_im"] + m["order_im"]),
            "totalMaintenanceMargin": num(m["position_mm"]), "coin": [coin],
        }

    def stats(self) -> dict[str, Any]:
        """The emulator's own counts, independent of any client (acceptance compares against them)."""
        return {"executions": len(self.executions), "orders": len(self.orders),
                "open_orders": sum(1 for o in self.orders.values() if not o.final),
                "positions": {s: p.size for s, p in self.positions.items() if p.size},
                "wallet_balance": self.wallet}
