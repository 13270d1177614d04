"""The Bybit v5 emulator's HTTP and WebSocket server (aiohttp), on loopback.

Why a server and not a patched client: the project's code must use ccxt exactly as
it would against Bybit, so the only thing that differs is where ccxt's URLs point
(``tidegate.venue.client``). Everything ccxt does on the wire — signing, header
names, query encoding, JSON parsing, ``retCode`` to exception mapping, the
WebSocket ``auth`` and ``subscribe`` ops — runs for real against this server.

Layout: ``BybitAccount`` (account.py) holds the state and rules and is I/O-free;
this module authenticates, rate-limits, routes, wraps results in Bybit's envelope
(``retCode``/``retMsg``/``result``/``retExtInfo``/``time``) and drains the
account's outbox to private-stream subscribers after every request and every
market update. The market is fed with ``feed_book``/``feed_trade`` (the
collector's ``BookMsg``/``TradeMsg``), ``feed`` (a typed market event), ``replay``
(a whole ``MarketFrame``), or over HTTP at ``/_emulator/book`` and
``/_emulator/trade`` for a process that is not this one. ``/_emulator/stats``
gives the emulator's own counts (executions, orders), independent of any client.

Refused requests are logged by code only; keys and secrets never are.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from tidegate.bus.messages import BookMsg, TradeMsg
from tidegate.market.events import MarketEvent
from tidegate.market.frame import MarketFrame, iter_events
from tidegate.venue import codes, queries
from tidegate.venue.account import BybitAccount
from tidegate.venue.auth import RateLimiter, check_rest, check_ws
from tidegate.venue.codes import VenueRejected

log = logging.getLogger("tidegate.venue")
PRIVATE_TOPICS = frozenset({"order", "execution", "position", "wallet"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(eq=False)
class _Session:
    ws: web.WebSocketResponse
    conn_id: str
    key: str | None = None
    topics: set[str] = field(default_factory=set)


class BybitEmulator:
    """One emulated venue: an account, the API keys it accepts, and the aiohttp app serving them."""

    def __init__(self, account: BybitAccount, *, keys: Mapping[str, str], rate_limits: Mapping[str, int] | None = None,
                 clock: Callable[[], int] | None = None):
        self.account = account
        self.keys = dict(keys)
        self.limiter = RateLimiter()
        if rate_limits:
            self.limiter.limits.update(rate_limits)
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.sessions: set[_Session] = set()
        self.public_sessions: set[_Session] = set()
        self.refused: dict[int, int] = {}      # retCode -> count, for tests and /_emulator/stats
        self._runner: web.AppRunner | None = None
        self.host, self.port = "127.0.0.1", 0
        self.app = self._build_app()

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on host:port (0: a free port). After ``stop`` it can start again: the account
        (orders, executions, position, wallet) survives, as a venue's does across a client's outage."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already listening")
        self.app = self._build_app()   # an aiohttp app cannot be set up twice
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        self.host, self.port = host, int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def stop(self) -> None:
        for s in list(self.sessions | self.public_sessions):
            await s.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # -- market feed ----------------------------------------------------------------------------------
    async def feed_book(self, msg: BookMsg) -> None:
        self.account.on_book(msg)
        await self.flush()
        await self._publish_book(msg)

    async def feed_trade(self, msg: TradeMsg) -> None:
        self.account.on_trade(msg)
        await self.flush()

    async def feed(self, ev: MarketEvent, *, symbol: str | None = None) -> None:
        self.account.feed(ev, symbol=symbol)
        await self.flush()

    async def replay(self, frame: MarketFrame, *, symbol: str, speed: float = 1.0,
                     stop: asyncio.Event | None = None) -> int:
        """Feed a frame in arrival order, paced at ``speed`` × real time (0: as fast as possible)."""
        t0_wall = time.monotonic()
        t0: int | None = None
        n = 0
        for ev in iter_events(frame):
            if stop is not None and stop.is_set():
                break
            t0 = ev.local_ns if t0 is None else t0
            if speed > 0:
                delay = t0_wall + (ev.local_ns - t0) / 1e9 / speed - time.monotonic()
                if delay > 0.0005:
                    await asyncio.sleep(delay)
            elif n % 256 == 0:
                await asyncio.sleep(0)
            await self.feed(ev, symbol=symbol)
            n += 1
        return n

    async def flush(self) -> None:
        """Send the account's pending private-stream messages to every authenticated subscriber."""
        pending, self.account.outbox = self.account.outbox, []
        for topic, data in pending:
            text = json.dumps({"id": uuid.uuid4().hex, "topic": topic, "creationTime": self.clock(), "data": [data]})
            for s in list(self.sessions):
                if s.key is not None and (topic in s.topics or f"{topic}.linear" in s.topics) and not s.ws.closed:
                    await s.ws.send_str(text)

    async def _publish_book(self, msg: BookMsg) -> None:
        inst = self.account.instruments.get(msg.symbol)
        if inst is None or not self.public_sessions:
            return
        for s in list(self.public_sessions):
            for topic in s.topics:
                parts = topic.split(".")
                if len(parts) == 3 and parts[0] == "orderbook" and parts[2] == msg.symbol and not s.ws.closed:
                    depth = int(parts[1]) if parts[1].isdigit() else 50
                    data = {"s": msg.symbol, "b": [[inst.px(p), inst.qty(q)] for p, q in msg.bids[:depth]],
                            "a": [[inst.px(p), inst.qty(q)] for p, q in msg.asks[:depth]], "u": msg.seq,
                            "seq": msg.seq}
                    await s.ws.send_str(json.dumps({"topic": topic, "type": "snapshot", "ts": self.clock(),
                                                    "data": data, "cts": self.clock()}))

    # -- envelope -------------------------------------------------------------------------------------
    def _reply(self, result: Any = None, *, code: int = codes.OK, msg: str = "OK",
               headers: Mapping[str, str] | None = None, status: int = 200) -> web.Response:
        body = {"retCode": code, "retMsg": msg, "result": result if result is not None else {}, "retExtInfo": {},
                "time": self.clock()}
        if code != codes.OK:
            self.refused[code] = self.refused.get(code, 0) + 1
            log.info("refused with retCode %s", code)
        return web.json_response(body, headers=dict(headers or {}), status=status)

    def _public(self, fn: Callable[[Mapping[str, str]], Any]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            try:
                return self._reply(fn(request.query))
            except VenueRejected as exc:
                return self._reply(code=exc.code, msg=exc.msg)
        return handler

    def _private(self, fn: Callable[[Mapping[str, Any]], Any]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            now = self.clock()
            payload = await request.text() if request.method == "POST" else request.rel_url.raw_query_string
            try:
                key = check_rest(request.headers, payload, self.keys, now)
            except VenueRejected as exc:
                return self._reply(code=exc.code, msg=exc.msg)
            allowed, headers = self.limiter.take(key, request.path, now)
            if not allowed:
                return self._reply(code=codes.RATE_LIMIT, msg="Too many visits!", headers=headers)
            try:
                if request.method == "POST":
                    params = json.loads(payload or "{}")
                    if not isinstance(params, dict):
                        raise VenueRejected(codes.PARAMS, "params error: the body must be a JSON object")
                else:
                    params = dict(request.query)
                result = fn(params)
            except json.JSONDecodeError:
                return self._reply(code=codes.PARAMS, msg="params error: the body is not JSON", headers=headers)
            except VenueRejected as exc:
                await self.flush()
                return self._reply(code=exc.code, msg=exc.msg, headers=headers)
            await self.flush()
            return self._reply(result, headers=headers)
        return handler

    # -- routes -----------------------------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        a = self.account
        app = web.Application()
        r = app.router
        r.add_get("/v5/market/time", self._public(lambda q: {
            "timeSecond": str(self.clock() // 1000), "timeNano": str(self.clock() * 1_000_000)}))
        r.add_get("/v5/market/instruments-info", self._public(lambda q: queries.instruments(a, q)))
        r.add_get("/v5/market/tickers", self._public(lambda q: queries.tickers(a, q)))
        r.add_get("/v5/market/orderbook", self._public(lambda q: queries.orderbook(a, q, self.clock())))
        r.add_get("/v5/user/query-api", self._private(lambda q: self._api_key_info()))
        r.add_get("/v5/account/info", self._private(lambda q: {
            "unifiedMarginStatus": 5, "marginMode": "REGULAR_MARGIN", "isMasterTrader": False,
            "spotHedgingStatus": "OFF", "updatedTime": "0", "dcpStatus": "OFF", "timeWindow": 10, "smpGroup": 0}))
        r.add_get("/v5/asset/coin/query-info", self._private(lambda q: {"rows": [
            {"name": c, "coin": c, "remainAmount": "0", "chains": []}
            for c in sorted({"USDT", *(i.base for i in a.instruments.values())})]}))
        r.add_get("/v5/account/fee-rate", self._private(lambda q: {"list": [
            {"symbol": s, "baseCoin": "", "takerFeeRate": str(a.taker_fee), "makerFeeRate": str(a.maker_fee)}
            for s in a.instruments if not q.get("symbol") or q["symbol"] == s]}))
        r.add_get("/v5/account/wallet-balance", self._private(lambda q: queries.wallet(a, q)))
        r.add_get("/v5/position/list", self._private(lambda q: queries.positions(a, q)))
        r.add_post("/v5/order/create", self._private(a.create))
        r.add_post("/v5/order/amend", self._private(a.amend))
        r.add_post("/v5/order/cancel", self._private(a.cancel))
        r.add_get("/v5/order/realtime", self._private(lambda q: queries.open_orders(a, q)))
        r.add_get("/v5/order/history", self._private(lambda q: queries.order_history(a, q)))
        r.add_get("/v5/execution/list", self._private(lambda q: queries.executions(a, q)))
        r.add_get("/v5/private", self._ws_private)
        r.add_get("/v5/public/linear", self._ws_public)
        r.add_get("/_emulator/stats", self._stats)
        r.add_post("/_emulator/book", self._control_book)
        r.add_post("/_emulator/trade", self._control_trade)
        r.add_route("*", "/{tail:.*}", self._not_found)
        return app

    def _api_key_info(self) -> dict[str, Any]:
        return {"id": "1", "note": "tidegate bybit emulator", "apiKey": "", "readOnly": 0, "secret": "",
                "permissions": {"ContractTrade": ["Order", "Position"], "Spot": [], "Wallet": ["AccountTransfer"],
                                "Options": [], "Derivatives": [], "CopyTrading": [], "BlockTrade": [],
                                "Exchange": [], "NFT": []},
                "ips": ["*"], "type": 1, "deadlineDay": -1, "expiredAt": "", "createdAt": "", "unified": 0,
                "uta": 1, "userID": 1, "inviterID": 0, "vipLevel": "No VIP", "mktMakerLevel": "0",
                "affiliateID": 0, "rsaPublicKey": "", "isMaster": True}

    async def _not_found(self, request: web.Request) -> web.Response:
        return self._reply(code=codes.ROUTE_NOT_FOUND, msg="Route not found.", status=404)

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({**self.account.stats(), "refused": {str(k): v for k, v in self.refused.items()}})

    async def _control_book(self, request: web.Request) -> web.Response:
        try:
            msg = BookMsg.model_validate_json(await request.text())
        except ValidationError as exc:
            return web.json_response({"error": str(exc.errors()[0])}, status=400)
        await self.feed_book(msg)
        return web.json_response({"ok": True})

    async def _control_trade(self, request: web.Request) -> web.Response:
        try:
            msg = TradeMsg.model_validate_json(await request.text())
        except ValidationError as exc:
            return web.json_response({"error": str(exc.errors()[0])}, status=400)
        await self.feed_trade(msg)
        return web.json_response({"ok": True})

    # -- WebSocket ------------------------------------------------------------------------------------------
    async def _ws_private(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        s = _Session(ws, uuid.uuid4().hex)
        self.sessions.add(s)
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                await ws.send_str(json.dumps(self._private_op(s, frame.data)))
        finally:
            self.sessions.discard(s)
        return ws

    def _private_op(self, s: _Session, text: str) -> dict[str, Any]:
        try:
            req = json.loads(text)
        except json.JSONDecodeError:
            return {"success": False, "ret_msg": "error:invalid op", "conn_id": s.conn_id}
        op, req_id = req.get("op"), req.get("req_id")
        base: dict[str, Any] = {"op": op, "conn_id": s.conn_id}
        if req_id is not None:
            base["req_id"] = req_id
        if op == "auth":
            try:
                s.key = check_ws(req.get("args"), self.keys, self.clock())
            except ValueError as exc:
                self.refused[codes.INVALID_SIGN] = self.refused.get(codes.INVALID_SIGN, 0) + 1
                return {"success": False, "ret_msg": str(exc), **base}
            return {"success": True, "ret_msg": "", **base}
        if op == "ping":
            return {"op": "pong", "args": [str(self.clock())], "conn_id": s.conn_id, "req_id": req_id}
        if op in ("subscribe", "unsubscribe"):
            if s.key is None:
                return {"success": False, "ret_msg": "Request not authorized", **base}
            topics = [str(t) for t in req.get("args") or []]
            bad = [t for t in topics if t.split(".")[0] not in PRIVATE_TOPICS]
            if bad:
                return {"success": False, "ret_msg": f"error:handler not found,topic:{bad[0]}", **base}
            (s.topics.update if op == "subscribe" else s.topics.difference_update)(topics)
            return {"success": True, "ret_msg": "", **base}
        return {"success": False, "ret_msg": "error:invalid op", **base}

    async def _ws_public(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        s = _Session(ws, uuid.uuid4().hex)
        self.public_sessions.add(s)
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                req = json.loads(frame.data)
                op, req_id = req.get("op"), req.get("req_id")
                reply = {"success": True, "ret_msg": "", "conn_id": s.conn_id, "req_id": req_id, "op": op}
                if op == "subscribe":
                    s.topics.update(str(t) for t in req.get("args") or [])
                elif op == "unsubscribe":
                    s.topics.difference_update(str(t) for t in req.get("args") or [])
                elif op == "ping":
                    reply["ret_msg"] = "pong"
                else:
                    reply.update(success=False, ret_msg="error:invalid op")
                await ws.send_str(json.dumps(reply))
        finally:
            self.public_sessions.discard(s)
        return ws
