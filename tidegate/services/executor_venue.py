"""The executor's real-venue I/O (``EXCHANGE_MODE=real``): ccxt calls, the private stream, catch-up, restart.

The engine decides; this module only talks to the venue (async ``ccxt.pro.bybit``, never a
thread or a blocking call on the event loop) and feeds what the venue says back into the engine
as the same reports the paper exchange produces (tidegate.execution.real maps them):

- ``execute(decision)``: publish it, then place its new real orders (``orderLinkId`` = client
  order id; flags from ``exchange.post_only``/``maker_only``/``reduce_only``) and send its cancels
  (TTL, ``tau_hold``). A refused order becomes a *rejected* report (``orders_rejected_total``).
- the private stream: ``watch_orders`` (accepted, cancelled, PostOnly cancelled for crossing →
  rejected ``post_only_would_cross``) and ``watch_my_trades`` (fills, de-duplicated by the
  venue's execution id, which also names the fill: ``<client order id>-<exec id>``). A cancel
  reported before the trades it includes waits for them, so an exit is re-quoted for the right
  remainder.
- catch-up (REST) after the stream comes back and every ``POLL_S``: ``fetch_my_trades`` (page by
  page through ``nextPageCursor`` back to an execution seen before, so an outage longer than one
  page loses nothing), ``fetch_open_orders`` and the order history fill what the stream missed; balance and positions
  are read on the same beat for sizing and the near-liquidation guard.
- restart (``reconcile``): open orders of ours (by ``orderLinkId``) are adopted, recent
  executions re-published idempotently (same fill ids), and a position no resting exit covers
  gets a reduce-only exit at the touch. A redelivered signal's order refused as a duplicate
  (``110072``) means "already placed": its state is read back, never placed again.
- rate limit (``10006``): exponential backoff and retry; a lost venue (``NetworkError``): the
  configured fail-safe (``engine.trip_fail_safe``: new signals to paper for
  ``executor.fail_safe_cooldown``), then catch-up once it answers again.

Keys never reach a log: every venue text passes ``redact`` (Bybit's sign error quotes the API key).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from typing import Any

from tidegate.bus.dedupe import RecentIds
from tidegate.bus.messages import FillMsg, OrderMsg
from tidegate.execution.engine import Decision, ExecutionEngine
from tidegate.execution.real import (
    backoff_s,
    classify_error,
    free_usdt,
    link_id,
    order_report,
    parse_link_id,
    plan_reconcile,
    position_liq,
    redact,
    ret_code,
    trade_report,
    uncovered,
    unfinished_real,
)
from tidegate.execution.simulator import ExecReport
from tidegate.execution.venue import MarketRules, VenueError
from tidegate.services.runtime import ServiceContext

POLL_S = 2.0          # catch-up, balance and positions
TRADE_PAGE = 100      # Bybit's most executions a page
TRADE_PAGES = 20      # pages one catch-up may read back (2000 executions)
RATE_LIMIT_TRIES = 8
RESTART_LOOKBACK_S = 900.0  # how far back a restart reads its own announced orders
UNPLACED_AFTER_S = 5.0  # an order whose create failed on the network and is still unknown is rejected


async def trades_back_to(fetch: Callable[..., Awaitable[list[Mapping[str, Any]]]], csym: str,
                         known: Container[str], *, page: int = TRADE_PAGE,
                         pages: int = TRADE_PAGES) -> tuple[list[Mapping[str, Any]], bool]:
    """The venue's executions, newest first, page by page back to one in ``known``.

    ``fetch`` is ccxt's ``fetch_my_trades(symbol, since, limit, params)``. A page holds at most
    100; after an outage with more fills than that, one page would leave the older ones
    unread and their fills would never reach JetStream. In steady state the first page
    already overlaps what the stream delivered: one call, as before. Returns the executions
    and whether the walk ended by itself (False: ``pages`` pages read and still no overlap).
    """
    out: list[Mapping[str, Any]] = []
    params: dict[str, str] = {}
    for _ in range(pages):
        got = await fetch(csym, None, page, params)
        out += got
        cursor = next((str(c) for t in got if (c := (t.get("info") or {}).get("nextPageCursor"))), "")
        if len(got) < page or not cursor or any(str(t.get("id")) in known for t in got):
            return out, True
        params = {"cursor": cursor}
    return out, False


class VenueLink:
    def __init__(self, ctx: ServiceContext, engine: ExecutionEngine, ex: Any, rules: Mapping[str, MarketRules],
                 lock: asyncio.Lock, publish: Callable[[Decision], Awaitable[None]],
                 route_of: Callable[[str], str]):
        self.ctx, self.engine, self.ex, self.rules, self.lock = ctx, engine, ex, rules, lock
        self.publish, self.route_of = publish, route_of
        self.secrets = [str(ex.apiKey or ""), str(ex.secret or "")]
        self.csym = {s: r.ccxt_symbol for s, r in rules.items()}
        self.symbol_of = {r.ccxt_symbol: s for s, r in rules.items()}
        self.seen_exec = RecentIds(capacity=200_000)
        self.listed_exec = RecentIds(capacity=200_000)   # every execution id the venue has shown us
        self.accepted: set[str] = set()
        self.pending_final: dict[str, Mapping[str, Any]] = {}
        self.unsure: dict[str, float] = {}      # coid -> wall time its create failed on the network
        self.down = False
        self.rate_limited = 0
        self.gaps: dict[str, tuple[str, float]] = {}
        self.recancel: dict[str, OrderMsg] = {}  # cancels lost with the venue (TTL / tau_hold already fired)
        self.tasks: list[asyncio.Task[None]] = []

    # -- helpers -----------------------------------------------------------------------------------
    def _say(self, level: str, text: str) -> None:
        getattr(self.ctx.log, level)("venue: %s", redact(text, self.secrets))

    async def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """One ccxt call; on the venue's rate limit (10006) back off exponentially and retry."""
        for attempt in range(RATE_LIMIT_TRIES):
            try:
                return await fn(*args)
            except Exception as exc:
                if classify_error(exc) != "rate_limit" or attempt == RATE_LIMIT_TRIES - 1:
                    raise
                self.rate_limited += 1
                self.ctx.metrics["venue_rate_limited_total"].inc()
                wait = backoff_s(attempt)
                self._say("warning", f"rate limited (10006), retry {attempt + 1} in {wait:.1f}s")
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def venue_lost(self, exc: BaseException) -> None:
        """First network failure of an outage: the fail-safe (new signals to paper), once."""
        if self.down:
            return
        self.down = True
        self._say("warning", f"venue unreachable ({type(exc).__name__}: {exc}); fail-safe to paper")
        await self.publish(self.engine.trip_fail_safe("venue_unavailable", time.monotonic()))

    async def recovered(self) -> None:
        if not self.down:
            return
        self.down = False
        self._say("info", "venue reachable again; catching up over REST")
        await self.catch_up()
        pending, self.recancel = self.recancel, {}
        async with self.lock:
            for coid, o in pending.items():
                if self.engine.is_live(coid):
                    await self.cancel(o)

    # -- start -------------------------------------------------------------------------------------
    async def check_keys(self) -> None:
        """One authenticated read before anything trades: a wrong key or secret is one clear error."""
        try:
            bal = await self.call(self.ex.fetch_balance)
        except Exception as exc:
            kind = classify_error(exc)
            if kind == "auth":
                raise VenueError("the venue refused the API key or secret (AuthenticationError); "
                                 "check BYBIT_API_KEY / BYBIT_API_SECRET; nothing was traded") from None
            raise VenueError(f"venue not reachable at start ({type(exc).__name__}: "
                             f"{redact(str(exc), self.secrets)[:200]})") from None
        self.engine.venue_free_usd = free_usdt(bal)

    async def reconcile(self) -> dict[str, int]:
        """After a (re)start: adopt our open orders, re-publish recent executions, cover positions."""
        open_orders: list[Mapping[str, Any]] = []
        trades: list[Mapping[str, Any]] = []
        for csym in self.csym.values():
            open_orders += await self.call(self.ex.fetch_open_orders, csym, None, 50)
            trades += await self.call(self.ex.fetch_my_trades, csym, None, 100)
        positions = await self.call(self.ex.fetch_positions, list(self.csym.values()))
        live = {o.client_order_id for o in self.engine.live_real()}
        plan = plan_reconcile(open_orders, positions, live, symbol_of=self.symbol_of,
                              lot_step={s: r.lot_step for s, r in self.rules.items()})
        routes: list[str] = []
        for o in plan.adopt:
            coid = link_id(o)
            signal_id, _kind, _n = parse_link_id(coid)  # type: ignore[misc]
            sym = self.symbol_of[str(o["symbol"])]
            route = self._route(signal_id)
            routes.append(route)
            self.engine.adopt(OrderMsg(
                client_order_id=coid, signal_id=signal_id, symbol=sym, route=route, venue="real",  # type: ignore[arg-type]
                side=o["side"], price=float(o["price"]), qty=float(o["amount"]), status="accepted",
                reduce_only=bool(o.get("reduceOnly")), post_only=True, ts_ns=self.engine.market_now(sym)),
                filled_qty=float(o.get("filled") or 0.0))
            self.accepted.add(coid)
        republished = 0
        for t in trades:
            self.listed_exec.add(str(t["id"]))
            msg = self._fill_from_trade(t)
            if msg is not None and self.seen_exec.add(str(t["id"])):
                await self.ctx.bus.publish_durable(self.ctx.subjects.fills(msg.symbol), msg,  # type: ignore[union-attr]
                                                   msg_id=msg.fill_id)
                republished += 1
        ended = 0
        known = {link_id(o) for o in open_orders}
        for csym in self.csym.values():
            for o in await self.call(self.ex.fetch_canceled_and_closed_orders, csym, None, 50):
                known.add(link_id(o))
                ended += await self._publish_ended(o)
        unsent = await self._settle_unsent(known)
        covered = 0
        for sym, (side, qty) in plan.cover.items():
            sid = f"{sym}-{time.time_ns()}-rc"
            async with self.lock:
                await self.execute(self.engine.cover_position(sym, routes[0] if routes else "canary", side, qty, sid))
            covered += 1
        self.engine.venue_liq_price = position_liq(positions, self.symbol_of)
        out = {"adopted": len(plan.adopt), "republished_fills": republished, "republished_order_events": ended,
               "covered_positions": covered, "never_placed": unsent,
               "foreign_orders": plan.foreign}
        self._say("info", "reconciled: " + ", ".join(f"{k}={v}" for k, v in out.items()))
        return out

    async def _publish_ended(self, o: Mapping[str, Any]) -> int:
        msgs = self._ended_order_events(o)
        for msg in msgs:
            await self.ctx.bus.publish_durable(self.ctx.subjects.orders(msg.symbol), msg,  # type: ignore[union-attr]
                                               msg_id=f"{msg.client_order_id}:{msg.status}")
        return len(msgs)

    async def _settle_unsent(self, known: set[str]) -> int:
        """Real orders the previous process announced and the venue never saw: each gets its end.

        ``new`` goes out before the create call (risk never hears of a fill before its order),
        so a process killed between the two left risk an order that would never end. The
        ORDERS stream says what was announced; the venue, asked by ``orderLinkId``, says whether
        it arrived. One it has never seen is published ``rejected`` (``venue_not_placed``); one
        that ended before the history page gets its end events; one still open was adopted."""
        bus = self.ctx.bus
        if bus is None:
            return 0
        raw = await bus.read_recent(self.ctx.subjects.stream("ORDERS"), self.ctx.subjects.orders(),
                                    RESTART_LOOKBACK_S)
        events = []
        for b in raw:
            with contextlib.suppress(ValueError):
                events.append(OrderMsg.model_validate_json(b))
        unsent = 0
        for coid, o in unfinished_real(events).items():
            if coid in known or o.symbol not in self.rules or self.engine.is_live(coid):
                continue
            found = await self.call(self.ex.fetch_open_orders, self.rules[o.symbol].ccxt_symbol, None, 1,
                                    {"orderLinkId": coid})
            if found:
                if found[0].get("status") != "open":
                    await self._publish_ended(found[0])
                continue
            msg = o.model_copy(update={"status": "rejected", "reason": "venue_not_placed",
                                       "ts_ns": self.engine.market_now(o.symbol)})
            await bus.publish_durable(self.ctx.subjects.orders(o.symbol), msg, msg_id=f"{coid}:rejected")
            self._say("info", f"{coid} was announced but never reached the venue: published rejected")
            unsent += 1
        return unsent

    def _route(self, signal_id: str) -> str:
        r = self.route_of(signal_id)
        return r if r in ("canary", "full") else "canary"

    def _ended_order_events(self, o: Mapping[str, Any]) -> list[OrderMsg]:
        """An order of ours that ended (possibly while we were down) as its accepted + end events.

        Published with the usual ids (``<coid>:<status>``): JetStream and risk drop what the
        previous process already sent; what it never sent completes risk's view of the order."""
        coid = link_id(o)
        parsed = parse_link_id(coid)
        sym = self.symbol_of.get(str(o.get("symbol")), "")
        rep = order_report(o, 0)
        end = "filled" if o.get("status") == "closed" else ("rejected" if rep is not None and rep.kind == "rejected"
                                                             else "cancelled" if o.get("status") == "canceled" else "")
        if parsed is None or not sym or not end or float(o.get("amount") or 0) <= 0 or float(o.get("price") or 0) <= 0:
            return []
        now = self.engine.market_now(sym)
        base = OrderMsg(client_order_id=coid, signal_id=parsed[0], symbol=sym, route=self._route(parsed[0]),  # type: ignore[arg-type]
                        venue="real", side=o["side"], price=float(o["price"]), qty=float(o["amount"]),
                        status="accepted", reduce_only=parsed[1] == "x", post_only=True, ts_ns=now)
        if end == "rejected":
            return [base.model_copy(update={"status": "rejected", "reason": rep.reason if rep else ""})]
        return [base, base.model_copy(update={"status": end})]

    def _fill_from_trade(self, t: Mapping[str, Any]) -> FillMsg | None:
        """A venue execution of one of our orders as a FillMsg (restart: published, not re-applied)."""
        coid = link_id(t)
        parsed = parse_link_id(coid)
        sym = self.symbol_of.get(str(t.get("symbol")), "")
        if parsed is None or not sym:
            return None
        r = self.rules[sym]
        got = trade_report(t, self.engine.market_now(sym), ordered_qty=float(t.get("amount") or 0.0),
                           filled_before=0.0, maker_fee=r.maker_fee, taker_fee=r.taker_fee)
        if got is None:
            return None
        exec_id, rep = got
        return FillMsg(fill_id=f"{coid}-{exec_id}", client_order_id=coid, signal_id=parsed[0], symbol=sym,
                       route=self._route(parsed[0]), venue="real", side=t["side"], price=rep.price,  # type: ignore[arg-type]
                       qty=rep.qty, fee=rep.fee, fee_rate=rep.fee_rate, liquidity=rep.liquidity or "maker",  # type: ignore[arg-type]
                       reduce_only=parsed[1] == "x", ts_ns=rep.ts_ns)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._watch("orders", self.ex.watch_orders, self.on_orders)),
                      asyncio.create_task(self._watch("trades", self.ex.watch_my_trades, self.on_trades)),
                      asyncio.create_task(self._poll())]

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.ex.close()

    # -- decisions out -----------------------------------------------------------------------------
    async def execute(self, d: Decision) -> None:
        """Publish a decision, then carry out its venue actions (call under the engine lock)."""
        await self.publish(d)
        for o in d.orders:
            if o.venue == "real" and o.status == "new":
                await self.place(o)
        for o in d.cancels:
            await self.cancel(o)

    async def place(self, o: OrderMsg) -> None:
        flags = self.ctx.cfg.exchange
        r = self.rules[o.symbol]
        params: dict[str, Any] = {"orderLinkId": o.client_order_id,
                                  "timeInForce": "PostOnly" if o.post_only and (flags.post_only or flags.maker_only)
                                  else "GTC"}
        if o.reduce_only and flags.reduce_only:
            params["reduceOnly"] = True
        try:
            amount = float(self.ex.amount_to_precision(r.ccxt_symbol, o.qty))
            price = float(self.ex.price_to_precision(r.ccxt_symbol, o.price))
            await self.call(self.ex.create_order, r.ccxt_symbol, "limit", o.side, amount, price, params)
        except Exception as exc:
            kind = classify_error(exc)
            if kind == "duplicate":      # placed before (a redelivered signal after a restart)
                self._say("info", f"{o.client_order_id} already placed (110072); reading its state back")
                self.unsure[o.client_order_id] = time.monotonic()
                return
            if kind == "network":
                self.unsure[o.client_order_id] = time.monotonic()
                await self.venue_lost(exc)
                return
            self._say("warning", f"{o.client_order_id} refused ({kind}: {str(exc)[:160]})")
            now = self.engine.market_now(o.symbol)
            code = ret_code(exc)
            rep = ExecReport("rejected", o.client_order_id, now, now,
                             reason=f"venue_{kind}_{code}" if code else f"venue_{kind}")
            await self.execute(self.engine.venue_reports(o.symbol, [rep]))

    async def cancel(self, o: OrderMsg) -> None:
        try:
            await self.call(self.ex.cancel_order, None, self.rules[o.symbol].ccxt_symbol,
                            {"orderLinkId": o.client_order_id})
        except Exception as exc:
            kind = classify_error(exc)
            if kind == "network":
                self.recancel[o.client_order_id] = o     # sent again once the venue answers
                await self.venue_lost(exc)
            elif kind != "not_found":    # not found: it finished meanwhile; the stream says how
                self._say("warning", f"cancel {o.client_order_id} failed ({kind}: {exc})")

    # -- the venue's word in -----------------------------------------------------------------------
    async def on_orders(self, orders: Sequence[Mapping[str, Any]]) -> None:
        async with self.lock:
            for o in orders:
                await self._order(o)

    async def _order(self, o: Mapping[str, Any]) -> None:
        sym = self.symbol_of.get(str(o.get("symbol")), "")
        coid = link_id(o)
        if not sym or not self.engine.is_live(coid):
            return
        self.unsure.pop(coid, None)
        now = self.engine.market_now(sym)
        rep = order_report(o, now)
        if rep is not None and rep.kind == "rejected":
            await self.execute(self.engine.venue_reports(sym, [rep]))
            return
        await self._accepted(sym, coid, float(o.get("amount") or 0.0))
        if rep is None or rep.kind == "accepted":
            return
        if rep.kind == "cancelled" and float(o.get("filled") or 0.0) > self.engine.filled_qty(coid) + 1e-12:
            self.pending_final[coid] = o       # its trades have not all arrived: apply after them
            return
        await self.execute(self.engine.venue_reports(sym, [rep]))

    async def _accepted(self, sym: str, coid: str, qty: float) -> None:
        """The order is on the venue (its first update may already be a fill): "accepted", once."""
        if coid in self.accepted or qty <= 0:
            return
        self.accepted.add(coid)
        now = self.engine.market_now(sym)
        await self.execute(self.engine.venue_reports(sym, [ExecReport("accepted", coid, now, now, qty=qty,
                                                                       remaining=qty)]))

    async def recent_trades(self, csym: str) -> list[Mapping[str, Any]]:
        trades, complete = await trades_back_to(lambda *a: self.call(self.ex.fetch_my_trades, *a), csym,
                                                self.listed_exec)
        if not complete:
            self._say("warning", f"catch-up stopped after {TRADE_PAGES} pages of executions on {csym}")
        return trades

    async def on_trades(self, trades: Sequence[Mapping[str, Any]]) -> None:
        async with self.lock:
            for t in trades:
                self.listed_exec.add(str(t.get("id")))
                sym = self.symbol_of.get(str(t.get("symbol")), "")
                coid = link_id(t)
                base = self.engine.live_order(coid)
                if not sym or base is None or base.venue != "real" or str(t.get("id")) in self.seen_exec:
                    continue
                r = self.rules[sym]
                got = trade_report(t, self.engine.market_now(sym), ordered_qty=base.qty,
                                   filled_before=self.engine.filled_qty(coid), maker_fee=r.maker_fee,
                                   taker_fee=r.taker_fee)
                if got is None:
                    continue
                exec_id, rep = got
                self.seen_exec.add(exec_id)
                self.unsure.pop(coid, None)
                await self._accepted(sym, coid, base.qty)
                await self.execute(self.engine.venue_reports(sym, [rep], {0: exec_id}))
                waiting = self.pending_final.get(coid)
                if waiting is not None and (not self.engine.is_live(coid) or
                                            self.engine.filled_qty(coid) + 1e-12 >= float(waiting.get("filled") or 0)):
                    del self.pending_final[coid]
                    await self._order(waiting)

    async def catch_up(self) -> None:
        """REST for what the stream may have missed: trades first (a cancel waits for its fills)."""
        for sym, csym in self.csym.items():
            await self.on_trades(await self.recent_trades(csym))
            open_orders = await self.call(self.ex.fetch_open_orders, csym, None, 50)
            await self.on_orders(open_orders)
            open_ids = {link_id(o) for o in open_orders}
            missing = [o.client_order_id for o in self.engine.live_real()
                       if o.symbol == sym and o.client_order_id not in open_ids]
            if not missing:
                continue
            history = await self.call(self.ex.fetch_canceled_and_closed_orders, csym, None, 50)
            by_id = {link_id(h): h for h in history}
            await self.on_orders([by_id[c] for c in missing if c in by_id])
            now_wall = time.monotonic()
            async with self.lock:
                for coid in missing:
                    failed_at = self.unsure.get(coid)
                    if coid in by_id or failed_at is None or now_wall - failed_at < UNPLACED_AFTER_S:
                        continue
                    del self.unsure[coid]    # its create never reached the venue
                    now = self.engine.market_now(sym)
                    await self.execute(self.engine.venue_reports(
                        sym, [ExecReport("rejected", coid, now, now, reason="venue_unavailable")]))

    async def _read_account(self) -> None:
        bal = await self.call(self.ex.fetch_balance)
        free = free_usdt(bal)
        if free is not None:
            self.engine.venue_free_usd = free
        positions = await self.call(self.ex.fetch_positions, list(self.csym.values()))
        self.engine.venue_liq_price = position_liq(positions, self.symbol_of)
        await self._cover(positions)

    async def _cover(self, positions: Sequence[Mapping[str, Any]]) -> None:
        """A venue position that the engine's resting exits leave uncovered on two polls in a row
        (one poll could race a fill the stream has not delivered yet) gets an exit at the touch."""
        async with self.lock:
            covering: dict[tuple[str, str], float] = {}
            for o in self.engine.live_real():
                if o.reduce_only:
                    key = (o.symbol, o.side)
                    covering[key] = covering.get(key, 0.0) + o.qty - self.engine.filled_qty(o.client_order_id)
            gaps = uncovered(positions, covering, symbol_of=self.symbol_of,
                             lot_step={s: r.lot_step for s, r in self.rules.items()})
            for sym, (side, qty) in gaps.items():
                if self.gaps.get(sym) == (side, qty):
                    self._say("info", f"{sym} position {qty:g} not covered by a resting exit; exit at the touch")
                    route = "full" if any(o.route == "full" for o in self.engine.live_real()) else "canary"
                    await self.execute(self.engine.cover_position(sym, route, side, qty,
                                                                  f"{sym}-{time.time_ns()}-rc"))
                    gaps.pop(sym)
                    break
            self.gaps = gaps

    async def _poll(self) -> None:
        while not self.ctx.stop.is_set():
            await asyncio.sleep(POLL_S)
            try:
                await self._read_account()
                if self.down:
                    await self.recovered()
                else:
                    await self.catch_up()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if classify_error(exc) == "network":
                    await self.venue_lost(exc)
                else:
                    self._say("warning", f"catch-up failed ({type(exc).__name__}: {exc})")

    async def _watch(self, name: str, fn: Callable[[], Awaitable[Any]],
                     handler: Callable[[Sequence[Mapping[str, Any]]], Awaitable[None]]) -> None:
        failures = 0
        while not self.ctx.stop.is_set():
            try:
                items = await fn()
                failures = 0
                if self.down:
                    await self.recovered()
                await handler(items)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if classify_error(exc) == "network":
                    await self.venue_lost(exc)
                elif failures == 0:
                    self._say("warning", f"{name} stream failed ({type(exc).__name__}: {exc})")
                await asyncio.sleep(backoff_s(failures, base=0.25, cap=3.0))
                failures += 1
