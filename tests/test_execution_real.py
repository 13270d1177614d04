"""Real-mode pure decisions (tidegate.execution.real) and the engine's real-venue paths, without a venue.

The ccxt dicts here have the shape ccxt's bybit parser produces from the emulator's v5 records
(``clientOrderId`` = ``orderLinkId``, ``info.rejectReason``, ``info.leavesQty``); the end-to-end
test (tests/test_executor_real.py) drives the same functions with what ccxt really parsed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt
import pytest

from tidegate.bus.messages import ApprovedMsg, BookMsg, HoldMark, HoldMsg, OrderMsg
from tidegate.config.schema import AppConfig
from tidegate.execution.engine import ExecutionEngine
from tidegate.execution.real import (
    backoff_s,
    classify_error,
    free_usdt,
    order_report,
    parse_link_id,
    plan_reconcile,
    position_liq,
    redact,
    ret_code,
    trade_report,
    unfinished_real,
)
from tidegate.execution.simulator import ExecReport
from tidegate.execution.venue import VenueError, check_venue, load_offline_exchange, market_rules, venue_urls_from_env

BTC = "BTC/USDT:USDT"
SYM_OF = {BTC: "BTCUSDT"}


def order(coid: str, status: str, *, filled: float = 0.0, amount: float = 0.01, reject: str = "EC_NoError",
          reduce_only: bool = False, side: str = "buy") -> dict[str, Any]:
    return {"clientOrderId": coid, "symbol": BTC, "status": status, "filled": filled, "amount": amount,
            "price": 60000.0, "side": side, "reduceOnly": reduce_only, "info": {"rejectReason": reject}}


# -- mapping ---------------------------------------------------------------------------------------------
def test_order_updates_map_to_the_paper_engine_reports() -> None:
    acc = order_report(order("S-e0", "open"), 5)
    assert acc is not None and (acc.kind, acc.qty, acc.ts_ns) == ("accepted", 0.01, 5)
    assert order_report(order("S-e0", "open", filled=0.004), 5) is None          # partial: trades carry it
    assert order_report(order("S-e0", "closed", filled=0.01), 5) is None         # filled: trades carry it
    cancelled = order_report(order("S-e0", "canceled", filled=0.004), 5)
    assert cancelled is not None and cancelled.kind == "cancelled" and cancelled.remaining == pytest.approx(0.006)
    # Bybit accepts a crossing PostOnly, then cancels it: on paper that is a rejection
    cross = order_report(order("S-e0", "canceled", reject="EC_PostOnlyWillTakeLiquidity"), 5)
    assert cross is not None and (cross.kind, cross.reason) == ("rejected", "post_only_would_cross")
    assert order_report({"status": "open", "info": {}}, 5) is None               # not one of ours


def test_trades_map_to_fills_with_the_venue_execution_id() -> None:
    t = {"id": "ex-1", "symbol": BTC, "amount": 0.004, "price": 60000.0, "takerOrMaker": "maker",
         "fee": {"cost": 0.024, "rate": 0.0001}, "info": {"orderLinkId": "S-e0", "leavesQty": "0.006"}}
    exec_id, rep = trade_report(t, 9, ordered_qty=0.01, filled_before=0.0, maker_fee=0.0001,
                                taker_fee=0.0006)  # type: ignore[misc]
    assert exec_id == "ex-1"
    assert (rep.kind, rep.client_order_id, rep.qty, rep.price, rep.remaining, rep.liquidity) == \
        ("fill", "S-e0", 0.004, 60000.0, 0.006, "maker")
    assert rep.fee == pytest.approx(0.024) and rep.fee_rate == 0.0001
    # no leavesQty and no fee in the dict: the engine's accounting and the taker rate decide
    t2 = {"id": "ex-2", "symbol": BTC, "amount": 0.006, "price": 60000.0, "takerOrMaker": "taker",
          "clientOrderId": "S-e0", "info": {}}
    _, rep2 = trade_report(t2, 9, ordered_qty=0.01, filled_before=0.004, maker_fee=0.0001,
                           taker_fee=0.0006)  # type: ignore[misc]
    assert rep2.remaining == pytest.approx(0.0) and rep2.fee == pytest.approx(0.006 * 60000 * 0.0006)
    assert trade_report({"id": "x", "amount": 1, "price": 1, "info": {}}, 0, ordered_qty=1, filled_before=0,
                        maker_fee=0, taker_fee=0) is None


# -- reconciliation --------------------------------------------------------------------------------------
def test_link_ids_and_reconcile_plan() -> None:
    assert parse_link_id("BTCUSDT-1723-b-e0") == ("BTCUSDT-1723-b", "e", 0)
    assert parse_link_id("BTCUSDT-1723-b-x12") == ("BTCUSDT-1723-b", "x", 12)
    assert parse_link_id("manual-order") is None
    opened = [order("A-e0", "open"), order("B-x1", "open", reduce_only=True, side="sell", amount=0.03, filled=0.01),
              {**order("", "open"), "clientOrderId": "someone-else"}]
    long_pos = [{"symbol": BTC, "contracts": 0.05, "side": "long", "liquidationPrice": 54000.0}]
    plan = plan_reconcile(opened, long_pos, {"A-e0"}, symbol_of=SYM_OF, lot_step={"BTCUSDT": 0.001})
    assert [o["clientOrderId"] for o in plan.adopt] == ["B-x1"]        # A-e0 is already tracked
    assert plan.foreign == 1
    assert plan.cover == {"BTCUSDT": ("sell", 0.03)}                   # 0.05 long, 0.02 covered by B-x1
    short = [{"symbol": BTC, "contracts": 0.02, "side": "short"}]
    assert plan_reconcile(opened, short, set(), symbol_of=SYM_OF, lot_step={"BTCUSDT": 0.001}).cover == \
        {"BTCUSDT": ("buy", 0.02)}                                     # a sell exit covers nothing of a short
    flat = plan_reconcile([], [{"symbol": BTC, "contracts": 0, "side": "long"}], set(), symbol_of=SYM_OF,
                          lot_step={"BTCUSDT": 0.001})
    assert flat.cover == {} and flat.adopt == []
    assert position_liq(long_pos, SYM_OF) == {("BTCUSDT", "buy"): 54000.0}
    assert free_usdt({"free": {"USDT": 812.5}}) == 812.5 and free_usdt({}) is None


# -- errors, backoff, secrets, config ----------------------------------------------------------------------
def test_error_classes_backoff_and_redaction() -> None:
    assert classify_error(ccxt.RateLimitExceeded("10006")) == "rate_limit"   # a NetworkError subclass
    assert classify_error(ccxt.InvalidOrder('bybit {"retCode":110072,"retMsg":"OrderLinkedID is duplicate"}')) \
        == "duplicate"
    assert classify_error(ccxt.OrderNotFound("110001")) == "not_found"
    assert classify_error(ccxt.InsufficientFunds("110007")) == "insufficient_balance"
    assert classify_error(ccxt.AuthenticationError("10004")) == "auth"
    assert classify_error(ccxt.NetworkError("down")) == "network"
    assert classify_error(ccxt.InvalidOrder('{"retCode": 110017}')) == "rejected"
    assert ret_code(ccxt.InvalidOrder('bybit {"retCode": 110017, "retMsg": "x"}')) == "110017"
    assert [backoff_s(i) for i in range(6)] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    text = 'error sign! origin_string[1700000000000tgk-KEY5000{"category":"linear"}] secret tgs-SECRET'
    assert redact(text, ["tgk-KEY", "tgs-SECRET"]) == \
        'error sign! origin_string[1700000000000***5000{"category":"linear"}] secret ***'


def test_venue_key_and_urls_from_env() -> None:
    check_venue("bybit_v5")
    with pytest.raises(VenueError, match=r"exchange\.venue: 'binance' is not supported"):
        check_venue("binance")
    assert venue_urls_from_env({}) is None
    assert venue_urls_from_env({"EXCHANGE_REST_URL": "http://127.0.0.1:1", "EXCHANGE_WS_URL": "ws://127.0.0.1:1"}) \
        == ("http://127.0.0.1:1", "ws://127.0.0.1:1")
    with pytest.raises(VenueError, match="together"):
        venue_urls_from_env({"EXCHANGE_REST_URL": "http://127.0.0.1:1"})


# -- the engine's real-venue paths ---------------------------------------------------------------------------
def _engine(**executor: Any) -> ExecutionEngine:
    cfg = AppConfig.model_validate({"exchange": {"mode": "real"}, "executor": {
        "warmup_seconds": 0, "gates": {"liquidity_by_side": {"enabled": False}}, **executor}})
    ex = load_offline_exchange()
    return ExecutionEngine(cfg, {"BTCUSDT": market_rules(ex, "BTCUSDT")}, started_wall=0.0, real_mode=True,
                           route_of=lambda sid: "canary")


def _book(t: int) -> BookMsg:
    return BookMsg(symbol="BTCUSDT", ts_ns=t, recv_ns=t, seq=t, bids=[(59999.9, 5.0)], asks=[(60000.0, 5.0)])


def _signal(t: int, side: str = "buy") -> ApprovedMsg:
    return ApprovedMsg(signal_id=f"BTCUSDT-{t}-{side[0]}", symbol="BTCUSDT", side=side, ts_ns=t, recv_ns=t,  # type: ignore[arg-type]
                       emitted_ns=0, scored_ns=0, price=60000.0, route="canary", model_id="m-b", score=0.9,
                       tau_entry=0.5, bucket=0)


def test_warm_up_refuses_every_signal_for_warmup_seconds_after_start() -> None:
    """The seed's warm-up gate: no order in the first ``executor.warmup_seconds`` (90 as shipped)."""
    from pathlib import Path

    from tidegate.config import load_config

    shipped = load_config(Path(__file__).resolve().parents[1] / "config" / "app.yml")
    assert AppConfig().executor.warmup_seconds == shipped.executor.warmup_seconds == 90
    eng = _engine(warmup_seconds=90)          # started_wall 0
    t = 1_000_000_000_000
    eng.on_book(_book(t))
    early = eng.on_approved(_signal(t), 89.9)
    assert early.orders == [] and early.counts == [("warmup_skip_total", {"symbol": "BTCUSDT"}, 1.0)]
    assert eng.on_approved(_signal(t), 95.0).orders == []      # a skipped signal is spent, not queued
    late = eng.on_approved(_signal(t + 1), 90.0)
    assert late.orders and not any(name == "warmup_skip_total" for name, _l, _n in late.counts)


def test_engine_real_lifecycle_ttl_exit_requote_and_tau_hold() -> None:
    eng = _engine()
    t = 1_000_000_000_000
    eng.on_book(_book(t))
    eng.venue_free_usd = 500.0     # the venue's free balance sizes real orders (paper: 10 000)
    small = eng.on_approved(_signal(t), 1.0)
    assert small.orders[0].venue == "real" and small.orders[0].qty == pytest.approx(0.083)  # 500*10/60000 floored
    eng.venue_free_usd = None
    d = eng.on_approved(_signal(t + 1), 1.0)
    entry = d.orders[0]
    assert entry.venue == "real" and entry.route == "canary" and d.cancels == []
    # TTL: a cancel for the shell to send, once
    late = eng.on_book(_book(t + 3 * 10**9))
    assert {o.client_order_id for o in late.cancels} == {small.orders[0].client_order_id, entry.client_order_id}
    assert eng.on_book(_book(t + 4 * 10**9)).cancels == []
    # a venue fill of the entry (its cancel in flight): a reduce-only post-only exit, venue real
    fill = eng.venue_reports("BTCUSDT", [ExecReport("fill", entry.client_order_id, t, t, price=59999.9,
                                                    qty=entry.qty, remaining=0.0, fee=0.36, fee_rate=0.0001,
                                                    liquidity="maker")], {0: "ex-9"})
    assert [f.fill_id for f in fill.fills] == [f"{entry.client_order_id}-ex-9"] and fill.fills[0].venue == "real"
    exit_ = next(o for o in fill.orders if o.status == "new")
    assert exit_.reduce_only and exit_.post_only and exit_.venue == "real" and exit_.side == "sell"
    # the exit's cancel (exit_ttl) lands: re-quoted at the touch, a new id
    t2 = t + 4 * 10**9 + 6 * 10**9
    assert [o.client_order_id for o in eng.on_book(_book(t2)).cancels] == [exit_.client_order_id]
    rq = eng.venue_reports("BTCUSDT", [ExecReport("cancelled", exit_.client_order_id, t2, t2)])
    again = next(o for o in rq.orders if o.status == "new")
    assert again.client_order_id.endswith("-x2") and again.price == 60000.0 and again.qty == exit_.qty
    # tau_hold: the model scores the side below tau_hold -> the exit is cancelled (then re-quoted)
    hold = eng.on_hold(HoldMsg(symbol="BTCUSDT", marks=[
        HoldMark(model_id="m-b", side="buy", ts_ns=t2 + 1, score=0.1, tau_hold=0.4)]))
    assert [o.client_order_id for o in hold.cancels] == [again.client_order_id]


def test_engine_adopts_venue_orders_after_a_restart() -> None:
    eng = _engine()
    t = 2_000_000_000_000
    eng.on_book(_book(t))
    d = eng.on_approved(_signal(t), 1.0)
    adopted = d.orders[0].model_copy(update={"client_order_id": "BTCUSDT-5-b-x3", "signal_id": "BTCUSDT-5-b",
                                             "reduce_only": True, "side": "sell", "status": "accepted"})
    fresh = _engine()
    fresh.on_book(_book(t))
    fresh.adopt(adopted)
    assert fresh.on_approved(_signal(5).model_copy(update={"signal_id": "BTCUSDT-5-b"}), 1.0).orders == []
    assert fresh.on_book(_book(t + 1)).cancels == []            # TTL starts at the first book after adoption
    assert [o.client_order_id for o in fresh.on_book(_book(t + 7 * 10**9)).cancels] == ["BTCUSDT-5-b-x3"]
    rq = fresh.venue_reports("BTCUSDT", [ExecReport("cancelled", "BTCUSDT-5-b-x3", t, t)])
    assert [o.client_order_id for o in rq.orders if o.status == "new"] == ["BTCUSDT-5-b-x4"]
    cover = fresh.cover_position("BTCUSDT", "canary", "buy", 0.02, "BTCUSDT-9-rc")
    assert [(o.side, o.qty, o.reduce_only, o.price) for o in cover.orders] == [("buy", 0.02, True, 59999.9)]


# -- the rate limit, against the emulator ----------------------------------------------------------------------
async def _with_link(exchange: dict[str, Any], body: Any, **emulator: Any) -> Any:
    """``body(link, emu, ctx)`` with a VenueLink (real ccxt) on a fresh emulator on loopback."""
    import logging

    from tidegate.execution.venue import MARKETS_FILE, live_client
    from tidegate.services.executor_venue import VenueLink
    from tidegate.services.runtime import build_context
    from tidegate.venue import BybitAccount, BybitEmulator, load_instruments

    emu = BybitEmulator(BybitAccount(load_instruments()), keys={"k-t": "s-t"}, **emulator)
    await emu.start("127.0.0.1", 0)
    await emu.feed_book(_book(1_000_000_000))
    cfg = AppConfig.model_validate({"exchange": {"mode": "real", **exchange}})
    ctx = build_context("executor", cfg, MARKETS_FILE, logging.getLogger("test.venue_link"))
    engine = _engine()
    ex = live_client(MARKETS_FILE, {"apiKey": "k-t", "secret": "s-t"}, urls=(emu.rest_url, emu.ws_url))

    async def publish(d: Any) -> None:
        pass

    link = VenueLink(ctx, engine, ex, engine.rules, asyncio.Lock(), publish, lambda sid: "canary")
    try:
        return await body(link, emu, ctx)
    finally:
        await link.close()
        await emu.stop()


def test_rate_limited_creates_back_off_and_all_land_on_the_emulator() -> None:
    """``VenueLink.call`` with real ccxt against the emulator's 10006: every create lands, none twice."""
    async def body(link: Any, emu: Any, ctx: Any) -> tuple[int, int, int, int, float | None]:
        for i in range(8):
            await link.call(link.ex.create_order, BTC, "limit", "buy", 0.001, 59000.0,
                            {"timeInForce": "PostOnly", "orderLinkId": f"rl-{i}"})
        counted = ctx.registry.get_sample_value("venue_rate_limited_total")
        return link.rate_limited, emu.refused.get(10006, 0), len(emu.account.orders), \
            len({o.link_id for o in emu.account.orders.values()}), counted

    backoffs, refused, orders, distinct, counted = asyncio.run(
        _with_link({}, body, rate_limits={"/v5/order/create": 3}))
    assert orders == distinct == 8
    assert backoffs >= 1 and refused == backoffs == counted      # every backoff visible in Prometheus


@pytest.mark.parametrize("flags", [True, False])
def test_exchange_flags_drive_the_orders_sent_to_the_venue(flags: bool) -> None:
    """exchange.post_only/maker_only/reduce_only as the orders reach the emulator: an entry is
    PostOnly or GTC, an exit reduce-only (refused 110017 while flat) or not."""
    def order(coid: str, side: str, price: float, reduce_only: bool) -> OrderMsg:
        return OrderMsg(client_order_id=coid, signal_id=coid[:-3], symbol="BTCUSDT", route="canary", venue="real",
                        side=side, price=price, qty=0.001, status="new", reduce_only=reduce_only,  # type: ignore[arg-type]
                        post_only=True, ts_ns=1)

    async def body(link: Any, emu: Any, ctx: Any) -> tuple[dict[str, tuple[str, bool]], dict[int, int]]:
        await link.place(order("sig-1-e0", "buy", 59000.0, False))
        await link.place(order("sig-1-x0", "sell", 61000.0, True))
        return {o.link_id: (o.tif, o.reduce_only) for o in emu.account.orders.values()}, dict(emu.refused)

    sent, refused = asyncio.run(_with_link({"post_only": flags, "maker_only": flags, "reduce_only": flags}, body))
    if flags:
        assert sent == {"sig-1-e0": ("PostOnly", False)} and refused.get(110017) == 1, (sent, refused)
    else:
        assert sent == {"sig-1-e0": ("GTC", False), "sig-1-x0": ("GTC", False)}, sent
        assert 110017 not in refused


def test_unfinished_real_orders_are_the_ones_whose_last_event_leaves_them_open() -> None:
    def ev(coid: str, status: str, venue: str = "real") -> OrderMsg:
        return OrderMsg(client_order_id=coid, signal_id=coid[:-3], symbol="BTCUSDT", route="canary", venue=venue,  # type: ignore[arg-type]
                        side="buy", price=50_000.0, qty=0.01, status=status, ts_ns=1)  # type: ignore[arg-type]

    events = [ev("s1-e0", "new"), ev("s2-e0", "new"), ev("s3-e0", "new"), ev("p1-e0", "new", "paper"),
              ev("s1-e0", "accepted"), ev("s2-e0", "accepted"), ev("s2-e0", "filled"), ev("s3-e0", "rejected"),
              ev("s4-x0", "new"), ev("s4-x0", "cancelled"), ev("s5-e0", "new")]
    assert sorted(unfinished_real(events)) == ["s1-e0", "s5-e0"]
    assert unfinished_real(events)["s1-e0"].status == "accepted"
