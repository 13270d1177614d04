"""The Bybit v5 emulator driven by real ccxt (``ccxt.async_support`` / ``ccxt.pro`` bybit) over loopback.

The emulator runs on its own event loop in a thread (one fresh account per test);
each test talks to it with a ccxt client pointed at it by URLs only, and feeds the
market with the same typed events the collector replays. Assertions read what
ccxt parsed from the wire, and the emulator's own state, never just "no error".
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

import ccxt
import pytest

from tidegate.bus.market_messages import MarketMessages
from tidegate.bus.messages import BookMsg, TradeMsg
from tidegate.execution.simulator import OrderRequest, PaperExchange, RiskAverseQueue
from tidegate.execution.venue import MARKETS_FILE
from tidegate.market.events import DepthUpdate, Trade
from tidegate.market.frame import iter_events
from tidegate.market.synthetic import generate
from tidegate.venue import BybitAccount, BybitEmulator, emulator_client, load_instruments

KEY, SECRET = "emulator-test-key", "emulator-test-secret"
SYM, BTC = "BTCUSDT", "BTC/USDT:USDT"
MAKER, TAKER = 0.0001, 0.0006


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    thread = threading.Thread(target=lp.run_forever, daemon=True)
    thread.start()
    yield lp
    lp.call_soon_threadsafe(lp.stop)
    thread.join(5)
    lp.close()


class Venue:
    """Test handle: the emulator on its loop, a market feed, and ccxt clients for it."""

    def __init__(self, lp: asyncio.AbstractEventLoop, emu: BybitEmulator):
        self.loop, self.emu = lp, emu
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self._t = itertools.count(1_800_000_000_000_000_000, 1_000_000)
        self._ids = itertools.count(1)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    def on_loop(self, fn: Any) -> Any:
        async def call() -> Any:
            return fn()
        return self.run(call())

    def book(self, bids: dict[float, float], asks: dict[float, float]) -> None:
        """Replace the book: one depth diff (deleted levels at qty 0), fed as the collector would."""
        changes = {side: [(p, q) for p, q in new.items()] + [(p, 0.0) for p in old if p not in new]
                   for side, new, old in (("b", bids, self.bids), ("a", asks, self.asks))}
        self.bids, self.asks = dict(bids), dict(asks)
        t, i = next(self._t), next(self._ids)
        ev = DepthUpdate(t, t, SYM, i, i, i - 1, tuple(changes["b"]), tuple(changes["a"]))
        self.run(self.emu.feed(ev))

    def trade(self, price: float, qty: float, aggressor: int) -> None:
        t = next(self._t)
        self.run(self.emu.feed(Trade(t, t, SYM, next(self._ids), price, qty, aggressor)))

    def client(self, *, pro: bool = True, key: str = KEY, secret: str = SECRET) -> Any:
        return emulator_client(self.emu.rest_url, self.emu.ws_url, api_key=key, secret=secret, pro=pro)

    def subscribed(self, topic: str) -> bool:
        return self.on_loop(lambda: any(topic in s.topics for s in self.emu.sessions))


@pytest.fixture
def venue(loop: asyncio.AbstractEventLoop) -> Iterator[Venue]:
    account = BybitAccount(load_instruments(), balance=10_000.0, leverage=10.0, maker_fee=MAKER, taker_fee=TAKER)
    emu = BybitEmulator(account, keys={KEY: SECRET})
    v = Venue(loop, emu)
    v.run(emu.start("127.0.0.1", 0))
    v.book({49999.0: 2.0, 49998.0: 3.0}, {50001.0: 1.5, 50002.0: 4.0})
    yield v
    v.run(emu.stop())


async def _with(client: Any, body: Any) -> Any:
    try:
        return await body(client)
    finally:
        await client.close()


def drive(client: Any, body: Any) -> Any:
    """Run ``body(client)`` on a fresh loop in this thread, then close the client."""
    return asyncio.run(_with(client, body))


# -- public data, markets, balance ---------------------------------------------------------------------
def test_markets_ticker_book_and_balance_through_ccxt(venue: Venue) -> None:
    async def body(c: Any) -> dict[str, Any]:
        await c.load_markets()
        return {"markets": c.markets, "ticker": await c.fetch_ticker(BTC), "book": await c.fetch_order_book(BTC, 5),
                "balance": await c.fetch_balance(), "positions": await c.fetch_positions()}

    got = drive(venue.client(pro=False), body)
    offline = {m["symbol"]: m for m in json.loads(MARKETS_FILE.read_text())}
    assert set(got["markets"]) == set(offline)          # exactly the venue's linear instruments
    for sym, m in offline.items():                        # parsed by ccxt from the wire = the committed file
        assert got["markets"][sym]["precision"] == m["precision"]
        assert got["markets"][sym]["limits"]["amount"] == m["limits"]["amount"]
    t = got["ticker"]
    assert (t["bid"], t["ask"], t["bidVolume"], t["askVolume"]) == (49999.0, 50001.0, 2.0, 1.5)
    assert got["book"]["bids"] == [[49999.0, 2.0], [49998.0, 3.0]]
    assert got["book"]["asks"] == [[50001.0, 1.5], [50002.0, 4.0]]
    usdt = got["balance"]["USDT"]
    assert (usdt["total"], usdt["free"], usdt["used"]) == (10_000.0, 10_000.0, 0.0)
    assert got["positions"] == []


# -- order lifecycle -----------------------------------------------------------------------------------
def test_post_only_create_amend_cancel_and_link_id_idempotency(venue: Venue) -> None:
    async def body(c: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        o = await c.create_order(BTC, "limit", "buy", 0.01, 49990.0, {"timeInForce": "PostOnly",
                                                                      "orderLinkId": "sig-1"})
        out["created"] = o
        out["open"] = await c.fetch_open_orders(BTC)
        out["used"] = (await c.fetch_balance())["USDT"]["used"]
        with pytest.raises(ccxt.InvalidOrder) as dup:
            await c.create_order(BTC, "limit", "buy", 0.02, 49980.0, {"timeInForce": "PostOnly",
                                                                      "orderLinkId": "sig-1"})
        out["dup"] = str(dup.value)
        await c.edit_order(o["id"], BTC, "limit", "buy", 0.02, 49995.0)
        out["amended"] = await c.fetch_open_orders(BTC)
        out["by_link"] = await c.fetch_open_orders(BTC, params={"orderLinkId": "sig-1"})
        await c.cancel_order(None, BTC, {"orderLinkId": "sig-1"})
        out["open_after"] = await c.fetch_open_orders(BTC)
        out["closed"] = await c.fetch_canceled_and_closed_orders(BTC)
        out["used_after"] = (await c.fetch_balance())["USDT"]["used"]
        with pytest.raises(ccxt.InvalidOrder) as again:   # a link id stays used after its order ended
            await c.create_order(BTC, "limit", "buy", 0.01, 49990.0, {"timeInForce": "PostOnly",
                                                                      "orderLinkId": "sig-1"})
        out["again"] = str(again.value)
        with pytest.raises(ccxt.OrderNotFound):
            await c.cancel_order(None, BTC, {"orderLinkId": "sig-1"})
        return out

    got = drive(venue.client(pro=False), body)
    assert got["created"]["clientOrderId"] == "sig-1"
    [o] = got["open"]
    assert (o["id"], o["status"], o["side"], o["price"], o["amount"], o["timeInForce"]) == (
        got["created"]["id"], "open", "buy", 49990.0, 0.01, "PO")
    assert got["used"] == pytest.approx(0.01 * 49990.0 * (1 / 10 + TAKER))   # order margin reserved
    assert "110072" in got["dup"] and "OrderLinkedID is duplicate" in got["dup"]
    [a] = got["amended"]
    assert (a["id"], a["price"], a["amount"]) == (got["created"]["id"], 49995.0, 0.02)
    assert [x["id"] for x in got["by_link"]] == [got["created"]["id"]]
    assert got["open_after"] == []
    [c] = got["closed"]
    assert (c["id"], c["status"], c["info"]["cancelType"]) == (got["created"]["id"], "canceled", "CancelByUser")
    assert got["used_after"] == 0.0
    assert "110072" in got["again"]
    assert venue.on_loop(lambda: venue.emu.account.stats()["orders"]) == 1   # the duplicates placed nothing


def test_crossing_post_only_is_accepted_then_cancelled_with_bybit_reason(venue: Venue) -> None:
    """Bybit linear: the create call succeeds, the order ends Cancelled / EC_PostOnlyWillTakeLiquidity."""
    async def body(c: Any) -> dict[str, Any]:
        await c.load_markets()
        watching = asyncio.ensure_future(c.watch_orders(BTC))
        while not await asyncio.to_thread(venue.subscribed, "order"):
            await asyncio.sleep(0.02)
        o = await c.create_order(BTC, "limit", "buy", 0.01, 50001.0, {"timeInForce": "PostOnly"})
        streamed = await asyncio.wait_for(watching, 5)
        fetched = await c.fetch_order(o["id"], BTC, {"acknowledged": True})
        taker = await c.create_order(BTC, "limit", "buy", 0.01, 50001.0)   # GTC at the ask: takes it
        return {"o": o, "streamed": streamed, "fetched": fetched, "taker": taker,
                "trades": await c.fetch_my_trades(BTC)}

    got = drive(venue.client(), body)
    assert got["streamed"][-1]["id"] == got["o"]["id"]
    for view in (got["streamed"][-1], got["fetched"]):
        assert view["status"] == "canceled"
        assert view["info"]["rejectReason"] == "EC_PostOnlyWillTakeLiquidity"
        assert view["filled"] == 0.0
    [t] = got["trades"]                       # only the GTC order traded, as taker at the best ask
    assert (t["order"], t["price"], t["amount"], t["takerOrMaker"]) == (got["taker"]["id"], 50001.0, 0.01, "taker")
    assert t["fee"]["cost"] == pytest.approx(0.01 * 50001.0 * TAKER)


# -- refusals -----------------------------------------------------------------------------------------------
def test_wrong_key_or_secret_is_refused_and_nothing_trades(venue: Venue) -> None:
    async def rest(c: Any) -> str:
        with pytest.raises(ccxt.AuthenticationError) as err:
            await c.create_order(BTC, "limit", "buy", 0.01, 49990.0, {"timeInForce": "PostOnly"})
        return str(err.value)

    async def ws(c: Any) -> str:
        # reach the stream's own auth op: skip the two private REST calls ccxt makes first
        # (currencies, account type), which the wrong secret would already fail with 10004
        c.has["fetchCurrencies"] = False
        c.options.update(enableUnifiedMargin=False, enableUnifiedAccount=True)
        await c.load_markets()
        with pytest.raises(ccxt.BaseError) as err:
            await asyncio.wait_for(c.watch_orders(BTC), 5)
        return str(err.value)

    async def stale(c: Any) -> str:
        c.options["timeDifference"] = 60_000     # signs with a clock one minute behind
        with pytest.raises(ccxt.InvalidNonce) as err:
            await c.fetch_balance()
        return str(err.value)

    bad_secret = drive(venue.client(pro=False, secret="not-the-secret"), rest)
    assert "10002" in drive(venue.client(pro=False), stale)
    bad_key = drive(venue.client(pro=False, key="unknown-key"), rest)
    ws_bad = drive(venue.client(secret="not-the-secret"), ws)
    assert "10004" in bad_secret and "error sign" in bad_secret
    assert "10003" in bad_key and "API key is invalid" in bad_key
    assert "Request not authorized" in ws_bad
    assert SECRET not in bad_secret + bad_key + ws_bad
    assert venue.on_loop(lambda: venue.emu.account.stats()["orders"]) == 0


def test_rate_limit_answers_10006_with_bybit_headers(venue: Venue) -> None:
    async def body(c: Any) -> dict[str, Any]:
        await c.load_markets()
        results = await asyncio.gather(*[
            c.create_order(BTC, "limit", "buy", 0.001, 49000.0 - i, {"timeInForce": "PostOnly"})
            for i in range(14)], return_exceptions=True)
        headers = dict(c.last_response_headers)
        await asyncio.sleep(1.05)
        later = await c.create_order(BTC, "limit", "buy", 0.001, 48000.0, {"timeInForce": "PostOnly"})
        return {"results": results, "headers": headers, "later": later}

    got = drive(venue.client(pro=False), body)
    ok = [r for r in got["results"] if isinstance(r, dict)]
    refused = [r for r in got["results"] if isinstance(r, Exception)]
    assert len(ok) == 10                      # Bybit's 10 req/s per UID on /v5/order/create
    assert refused and all(isinstance(e, ccxt.RateLimitExceeded) and "10006" in str(e) for e in refused)
    h = {k.lower(): v for k, v in got["headers"].items()}
    assert h["x-bapi-limit"] == "10" and h["x-bapi-limit-status"] == "0"
    refused_at = json.loads(str(refused[-1]).split(" ", 1)[1])["time"]
    assert 0 < int(h["x-bapi-limit-reset-timestamp"]) - refused_at <= 1000   # when the oldest hit leaves
    assert got["later"]["id"]                 # the window rolled: accepted again
    assert venue.on_loop(lambda: venue.emu.account.stats()["open_orders"]) == 11


def test_insufficient_balance_counts_open_order_margin(venue: Venue) -> None:
    async def body(c: Any) -> dict[str, Any]:
        with pytest.raises(ccxt.InsufficientFunds) as big:          # 2.5 BTC × 49k / 10x > 10k USDT
            await c.create_order(BTC, "limit", "buy", 2.5, 49000.0, {"timeInForce": "PostOnly"})
        first = await c.create_order(BTC, "limit", "buy", 1.5, 49000.0, {"timeInForce": "PostOnly"})
        with pytest.raises(ccxt.InsufficientFunds) as second:       # 7.4k reserved; 0.6 BTC more is too much
            await c.create_order(BTC, "limit", "buy", 0.6, 49000.0, {"timeInForce": "PostOnly"})
        closing_side = await c.create_order(BTC, "limit", "sell", 0.5, 50010.0, {"timeInForce": "PostOnly"})
        return {"big": str(big.value), "second": str(second.value), "first": first, "sell": closing_side}

    got = drive(venue.client(pro=False), body)
    assert "110007" in got["big"] and "110007" in got["second"]
    assert got["first"]["id"] and got["sell"]["id"]   # the other side nets: its margin is the larger side's


def test_precision_minimums_and_ccxt_rounding(venue: Venue) -> None:
    base = {"category": "linear", "symbol": SYM, "side": "Buy", "orderType": "Limit", "timeInForce": "PostOnly"}

    async def body(c: Any) -> dict[str, Any]:
        await c.load_markets()
        out: dict[str, Any] = {}
        for name, extra in (("qty_step", {"qty": "0.0015", "price": "49000.0"}),
                            ("price_tick", {"qty": "0.001", "price": "49000.05"}),
                            ("qty_max", {"qty": "5000", "price": "49000.0"})):
            with pytest.raises(ccxt.BadRequest) as err:     # ccxt's own signed call, body unrounded
                await c.privatePostV5OrderCreate({**base, **extra})
            out[name] = str(err.value)
        with pytest.raises(ccxt.InvalidOrder) as small:
            await c.privatePostV5OrderCreate({**base, "qty": "0.001", "price": "1000.0"})
        out["notional"] = str(small.value)
        out["rounded"] = await c.create_order(BTC, "limit", "buy", 0.0015, 49000.04, {"timeInForce": "PostOnly"})
        out["open"] = await c.fetch_open_orders(BTC)
        return out

    got = drive(venue.client(pro=False), body)
    assert "10001" in got["qty_step"] and "Qty invalid" in got["qty_step"]
    assert "10001" in got["price_tick"] and "Price invalid" in got["price_tick"]
    assert "10001" in got["qty_max"] and "maximum" in got["qty_max"]
    assert "110094" in got["notional"]
    [o] = got["open"]                          # the unified call rounds to the venue's step and tick first
    assert (o["id"], o["amount"], o["price"]) == (got["rounded"]["id"], 0.001, 49000.0)


# -- fills driven by the market ------------------------------------------------------------------------
def test_fill_from_book_reaches_streams_rest_position_and_wallet(venue: Venue) -> None:
    """Queue rule of the paper engine: 2.0 ahead at 49999; a 1.5 trade does not reach us, a 1.0 one does."""
    async def body(c: Any) -> dict[str, Any]:
        await c.load_markets()
        orders = asyncio.ensure_future(c.watch_orders(BTC))
        trades = asyncio.ensure_future(c.watch_my_trades(BTC))
        balance = asyncio.ensure_future(c.watch_balance())
        snapshot = await asyncio.wait_for(c.watch_positions([BTC]), 5)   # ccxt's REST snapshot first
        position = asyncio.ensure_future(c.watch_positions([BTC]))       # then the `position` topic
        for topic in ("order", "execution", "wallet", "position"):
            while not await asyncio.to_thread(venue.subscribed, topic):
                await asyncio.sleep(0.02)
        o = await c.create_order(BTC, "limit", "buy", 0.01, 49999.0, {"timeInForce": "PostOnly",
                                                                      "orderLinkId": "sig-fill"})
        await asyncio.to_thread(venue.trade, 49999.0, 1.5, -1)
        before = await c.fetch_my_trades(BTC)
        await asyncio.to_thread(venue.trade, 49999.0, 1.0, -1)
        streamed_orders = list(await asyncio.wait_for(orders, 5))
        # A second watch_orders waits for the *next* message, and the "closed" update can land before
        # its task subscribes (CI fresh6 timed out so). ccxt's own cache keeps every streamed update.
        async with asyncio.timeout(10):
            while not any(x["id"] == o["id"] and x["status"] == "closed" for x in c.orders or []):
                await asyncio.sleep(0.01)
        streamed_orders += list(c.orders)
        streamed_trades = await asyncio.wait_for(trades, 5)
        wallet = await asyncio.wait_for(balance, 5)
        streamed_position = await asyncio.wait_for(position, 5)
        positions = await c.fetch_positions([BTC])
        return {"o": o, "before": before, "snapshot": snapshot, "streamed_position": streamed_position,
                "orders": streamed_orders, "trades": streamed_trades,
                "rest_trades": await c.fetch_my_trades(BTC), "positions": positions,
                "balance": await c.fetch_balance(), "wallet": wallet}

    got = drive(venue.client(), body)
    fee = 0.01 * 49999.0 * MAKER
    assert got["before"] == []                                  # the first trade only ate queue ahead
    [t] = got["trades"]
    assert (t["order"], t["price"], t["amount"], t["takerOrMaker"], t["side"]) == (
        got["o"]["id"], 49999.0, 0.01, "maker", "buy")
    assert t["fee"]["cost"] == pytest.approx(fee)
    assert [x["id"] for x in got["rest_trades"]] == [t["id"]]   # REST agrees with the stream
    assert got["rest_trades"][0]["info"]["orderLinkId"] == "sig-fill"
    closed = [x for x in got["orders"] if x["id"] == got["o"]["id"]][-1]
    assert (closed["status"], closed["filled"], closed["average"]) == ("closed", 0.01, 49999.0)
    assert got["snapshot"] == []
    for p in (got["streamed_position"][-1], got["positions"][0]):
        assert (p["symbol"], p["side"], p["contracts"], p["entryPrice"]) == (BTC, "long", 0.01, 49999.0)
    assert got["balance"]["USDT"]["total"] == pytest.approx(10_000.0 - fee)
    [acct] = got["wallet"]["info"]                              # the stream's wallet message
    assert float(acct["coin"][0]["walletBalance"]) == pytest.approx(10_000.0 - fee)
    mid = (49999.0 + 50001.0) / 2                               # ccxt reports equity: wallet + uPnL at mark
    assert got["wallet"]["USDT"]["total"] == pytest.approx(10_000.0 - fee + 0.01 * (mid - 49999.0))
    assert venue.on_loop(lambda: venue.emu.account.stats()["executions"]) == 1


def test_reduce_only_refused_when_flat_then_clipped_to_the_position(venue: Venue) -> None:
    async def body(c: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with pytest.raises(ccxt.InvalidOrder) as flat:
            await c.create_order(BTC, "limit", "sell", 0.005, 50010.0, {"timeInForce": "PostOnly",
                                                                        "reduceOnly": True})
        out["flat"] = str(flat.value)
        await c.create_order(BTC, "limit", "buy", 0.002, 49999.0, {"timeInForce": "PostOnly"})
        await asyncio.to_thread(venue.book, {49997.0: 1.0}, {49999.0: 1.0, 50001.0: 1.5})  # ask moved through
        exit_ = await c.create_order(BTC, "limit", "sell", 0.005, 50000.0, {"timeInForce": "PostOnly",
                                                                             "reduceOnly": True})
        out["exit_open"] = await c.fetch_open_orders(BTC)
        await asyncio.to_thread(venue.trade, 50001.0, 0.1, +1)   # trades through 50000: the exit fills
        out["exit"] = await c.fetch_order(exit_["id"], BTC, {"acknowledged": True})
        out["positions"] = await c.fetch_positions([BTC])
        out["balance"] = await c.fetch_balance()
        return out

    got = drive(venue.client(pro=False), body)
    assert "110017" in got["flat"]
    [o] = got["exit_open"]
    assert (o["amount"], o["reduceOnly"]) == (0.002, True)     # 0.005 asked, the position is 0.002
    assert (got["exit"]["status"], got["exit"]["filled"]) == ("closed", 0.002)
    [flat] = got["positions"]                                   # asked by symbol: the flat record
    assert flat["contracts"] == 0.0
    pnl = 0.002 * (50000.0 - 49999.0) - 0.002 * 49999.0 * MAKER - 0.002 * 50000.0 * MAKER
    assert got["balance"]["USDT"]["total"] == pytest.approx(10_000.0 + pnl)


def test_replayed_market_fills_exactly_as_the_paper_engine(venue: Venue) -> None:
    """Same synthetic market, same orders: the emulator's fills equal a bare PaperExchange's."""
    frame = generate(seed=3, regime="normal", duration_s=40.0, symbol=SYM)
    events = list(iter_events(frame))
    warm, rest = events[:400], events[400:]
    for ev in warm:
        venue.run(venue.emu.feed(ev))
    conv = MarketMessages(SYM, levels=50)
    paper = PaperExchange(queue=RiskAverseQueue(), maker_fee=MAKER, taker_fee=TAKER)
    last_ns = 0
    for ev in warm:
        msg = conv.convert(ev)
        if isinstance(msg, BookMsg):
            paper.on_book(msg.recv_ns, msg.bid_changes, msg.ask_changes, msg.bids[0][0] if msg.bids else None,
                          msg.asks[0][0] if msg.asks else None)
            last_ns = msg.recv_ns
        elif isinstance(msg, TradeMsg):
            paper.on_trade(msg.recv_ns, msg.price, msg.qty, msg.aggressor)
            last_ns = msg.recv_ns
    bid, ask = conv.book.touch()[0], conv.book.touch()[2]
    plan = [("b1", "buy", round(bid, 1)), ("b2", "buy", round(bid - 0.1, 1)),
            ("s1", "sell", round(ask, 1)), ("s2", "sell", round(ask + 0.1, 1))]

    async def place(c: Any) -> dict[str, str]:
        ids = {}
        for link, side, px in plan:
            o = await c.create_order(BTC, "limit", side, 0.05, px, {"timeInForce": "PostOnly", "orderLinkId": link})
            ids[o["id"]] = link
        return ids

    ids = drive(venue.client(pro=False), place)
    for link, side, px in plan:
        paper.submit(OrderRequest(link, side, px, 0.05), last_ns)   # type: ignore[arg-type]
    expected: list[tuple[str, float, float]] = []
    for r in paper.advance(last_ns):
        assert r.kind == "accepted"
    for ev in rest:
        venue.run(venue.emu.feed(ev))
        msg = conv.convert(ev)
        reports = []
        if isinstance(msg, BookMsg):
            reports = paper.on_book(msg.recv_ns, msg.bid_changes, msg.ask_changes,
                                    msg.bids[0][0] if msg.bids else None, msg.asks[0][0] if msg.asks else None)
        elif isinstance(msg, TradeMsg):
            reports = paper.on_trade(msg.recv_ns, msg.price, msg.qty, msg.aggressor)
        expected += [(r.client_order_id, r.price, r.qty) for r in reports if r.kind == "fill"]

    async def fills(c: Any) -> list[dict[str, Any]]:
        return await c.fetch_my_trades(BTC, limit=100)

    got = sorted((ids[t["order"]], t["price"], t["amount"]) for t in drive(venue.client(pro=False), fills))
    assert expected, "the replay should fill at least one of the touch orders"
    want = sorted(expected)
    assert [(c, p) for c, p, _ in got] == [(c, p) for c, p, _ in want]
    assert [q for *_, q in got] == pytest.approx([q for *_, q in want])


def test_restart_keeps_the_account_and_an_outage_is_a_network_error(venue: Venue) -> None:
    """A venue outage is not an account reset: after a restart on the same port the open order,
    the fill and the position are all still there, found again by orderLinkId."""
    async def before(c: Any) -> str:
        await c.create_order(BTC, "limit", "buy", 0.003, 49999.0, {"timeInForce": "PostOnly", "orderLinkId": "a"})
        o = await c.create_order(BTC, "limit", "buy", 0.004, 49990.0, {"timeInForce": "PostOnly",
                                                                       "orderLinkId": "b"})
        await asyncio.to_thread(venue.book, {49998.0: 1.0}, {49999.0: 0.5, 50001.0: 1.5})   # "a" fills
        return str(o["id"])

    async def during(c: Any) -> str:
        with pytest.raises(ccxt.NetworkError) as err:
            await c.fetch_open_orders(BTC)
        return type(err.value).__name__

    async def after(c: Any) -> dict[str, Any]:
        return {"open": await c.fetch_open_orders(BTC, params={"orderLinkId": "b"}),
                "trades": await c.fetch_my_trades(BTC), "positions": await c.fetch_positions([BTC])}

    client = venue.client(pro=False)
    asyncio.run(client.load_markets())
    markets = client.markets
    asyncio.run(client.close())
    oid = drive(venue.client(pro=False), before)
    port = venue.emu.port
    venue.run(venue.emu.stop())
    down = venue.client(pro=False)
    down.set_markets(markets)               # what a running executor has: markets loaded before the outage
    assert drive(down, during)
    venue.run(venue.emu.start("127.0.0.1", port))
    got = drive(venue.client(pro=False), after)
    assert [(o["id"], o["clientOrderId"], o["status"]) for o in got["open"]] == [(oid, "b", "open")]
    [t] = got["trades"]
    assert (t["info"]["orderLinkId"], t["amount"], t["price"]) == ("a", 0.003, 49999.0)
    assert got["positions"][0]["contracts"] == 0.003


def test_executions_page_by_cursor_and_the_catch_up_reads_back_to_a_known_one(venue: Venue) -> None:
    """130 partial fills: Bybit pages at most 100 executions; the executor's catch-up walks the
    cursor back to an execution it has seen, so a long outage loses no fill."""
    from tidegate.services.executor_venue import trades_back_to

    async def place(c: Any) -> dict[str, Any]:
        await c.load_markets()
        return await c.create_order(BTC, "limit", "buy", 0.2, 49999.0, {"timeInForce": "PostOnly",
                                                                          "orderLinkId": "sig-pages"})

    o = drive(venue.client(pro=False), place)
    venue.trade(49999.0, 2.0, -1)                 # the queue ahead of us
    for _ in range(130):
        venue.trade(49999.0, 0.001, -1)           # one partial fill each
    assert venue.on_loop(lambda: venue.emu.account.stats()["executions"]) == 130

    calls: list[dict[str, str]] = []

    async def body(c: Any) -> dict[str, Any]:
        await c.load_markets()

        async def fetch(*args: Any) -> Any:
            calls.append(dict(args[3]))
            return await c.fetch_my_trades(*args)

        first = await c.fetch_my_trades(BTC, None, 100)
        every, complete = await trades_back_to(fetch, BTC, set())
        newest_first = [t["id"] for t in sorted(every, key=lambda t: t["timestamp"], reverse=True)]
        calls.clear()
        recent, stopped = await trades_back_to(fetch, BTC, {newest_first[20]})    # seen before: one page
        with pytest.raises(ccxt.BadRequest) as bad:
            await c.fetch_my_trades(BTC, None, 100, {"cursor": "not-a-cursor"})
        return {"first": first, "every": every, "complete": complete, "recent": recent, "stopped": stopped,
                "bad": str(bad.value)}

    got = drive(venue.client(pro=False), body)
    assert len(got["first"]) == 100                               # one page: 30 older fills unread
    cursors = [t["info"]["nextPageCursor"] for t in got["first"] if t["info"].get("nextPageCursor")]
    assert cursors == ["offset:100"], cursors
    ids = [t["id"] for t in got["every"]]
    assert len(ids) == len(set(ids)) == 130 and got["complete"]
    assert {t["order"] for t in got["every"]} == {o["id"]}
    assert sum(t["amount"] for t in got["every"]) == pytest.approx(0.13)
    assert len(got["recent"]) == 100 and got["stopped"] and calls == [{}]
    assert "10001" in got["bad"] and "cursor invalid" in got["bad"]
